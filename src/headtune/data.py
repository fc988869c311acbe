"""Texts and labels in: a Hub dataset or a local folder, validated and sampled.

Reading stops with a one-line `HeadtuneError` at the first thing a user must fix;
nothing downstream ever sees a null text, an unknown label or an empty split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import hub
from .config import DataConfig
from .errors import HeadtuneError, flag

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
READERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
SHOWN_ROWS = 5  # how many offending row numbers an error message lists


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 label ids, index into Splits.label_names


@dataclass
class Splits:
    train: Split
    test: Split
    label_names: list[str]
    dropped: dict[str, int]  # invalid rows dropped per split (--drop-invalid)


def load_splits(cfg: DataConfig) -> Splits:
    """Read, validate, name the labels of, and sample the train and test splits."""
    frames, names = read_frames(cfg)
    dropped = {}
    for split in SPLITS:
        frames[split], dropped[split] = clean_split(frames[split], split, cfg)
    train_ids, test_ids, label_names = encode_labels(frames["train"][cfg.label_column],
                                                     frames["test"][cfg.label_column], names, cfg.label_names)
    splits = {}
    for split, ids, size in zip(SPLITS, (train_ids, test_ids), cfg.sizes):
        if size is not None and getattr(cfg, f"{split}_size") is None:  # --small-run: at most the whole split
            size = min(size, len(ids))
        keep = np.arange(len(ids)) if size is None else sample_stratified(ids, size, cfg.sample_seed, split)
        texts = frames[split][cfg.text_column].tolist()
        splits[split] = Split([texts[i] for i in keep], ids[keep])
    return Splits(splits["train"], splits["test"], label_names, dropped)


# --------------------------------------------------------------------------- reading

def read_frames(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """The raw train/test tables, and the label names the source declares (if any)."""
    if hub.looks_local(cfg.dataset):
        return read_local(Path(cfg.dataset).expanduser(), cfg)
    return read_hub(cfg.dataset)


def read_hub(name: str) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    import datasets

    if not hub.hub_reachable():
        datasets.config.HF_HUB_OFFLINE = True  # use the local cache without 45 s of retries
    try:
        ds = datasets.load_dataset(name)
    except Exception as err:  # datasets raises many types; all mean "could not load"
        if not hub.hub_reachable():
            raise HeadtuneError(hub.offline_message("dataset", name)) from err
        raise HeadtuneError(f"cannot load dataset '{name}': no such local folder, and the Hub says: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    missing = [s for s in SPLITS if s not in ds]
    if missing:
        raise HeadtuneError(f"dataset '{name}' has no {missing[0]} split (it has: {', '.join(ds)})")
    frames = {s: ds[s].to_pandas() for s in SPLITS}
    names = None
    for feature in ds["train"].features.values():
        if hasattr(feature, "names"):  # a ClassLabel column
            names = list(feature.names)
    return frames, names


def read_local(path: Path, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    if not path.exists():
        raise HeadtuneError(f"dataset path {path} does not exist; pass a folder with {flag('dataset')}")
    if not path.is_dir():
        raise HeadtuneError(f"{flag('dataset')} must be a folder holding train and test files, but {path} is a "
                            f"file; put it in a folder as train{path.suffix} and test{path.suffix}")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return {s: read_text_folder(path / s, cfg) for s in SPLITS}, None
    return {s: read_table(find_split_files(path, s), s, cfg) for s in SPLITS}, None


def find_split_files(folder: Path, split: str) -> list[Path]:
    """Files named `<split>.<ext>` or `<split>-*.<ext>` / `<split>_*.<ext>` (shards) in the folder or data/."""
    def named_for_split(p: Path) -> bool:
        stem = p.name.split(".")[0]
        return p.is_file() and (stem == split or stem.startswith((split + "-", split + "_")))

    candidates = sorted(p for d in (folder, folder / "data") if d.is_dir() for p in d.iterdir() if named_for_split(p))
    supported = [p for p in candidates if p.suffix.lower() in READERS]
    if supported:
        suffixes = {p.suffix.lower() for p in supported}
        if len(suffixes) > 1:
            raise HeadtuneError(f"{folder} holds {split} files of several types ({', '.join(sorted(suffixes))}); "
                                f"keep one")
        return supported
    if candidates:
        raise HeadtuneError(f"unsupported file type '{candidates[0].suffix or candidates[0].name}' for "
                            f"{candidates[0]}; use .parquet, .csv or .jsonl")
    raise HeadtuneError(f"no {split} file in {folder}: expected {split}.parquet, {split}.csv or {split}.jsonl, "
                        f"or an aclImdb-style folder with train/<label>/*.txt and test/<label>/*.txt")


def read_table(files: list[Path], split: str, cfg: DataConfig) -> pd.DataFrame:
    frames = [read_file(f, cfg) for f in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frame) == 0:
        raise HeadtuneError(f"the {split} split ({files[0]}) has no rows; it needs rows with "
                            f"'{cfg.text_column}' and '{cfg.label_column}' columns")
    return frame


def read_file(path: Path, cfg: DataConfig) -> pd.DataFrame:
    kind = READERS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise HeadtuneError(f"{path} is empty (0 bytes); it must hold rows with '{cfg.text_column}' and "
                            f"'{cfg.label_column}' columns")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "csv":
            # keep_default_na=False: the text "NA" is a review, not a missing value; only empty cells are missing.
            # dtype=str: a text such as "10" or "1e5" stays a text instead of becoming a number.
            return pd.read_csv(path, encoding=cfg.encoding, keep_default_na=False, na_values=[""],
                               dtype={cfg.text_column: str})
        return pd.read_json(path, lines=True, encoding=cfg.encoding, dtype=False)
    except UnicodeDecodeError as err:
        raise HeadtuneError(f"{path} is not valid {cfg.encoding} text (byte {err.object[err.start]:#04x} at "
                            f"offset {err.start}); pass its encoding, e.g. {flag('encoding')} latin-1") from err
    except LookupError as err:
        raise HeadtuneError(f"unknown {flag('encoding')} '{cfg.encoding}'") from err
    except Exception as err:  # pandas/pyarrow parse errors come in many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadtuneError(f"cannot read {path} as {kind}: {reason}") from err


def read_text_folder(folder: Path, cfg: DataConfig) -> pd.DataFrame:
    """aclImdb layout: one sub-folder per label holding one .txt file per text."""
    rows = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "unsup"):
        for file in sorted(label_dir.glob("*.txt")):
            try:
                rows.append((file.read_text(encoding=cfg.encoding), label_dir.name))
            except UnicodeDecodeError as err:
                raise HeadtuneError(f"{file} is not valid {cfg.encoding} text; pass its encoding, "
                                    f"e.g. {flag('encoding')} latin-1") from err
    if not rows:
        raise HeadtuneError(f"{folder} has no <label>/*.txt files; expected e.g. {folder}/pos/1.txt")
    return pd.DataFrame(rows, columns=[cfg.text_column, cfg.label_column])


# --------------------------------------------------------------------------- validation

def _rows(mask: np.ndarray) -> str:
    """'rows 3, 17 (counting from 0)': the first SHOWN_ROWS rows of the split's table that the mask marks."""
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS])
    return f"row{'s' if len(rows) > 1 else ''} {shown}{', ...' if len(rows) > SHOWN_ROWS else ''} " \
           f"(counting from 0)"


def text_problem(text) -> str | None:
    """Why `text` cannot be classified, or None when it can. Shared by training data and predict's input."""
    if not isinstance(text, str):
        return f"is not a string ({type(text).__name__})"
    if not text.strip():
        return "is empty or whitespace only"
    try:
        text.encode("utf-8")  # a lone surrogate (e.g. undecodable command-line bytes) cannot be tokenized
    except UnicodeEncodeError as err:
        return f"is not valid Unicode (character {err.start + 1} is a lone surrogate {ord(text[err.start]):#06x})"
    return None


def invalid_texts(texts: pd.Series) -> np.ndarray:
    """Mask of texts that are null, not strings, empty, whitespace only, or not valid Unicode."""
    return np.array([text_problem(t) is not None for t in texts], dtype=bool)


def missing_labels(labels: pd.Series) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT
                     for v in labels], dtype=bool)


def clean_split(frame: pd.DataFrame, split: str, cfg: DataConfig) -> tuple[pd.DataFrame, int]:
    """Check columns, texts and labels of one split; drop or refuse invalid rows. Returns (frame, dropped)."""
    if len(frame) == 0:
        raise HeadtuneError(f"the {split} split has no rows")
    for column, option in ((cfg.text_column, "text_column"), (cfg.label_column, "label_column")):
        if column not in frame.columns:
            raise HeadtuneError(f"column '{column}' not found in the {split} split; its columns are: "
                                f"{', '.join(map(str, frame.columns))}; pass {flag(option)}")
    bad_text = invalid_texts(frame[cfg.text_column])
    bad_label = missing_labels(frame[cfg.label_column])
    bad = bad_text | bad_label
    if bad.any() and not cfg.drop_invalid:
        if bad_text.any():
            raise HeadtuneError(f"the {split} split has {bad_text.sum():,} invalid text{_s(bad_text.sum())} "
                                f"(empty, whitespace only, null, not a string or not valid Unicode) at "
                                f"{_rows(bad_text)}; "
                                f"fix them or pass {flag('drop_invalid')} to drop them")
        raise HeadtuneError(f"the {split} split has {bad_label.sum():,} missing label{_s(bad_label.sum())} "
                            f"(null or NaN) at {_rows(bad_label)}; fix them or pass {flag('drop_invalid')} "
                            f"to drop them")
    if bad.any():
        log.warning("dropped %d invalid rows from the %s split (%d bad texts, %d missing labels)",
                    bad.sum(), split, bad_text.sum(), bad_label.sum())
        frame = frame.loc[~bad].reset_index(drop=True)
    if len(frame) == 0:
        raise HeadtuneError(f"the {split} split has no valid rows left after {flag('drop_invalid')} dropped all "
                            f"{int(bad.sum()):,}")
    return frame, int(bad.sum())


def _s(count) -> str:
    return "" if count == 1 else "s"


# --------------------------------------------------------------------------- labels

def _as_int_labels(values: pd.Series) -> np.ndarray | None:
    """Integer labels as int64 (floats like 1.0 count), or None when any label is not an integer."""
    try:
        arr = np.asarray(values.tolist())
    except Exception:
        return None
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    return None


def encode_labels(train: pd.Series, test: pd.Series, source_names: list[str] | None,
                  user_names: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Label ids for both splits and the name of every id.

    Integer labels keep their value as id when names are known (--label-names, the dataset's
    own, or neg/pos for 0/1); other labels are numbered in the sorted order of the train values.
    """
    train_int, test_int = _as_int_labels(train), _as_int_labels(test)
    if train_int is not None and test_int is not None:
        values = np.union1d(train_int, test_int)
        names = user_names or source_names or (["neg", "pos"] if set(values.tolist()) <= {0, 1} else None)
        if names is not None:
            if values.min() < 0 or values.max() >= len(names):
                raise HeadtuneError(f"label {values.max() if values.min() >= 0 else values.min()} has no name: "
                                    f"names are given for 0..{len(names) - 1} ({', '.join(names)}); "
                                    f"pass one name per label with {flag('label_names')}")
            train_ids, test_ids = train_int, test_int
        else:  # e.g. star ratings 1..5: number them in sorted order, keep the values as names
            train_str, test_str = [str(v) for v in train_int], [str(v) for v in test_int]
            order = np.unique(train_int)
            names = [str(v) for v in order]
            lookup = {n: i for i, n in enumerate(names)}
            train_ids, test_ids = _lookup(train_str, lookup), _lookup(test_str, lookup)
    else:
        if user_names:
            raise HeadtuneError(f"{flag('label_names')} names integer labels, but the labels are strings")
        train_str, test_str = [str(v) for v in train], [str(v) for v in test]
        names = sorted(set(train_str))
        lookup = {n: i for i, n in enumerate(names)}
        train_ids, test_ids = _lookup(train_str, lookup), _lookup(test_str, lookup)
    present = np.unique(train_ids)
    if len(present) < 2:
        raise HeadtuneError(f"the train split has only one label ('{names[present[0]]}'); "
                            f"a classifier needs at least two: add examples of another label")
    unseen = sorted(set(np.unique(test_ids).tolist()) - set(present.tolist()))
    if unseen:
        raise HeadtuneError(f"test label '{names[unseen[0]]}' never occurs in the train split, so the head cannot "
                            f"learn it; add examples of it to the train split or remove it from the test split")
    return train_ids, test_ids, list(names)


def _lookup(values: list, lookup: dict) -> np.ndarray:
    unknown = [v for v in values if v not in lookup]
    if unknown:
        raise HeadtuneError(f"test label '{unknown[0]}' never occurs in the train split ({len(unknown):,} test "
                            f"row{'s' if len(unknown) != 1 else ''}), so the head cannot learn it; add examples of "
                            f"it to the train split or remove it from the test split")
    return np.array([lookup[v] for v in values], dtype=np.int64)


# --------------------------------------------------------------------------- sampling

def sample_stratified(labels: np.ndarray, n: int, seed: int, split: str) -> np.ndarray:
    """Indices (sorted) of a seeded sample of `n` rows whose label shares match the split's."""
    total = len(labels)
    if n > total:
        raise HeadtuneError(f"{flag(split + '_size')} {n:,} is larger than the {split} split, which has "
                            f"{total:,} rows; pass {flag(split + '_size')} {total} or less")
    if n == total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / total
    take = np.floor(exact).astype(int)
    # largest remainders get the rows left over, so the sample has exactly n rows
    for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
