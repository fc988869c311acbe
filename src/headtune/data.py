"""Texts and labels in: a Hub dataset or a local folder, validated, sampled (sampling.py), and split for validation.

Reading stops with a one-line `HeadtuneError` at the first thing a user must fix;
nothing downstream ever sees a null text, an unknown label or an empty split.
Texts stay in Arrow (or in the reader's objects) while they are checked, vectorised; only the rows
actually used become Python strings, so reading a split costs little more than reading its file.
"""
from __future__ import annotations

import codecs
import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import hub
from .config import DEFAULT_FOLDS, FOLDS_BUDGET, DataConfig, DataSource
from .errors import HeadtuneError, flag
from .labels import describe_labels, encode_for_model, encode_labels, encode_multi, encode_single, holds_lists, \
    positive_id
from .sampling import allocate, assign_folds, draw, hold_out, smallest_sample_keeping_classes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Split", "Splits", "load_splits", "load_split", "describe_labels", "encode_labels", "text_problem",
           "invalid_texts"]

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
VALIDATION_NAMES = ("validation", "valid", "dev")  # what datasets call their validation split, preferred first
READERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
SHOWN_ROWS = 5  # how many offending row numbers an error message lists
# The characters Python's str.isspace() accepts: Arrow's own notion of whitespace differs at the edges,
# and a text must be refused here exactly when predict's `text.strip()` would refuse it.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]*$"  # RE2: empty or whitespace only


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 ids into Splits.label_names; multi-label: an (n, K) float32 0/1 matrix
    dropped: int = 0  # invalid rows dropped from the dataset split this was read from (--drop-invalid)


@dataclass
class Splits:
    train: Split
    test: Split
    label_names: list[str]
    dropped: dict[str, int]  # invalid rows dropped per dataset split (--drop-invalid)
    validation: Split | None = None
    # "dataset" (its own split), "train" (held out of the sample), "cross-validation" (folds of it) or None
    validation_source: str | None = None
    multi_label: bool = False
    positive: int | None = None  # two-label single-label data: the id whose F1 is reported
    folds: np.ndarray | None = None  # cross-validation: the fold of each training row

    def describe_labels(self, shown: int = 5) -> str:
        """'77 labels: Refund_not_showing_up, activate_my_card, ...': the labels for one log line."""
        return describe_labels(self.label_names, shown)


@dataclass
class RawSplit:
    """One split as read, row for row: texts (Arrow strings, or objects) and raw label values."""

    texts: pa.ChunkedArray | np.ndarray
    labels: np.ndarray
    csv: bool = False  # read from CSV, where an empty label cell is NaN, as a missing one would be
    files: list[str] | None = None  # a text folder's file per row: messages name the file, not a row number


@dataclass
class Dataset:
    """A dataset's splits, each read on demand, and the label names it declares (a ClassLabel column)."""

    where: str
    splits: list[str]
    read: Callable[[str], RawSplit]
    label_names: list[str] | None = None


# --------------------------------------------------------------------------- the entry points

def load_splits(cfg: DataConfig) -> Splits:
    """Read, validate and name the labels of the train, test and validation splits, then sample them."""
    data = open_dataset(cfg)
    own_validation = validation_name(data)
    if own_validation and (asked := cfg.validation_asked()):  # the user's explicit choice wins over the files
        log.info("validation: %s, so the dataset's own %s split is not used", asked, own_validation)
        own_validation = None
    wanted = {"train": "train", "test": "test", **({"validation": own_validation} if own_validation else {})}
    # the files are read side by side (Arrow releases the GIL): reading is most of the time load_splits takes;
    # map returns in order, so a problem in train is reported before one in test, as when read one by one
    with ThreadPoolExecutor(len(wanted)) as pool:
        raw = dict(zip(wanted, pool.map(data.read, wanted.values())))
    rows, dropped = {}, {}
    for split in wanted:
        raw[split] = empty_cells_without_labels(raw[split], split, cfg.multi_label)
        rows[split], dropped[split] = clean_split(raw[split], split, cfg)
    values = {split: raw[split].labels[rows[split]] for split in ("train", "validation", "test") if split in raw}
    multi = cfg.multi_label or any(holds_lists(v) for v in values.values())
    if multi:
        names, labels = encode_multi(values, data.label_names, cfg.label_names, split_strings=cfg.multi_label)
    else:
        names, labels = encode_single(values, data.label_names, cfg.label_names)
    positive = positive_id(names, cfg.positive_label, multi)

    def split_of(name: str, keep: np.ndarray, read_as: str | None = None) -> Split:
        read_as = read_as or name
        return Split(_pick(raw[read_as].texts, rows[read_as][keep]), labels[read_as][keep], dropped[read_as])

    train_keep, test_keep = (sample_rows(labels[s], size, cfg, s, multi, names)
                             for s, size in zip(SPLITS, cfg.sizes))
    validation, source, folds = None, None, None
    if own_validation:  # the dataset's own: used whole
        validation, source = split_of("validation", np.arange(len(labels["validation"]))), "dataset"
        log.info("validation: the dataset's %s split, %s rows", own_validation, f"{len(validation.texts):,}")
    elif (k := min(cfg.folds_for(len(train_keep), len(names)), len(train_keep))) > 1:
        folds, source = assign_folds(labels["train"][train_keep], k, cfg.sample_seed, multi), "cross-validation"
        log.info("validation: %d-fold cross-validation of the %s training rows (%s)", k, f"{len(train_keep):,}",
                 flag("folds"))
    elif cfg.holdout_fraction > 0:
        if cfg.folds is None and cfg.val_fraction is None:  # the default, for a sample too big for cheap folds
            log.info("validation: %s training rows x %d labels is over %s, so rows are held out instead of folds "
                     "(--folds %d cross-validates anyway)", f"{len(train_keep):,}", len(names), f"{FOLDS_BUDGET:,}",
                     DEFAULT_FOLDS)
        part, held = hold_out(labels["train"][train_keep], cfg.holdout_fraction, cfg.sample_seed, multi)
        if len(held):
            validation, source = split_of("validation", train_keep[held], read_as="train"), "train"
        log.info("validation: %s of %s training rows held out (%s %g)", f"{len(held):,}", f"{len(train_keep):,}",
                 flag("val_fraction"), cfg.holdout_fraction)
        train_keep = train_keep[part]
    if multi:
        _warn_unseen_labels(labels["train"][train_keep], names)
    return Splits(split_of("train", train_keep), split_of("test", test_keep), names, dropped, validation, source,
                  multi, positive, folds)


def load_split(source: DataSource, split: str, label2id: dict[str, int], multi_label: bool,
               size: int | None = None, seed: int = 42) -> Split:
    """One named split of `source`, validated, its labels as the ids of a trained model's `label2id`;
    with `size`, the seeded sample a run's --test-size (and --sample-seed `seed`) draws from it.

    Labels are named by the training rules (ClassLabel names, --label-names, neg/pos for 0/1, the
    values) and must be labels the model knows; multi-label rows become (n, K) in the model's order.
    """
    data = open_dataset(source)
    raw = empty_cells_without_labels(data.read(resolve_split(data, split)), split, multi_label)
    rows, dropped = clean_split(raw, split, source)
    labels = encode_for_model(raw.labels[rows], data.label_names, source.label_names, label2id, multi_label, split)
    keep = np.arange(len(labels)) if size is None else draw(labels, size, seed, split, multi_label, flag("size"))
    return Split(_pick(raw.texts, rows[keep]), labels[keep], dropped)


def validation_name(data: Dataset) -> str | None:
    """The dataset's own validation split (validation, valid or dev), or None."""
    found = [name for name in VALIDATION_NAMES if name in data.splits]
    if len(found) > 1:
        raise HeadtuneError(f"{data.where} has several validation splits ({', '.join(found)}); keep one")
    return found[0] if found else None


def resolve_split(data: Dataset, split: str) -> str:
    """`split` as the dataset names it: validation, valid and dev stand for each other."""
    if split in data.splits:
        return split
    alias = validation_name(data) if split in VALIDATION_NAMES else None
    if alias:
        return alias
    raise HeadtuneError(f"{data.where} has no '{split}' split; its splits are: {', '.join(data.splits) or 'none'}; "
                        f"pass one of them with {flag('split')}")


def _pick(texts: pa.ChunkedArray | np.ndarray, index: np.ndarray) -> list[str]:
    """Python strings for the rows used only: converting all 25k texts of a split would cost more than reading it."""
    if isinstance(texts, pa.ChunkedArray):
        if len(index) == len(texts) and np.array_equal(index, np.arange(len(texts))):
            return texts.to_pylist()  # the whole split: no copy first
        return texts.take(_arrow_index(index)).to_pylist()
    return texts[index].tolist()


def _arrow_index(index: np.ndarray) -> pa.Array:
    """Row numbers as an Arrow array over the same memory. (pa.array would import pandas, ~0.5 s of a warm run.)"""
    index = np.ascontiguousarray(index, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(index), [None, pa.py_buffer(index)])


# --------------------------------------------------------------------------- reading

def open_dataset(source: DataSource) -> Dataset:
    if hub.looks_local(source.dataset):
        return open_local(Path(source.dataset).expanduser(), source)
    return open_hub(source.dataset, source)


def open_hub(name: str, source: DataSource) -> Dataset:
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

    def read(split: str) -> RawSplit:
        if split not in ds:
            raise HeadtuneError(f"dataset '{name}' has no {split} split (it has: {', '.join(ds)})")
        return from_arrow(ds[split].with_format("arrow")[:], split, source)

    first = ds["train"] if "train" in ds else next(iter(ds.values()))
    return Dataset(f"dataset '{name}'", list(ds), read, class_names(first.features.get(source.label_column)))


def class_names(feature) -> list[str] | None:
    """The names a ClassLabel column declares (also a list of ClassLabel, for multi-label data)."""
    inner = getattr(feature, "feature", None)  # datasets' Sequence/List of ClassLabel
    for candidate in (feature, inner):
        if candidate is not None and hasattr(candidate, "names"):
            return list(candidate.names)
    return None


def open_local(path: Path, source: DataSource) -> Dataset:
    if not path.exists():
        raise HeadtuneError(f"dataset path {path} does not exist; pass a folder with {flag('dataset')}")
    if not path.is_dir():
        raise HeadtuneError(f"{flag('dataset')} must be a folder holding train and test files, but {path} is a "
                            f"file; put it in a folder as train{path.suffix} and test{path.suffix}")
    if (path / "train").is_dir() and (path / "test").is_dir():
        folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        return Dataset(str(path), folders, lambda split: read_text_folder(path / split, source))
    return Dataset(str(path), split_names(path), lambda split: read_table(find_split_files(path, split), split, source))


def _candidates(folder: Path, split: str) -> list[Path]:
    """Files named `<split>.<ext>` or `<split>-*.<ext>` / `<split>_*.<ext>` (shards) in the folder or data/."""
    def named_for_split(p: Path) -> bool:
        stem = p.name.split(".")[0]
        return p.is_file() and (stem == split or stem.startswith((split + "-", split + "_")))

    return sorted(p for d in (folder, folder / "data") if d.is_dir() for p in d.iterdir() if named_for_split(p))


def split_names(folder: Path) -> list[str]:
    """The splits a folder of files holds: file names without type and shard suffix (train-00000-of-00002)."""
    files = [p for d in (folder, folder / "data") if d.is_dir() for p in d.iterdir()
             if p.is_file() and p.suffix.lower() in READERS]
    return sorted({re.sub(r"[-_]\d+(-of-\d+)?(-[0-9a-f]+)?$", "", p.name.split(".")[0]) for p in files})


def find_split_files(folder: Path, split: str) -> list[Path]:
    candidates = _candidates(folder, split)
    supported = [p for p in candidates if p.suffix.lower() in READERS]
    if supported:
        suffixes = {p.suffix.lower() for p in supported}
        if len(suffixes) > 1:
            raise HeadtuneError(f"{folder} holds {split} files of several types ({', '.join(sorted(suffixes))}); "
                                f"keep one")
        _check_shards(supported, split)
        return supported
    if candidates:
        raise HeadtuneError(f"unsupported file type '{candidates[0].suffix or candidates[0].name}' for "
                            f"{candidates[0]}; use .parquet, .csv or .jsonl")
    raise HeadtuneError(f"no {split} file in {folder}: expected {split}.parquet, {split}.csv or {split}.jsonl, "
                        f"or an aclImdb-style folder with train/<label>/*.txt and test/<label>/*.txt")


def _check_shards(files: list[Path], split: str) -> None:
    """Shards named `<split>-00000-of-00003` (the Hub's names) say how many there are: one missing would train or
    test on part of the split without a word."""
    counts: dict[int, set[int]] = {}
    for path in files:
        numbered = re.fullmatch(r"[-_](\d+)-of-(\d+)(-[0-9a-f]+)?", path.name.split(".")[0][len(split):])
        if numbered:
            counts.setdefault(int(numbered.group(2)), set()).add(int(numbered.group(1)))
    for total, found in counts.items():
        missing = sorted(set(range(total)) - found)
        if missing:
            names = ", ".join(f"{split}-{i:05d}-of-{total:05d}" for i in missing[:3]) + (", ..." if len(missing) > 3
                                                                                         else "")
            raise HeadtuneError(f"the {split} split is {total} shards, but {len(missing)} of them "
                                f"{'is' if len(missing) == 1 else 'are'} missing "
                                f"({names}) in {files[0].parent}; copy them there")


def read_table(files: list[Path], split: str, source: DataSource) -> RawSplit:
    parts = [read_file(f, split, source) for f in files]
    csv = parts[0].csv  # the shards of a split are files of one type (find_split_files)
    if len(parts) == 1:
        raw = parts[0]
    elif all(isinstance(p.texts, pa.ChunkedArray) for p in parts):
        raw = RawSplit(pa.chunked_array([c for p in parts for c in p.texts.cast(pa.large_string()).chunks],
                                        type=pa.large_string()), np.concatenate([p.labels for p in parts]), csv)
    else:
        raw = RawSplit(np.concatenate([_objects(p.texts) for p in parts]), np.concatenate([p.labels for p in parts]),
                       csv)
    if len(raw.labels) == 0:
        raise HeadtuneError(f"the {split} split ({files[0]}) has no rows; it needs rows with "
                            f"'{source.text_column}' and '{source.label_column}' columns")
    return raw


def read_file(path: Path, split: str, source: DataSource) -> RawSplit:
    kind = READERS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise HeadtuneError(f"{path} is empty (0 bytes); it must hold rows with '{source.text_column}' and "
                            f"'{source.label_column}' columns")
    try:
        if kind == "parquet":  # only the two columns: other columns can be large (e.g. embeddings)
            # ParquetFile, not read_table: the dataset machinery behind read_table imports pandas (~0.5 s)
            with pq.ParquetFile(path) as file:
                names = [n for n in file.schema_arrow.names if not n.startswith("__index_level_")]  # pandas' index
                check_columns(names, split, source)
                return from_arrow(file.read(columns=[source.text_column, source.label_column]), split, source)
        import pandas as pd  # here, not above: it costs ~0.5 s of import, which Parquet data never needs

        if kind == "csv":
            # keep_default_na=False: the text "NA" is a review, not a missing value; only empty cells are missing.
            # dtype=str: a text such as "10" or "1e5" stays a text instead of becoming a number.
            frame = pd.read_csv(path, encoding=source.encoding, keep_default_na=False, na_values=[""],
                                dtype={source.text_column: str})
        else:
            # utf-8-sig reads UTF-8 with or without the byte-order mark Windows tools write (the CSV reader skips it)
            encoding = "utf-8-sig" if codecs.lookup(source.encoding).name == "utf-8" else source.encoding
            frame = pd.read_json(path, lines=not _json_array(path, encoding), encoding=encoding, dtype=False)
    except HeadtuneError:
        raise
    except UnicodeDecodeError as err:
        raise HeadtuneError(f"{path} is not valid {source.encoding} text (byte {err.object[err.start]:#04x} at "
                            f"offset {err.start}); pass its encoding, e.g. {flag('encoding')} latin-1") from err
    except Exception as err:  # pandas/pyarrow parse errors come in many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadtuneError(f"cannot read {path} as {kind}: {reason}") from err
    raw = from_frame(frame, split, source)
    raw.csv = kind == "csv"
    return raw


def _json_array(path: Path, encoding: str) -> bool:
    """A .json file may hold one JSON array of row objects (what `to_json(orient="records")` writes) instead of
    JSON lines; its first character tells."""
    with open(path, encoding=encoding) as f:
        return f.read(4096).lstrip().startswith("[")


def read_text_folder(folder: Path, source: DataSource) -> RawSplit:
    """aclImdb layout: one sub-folder per label holding one .txt file per text."""
    texts, labels, files = [], [], []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "unsup"):
        for file in sorted(label_dir.glob("*.txt")):
            try:
                texts.append(file.read_text(encoding=source.encoding))
            except UnicodeDecodeError as err:
                raise HeadtuneError(f"{file} is not valid {source.encoding} text; pass its encoding, "
                                    f"e.g. {flag('encoding')} latin-1") from err
            except OSError as err:  # a dangling link, a file without read permission, a folder named *.txt
                raise HeadtuneError(f"cannot read {file}: {err.strerror or err}; fix or remove it") from None
            labels.append(label_dir.name)
            files.append(str(file))
    if not texts:
        raise HeadtuneError(f"{folder} has no <label>/*.txt files; expected e.g. {folder}/pos/1.txt")
    return RawSplit(_objects(texts), _objects(labels), files=files)


def check_columns(columns: list, split: str, source: DataSource) -> None:
    for column, option in ((source.text_column, "text_column"), (source.label_column, "label_column")):
        if column not in columns:
            raise HeadtuneError(f"column '{column}' not found in the {split} split; its columns are: "
                                f"{', '.join(map(str, columns))}; pass {flag(option)}")


def from_arrow(table: pa.Table, split: str, source: DataSource) -> RawSplit:
    check_columns(table.column_names, split, source)
    texts = table.column(source.text_column)
    if pa.types.is_dictionary(texts.type):  # a categorical column of texts
        texts = texts.cast(texts.type.value_type)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = _objects(texts.to_pandas())  # numbers, nulls, ...: refused below, one by one
    return RawSplit(texts, _label_values(table.column(source.label_column)))


def _label_values(labels: pa.ChunkedArray) -> np.ndarray:
    """Integer or string labels without nulls as Python values (what pandas gives too); anything else through
    pandas, so categorical, nullable-integer and list labels come out as the CSV/JSON readers give them. (Arrow's
    own to_numpy imports pandas, ~0.5 s a warm run need not pay.)"""
    if labels.null_count == 0 and pa.types.is_integer(labels.type):
        return np.array(labels.to_pylist(), dtype=np.int64)
    if labels.null_count == 0 and (pa.types.is_string(labels.type) or pa.types.is_large_string(labels.type)):
        return _objects(labels)
    return labels.to_pandas().to_numpy()


def from_frame(frame: pd.DataFrame, split: str, source: DataSource) -> RawSplit:
    import pandas as pd

    check_columns(list(frame.columns), split, source)
    texts = frame[source.text_column]
    if isinstance(texts.dtype, pd.StringDtype):  # pandas' Arrow-backed strings: no Python objects needed
        try:
            return RawSplit(pa.chunked_array([pa.array(texts, type=pa.large_string())]),
                            frame[source.label_column].to_numpy())
        except (UnicodeEncodeError, pa.ArrowException):  # Python storage holding a lone surrogate
            pass
    return RawSplit(_objects(texts), frame[source.label_column].to_numpy())


def _objects(values) -> np.ndarray:
    """A 1-D object array (np.asarray would make lists of equal length a 2-D array)."""
    pandas = sys.modules.get("pandas")  # a Series exists only where pandas was imported
    if pandas is not None and isinstance(values, pandas.Series):
        return values.to_numpy(dtype=object)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _objects(values.to_pylist())
    return np.fromiter(values, dtype=object, count=len(values))


# --------------------------------------------------------------------------- validation

def _rows(mask: np.ndarray, files: list[str] | None = None) -> str:
    """'rows 3, 17 (counting from 0)': the first SHOWN_ROWS rows of the split's table that the mask marks; or
    their files, for a folder of text files."""
    rows = np.flatnonzero(mask)
    if files is not None:
        shown = ", ".join(files[r] for r in rows[:SHOWN_ROWS])
        return f"{shown}{', ...' if len(rows) > SHOWN_ROWS else ''}"
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


def _blank_or_null(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    # a null text matches to null: "is not False". Python values, not Arrow's to_numpy or fill_null, which import
    # pandas (~0.5 s a warm run need not pay); a list of bools costs milliseconds
    return np.array([m is not False for m in pc.match_substring_regex(strings, BLANK).to_pylist()], dtype=bool)


def invalid_texts(texts) -> np.ndarray:
    """Mask of texts that are null, not strings, empty, whitespace only, or not valid Unicode (as text_problem)."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):  # Arrow strings are valid UTF-8 by construction
        return _blank_or_null(texts)
    values = _objects(texts)
    is_str = np.fromiter((isinstance(t, str) for t in values), dtype=bool, count=len(values))
    strings = values[is_str]
    try:  # encoding to UTF-8 is the Unicode check: a lone surrogate makes it fail
        ok = ~_blank_or_null(pa.array(strings, type=pa.large_string()))
    except (UnicodeEncodeError, pa.ArrowException):
        ok = np.fromiter((text_problem(t) is None for t in strings), dtype=bool, count=len(strings))
    bad = np.ones(len(values), dtype=bool)
    bad[is_str] = ~ok
    return bad


def missing_labels(labels) -> np.ndarray:
    """Mask of null or NaN labels (an empty list of labels is not missing: a text may have none)."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "biu":  # integers cannot be missing
        return np.zeros(len(labels), dtype=bool)
    import pandas as pd  # isna: None, NaN, NaT and pandas' NA alike

    return np.asarray(pd.isna(labels if isinstance(labels, np.ndarray) else _objects(labels)), dtype=bool)


def empty_cells_without_labels(raw: RawSplit, split: str, multi_label: bool) -> RawSplit:
    """Multi-label data read from CSV, with each empty label cell a row without labels: CSV cannot write the
    `[]` of parquet and JSON, and its empty cell (which pandas reads as NaN) is the empty string, which splits into
    no labels. An empty cell of single-label data, and a null of any other format, stay missing labels."""
    if not (multi_label and raw.csv):
        return raw
    empty = missing_labels(raw.labels)
    if not empty.any():
        return raw
    log.info("%d empty label cell%s in the %s split, at %s, read as texts without labels", empty.sum(),
             _s(empty.sum()), split, _rows(empty))
    labels = raw.labels.astype(object)  # integer labels with empty cells are floats: 1.0 stays label 1
    labels[empty] = ""
    return RawSplit(raw.texts, labels, raw.csv)


def clean_split(raw: RawSplit, split: str, source: DataSource) -> tuple[np.ndarray, int]:
    """Check one split's texts and labels; refuse or drop invalid rows. Returns (valid row numbers, dropped)."""
    if len(raw.labels) == 0:
        raise HeadtuneError(f"the {split} split has no rows")
    bad_text = invalid_texts(raw.texts)
    bad_label = missing_labels(raw.labels)
    bad = bad_text | bad_label
    if bad.any() and not source.drop_invalid:
        if bad_text.any():
            raise HeadtuneError(f"the {split} split has {bad_text.sum():,} invalid text{_s(bad_text.sum())} "
                                f"(empty, whitespace only, null, not a string or not valid Unicode) at "
                                f"{_rows(bad_text, raw.files)}; "
                                f"fix them or pass {flag('drop_invalid')} to drop them")
        raise HeadtuneError(f"the {split} split has {bad_label.sum():,} missing label{_s(bad_label.sum())} "
                            f"(null or NaN) at {_rows(bad_label, raw.files)}; fix them or pass {flag('drop_invalid')} "
                            f"to drop them")
    if bad.all():
        raise HeadtuneError(f"the {split} split has no valid rows left after {flag('drop_invalid')} dropped all "
                            f"{int(bad.sum()):,}")
    if bad.any():
        log.warning("dropped %d invalid rows from the %s split (%d bad texts, %d missing labels)",
                    bad.sum(), split, bad_text.sum(), bad_label.sum())
    return np.flatnonzero(~bad), int(bad.sum())


def _s(count) -> str:
    return "" if count == 1 else "s"


# --------------------------------------------------------------------------- sampling

def sample_rows(labels: np.ndarray, size: int | None, cfg: DataConfig, split: str, multi_label: bool,
                names: list[str]) -> np.ndarray:
    """Rows of the --train-size / --test-size / --small-run sample (all rows when no size is asked for)."""
    total = len(labels)
    if size is None:
        return np.arange(total)
    if getattr(cfg, f"{split}_size") is None and size >= total:  # --small-run: at most the whole split
        if size > total:
            log.info("%s: the %s split has %s rows, fewer than %s: all of them are used", flag("small_run"), split,
                     f"{total:,}", f"{size:,}")
        size = total
    if split == "train" and size < total and not multi_label:
        _check_keeps_classes(labels, size, cfg)
    rows = draw(labels, size, cfg.sample_seed, split, multi_label)
    if split == "train" and size < total and multi_label:
        _check_keeps_labels(labels, rows, cfg, names)
    return rows


def _check_keeps_classes(labels: np.ndarray, size: int, cfg: DataConfig) -> None:
    counts = np.unique(labels, return_counts=True)[1]
    lost = int(np.sum(allocate(counts, size) == 0))
    if lost:
        raise HeadtuneError(f"{_asked(size, cfg)} leaves {lost} of the {counts.size} classes without a training "
                            f"example; pass {flag('train_size')} {smallest_sample_keeping_classes(counts)} or more "
                            f"(samples of that size or more keep every class)")


def _asked(size: int, cfg: DataConfig) -> str:
    return f"{flag('train_size')} {size:,}" if cfg.train_size is not None else \
        f"{flag('small_run')}'s sample of {size:,} texts"


def _check_keeps_labels(matrix: np.ndarray, rows: np.ndarray, cfg: DataConfig, names: list[str]) -> None:
    """Multi-label samples are drawn at random, not stratified: one can miss a label the split has. Its output
    would never see a positive example, yet be saved and predicted (refused, as a lost class is above)."""
    lost = np.flatnonzero((matrix[rows].sum(axis=0) == 0) & (matrix.sum(axis=0) > 0))
    if len(lost):
        shown = ", ".join(f"'{names[i]}'" for i in lost[:5])
        raise HeadtuneError(f"{_asked(len(rows), cfg)} draws no example of {len(lost)} of the {len(names)} "
                            f"labels the train split has ({shown}{', ...' if len(lost) > 5 else ''}); "
                            f"pass a larger {flag('train_size')} or another {flag('sample_seed')}")


def _warn_unseen_labels(matrix: np.ndarray, names: list[str]) -> None:
    missing = [n for n, c in zip(names, matrix.sum(axis=0)) if c == 0]
    if missing:
        log.warning("%d of %d labels have no example in the training rows (%s%s)", len(missing), len(names),
                    ", ".join(missing[:5]), ", ..." if len(missing) > 5 else "")
