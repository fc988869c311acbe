"""Label values -> label names -> ids: one id per text (single-label) or a 0/1 row per text (multi-label).

Names come from, in order: --label-names (integer labels only), the dataset's own names (a ClassLabel
column), neg/pos for single-label integer 0/1 (the IMDb convention), else the values themselves.
Functions take raw label arrays (no missing values: those are refused or dropped before) and return
arrays, or stop with a one-line `HeadtuneError` naming the fix.
"""
from __future__ import annotations

import numpy as np

from .errors import HeadtuneError, flag

NEG_POS = ["neg", "pos"]
LIST_CELLS = (list, tuple, np.ndarray)  # how parquet (numpy arrays) and jsonl (lists) give a row's labels


def describe_labels(names: list[str], shown: int = 5) -> str:
    """'77 labels: Refund_not_showing_up, activate_my_card, ...': short enough for one log line."""
    more = ", ..." if len(names) > shown else ""
    # a name holding a line break or a tab is quoted with escapes, so the log line stays one line
    listed = ", ".join(n if n.isprintable() else repr(n) for n in names[:shown])
    return f"{len(names)} label{'' if len(names) == 1 else 's'}: {listed}{more}"


def holds_lists(values: np.ndarray) -> bool:
    """True when any cell holds a list of labels (multi-label data)."""
    return values.dtype == object and any(isinstance(v, LIST_CELLS) for v in values)


def as_int_labels(values) -> np.ndarray | None:
    """Integer labels as int64 (floats like 1.0 count), or None when any label is not an integer."""
    values = np.asarray(values)
    if values.dtype == object:
        try:  # Python ints (or a mix with strings, which stays object and is refused below)
            values = np.asarray(values.tolist())
        except Exception:
            return None
    if values.dtype.kind in "iu":  # not bool: True/False stay the names 'True'/'False'
        return values.astype(np.int64)
    # whole floats (1.0) are integers; so is an empty array (multi-label rows without labels only)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return None


def label_sets(values: np.ndarray, split_strings: bool) -> list[list]:
    """Multi-label: each row's labels. Lists stay lists; strings are split on commas when
    `split_strings` (--multi-label), so 'billing, refund' is two labels; any other cell is one label."""
    def row(v) -> list:
        if isinstance(v, LIST_CELLS):
            return list(v)
        if split_strings and isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return [v]
    return [row(v) for v in values]


def _plain(label) -> bool:
    """A name or a number: not a null, a NaN, or a container (which would become a label named 'None' or "{...}")."""
    if isinstance(label, (float, np.floating)):
        return not np.isnan(label)
    return isinstance(label, (str, int, np.integer))


def _check_plain(split: str, rows: list[list]) -> None:
    for i, labels in enumerate(rows):
        bad = [x for x in labels if not _plain(x)]
        if bad:
            raise HeadtuneError(f"the {split} split's labels at row {i} (counting from 0) hold {bad[0]!r}; a label "
                                f"must be a name or a number: fix that row or remove it")


def _check_plain_values(split: str, values: np.ndarray) -> None:
    """Single-label: as _check_plain. Numeric and string arrays hold plain labels; an object array may hold a dict."""
    if values.dtype == object:
        _check_plain(split, [[v] for v in values])


def _shown(name: str, limit: int = 60) -> str:
    """A label as a message shows it: a whole review (swapped columns) would make the line unreadable."""
    return name if len(name) <= limit else f"{name[:limit]}..."


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def _ids_in(order: np.ndarray, values: np.ndarray, split: str) -> np.ndarray:
    """Position of each value in the sorted `order` (the train split's values); an unknown value is refused."""
    pos = np.minimum(np.searchsorted(order, values), max(len(order) - 1, 0))
    unknown = order[pos] != values if len(order) else np.ones(len(values), dtype=bool)
    if np.any(unknown):
        first = values[np.flatnonzero(unknown)[0]]
        raise _unseen(split, str(first), int(np.sum(values == first)))
    return pos.astype(np.int64)


def _unseen(split: str, name: str, rows: int) -> HeadtuneError:
    if len(name) > 100:  # a label as long as a review: the columns are likely the wrong way round
        return HeadtuneError(f"{split} label '{_shown(name)}' never occurs in the train split, and labels this "
                             f"long look like texts: check that {flag('text_column')} and {flag('label_column')} "
                             f"name the right columns")
    return HeadtuneError(f"{split} label '{_shown(name)}' never occurs in the train split ({rows:,} {split} "
                         f"row{'s' if rows != 1 else ''}), so the head cannot learn it; add examples of it to the "
                         f"train split or remove it from the {split} split")


def _check_named(values: np.ndarray, names: list[str]) -> None:
    if len(values) and (values.min() < 0 or values.max() >= len(names)):
        raise HeadtuneError(f"label {values.max() if values.min() >= 0 else values.min()} has no name: "
                            f"names are given for 0..{len(names) - 1} ({', '.join(names)}); "
                            f"pass one name per label with {flag('label_names')}")


def _check_all_trained(train: np.ndarray, names: list[str]) -> None:
    """Each name the user gave is a class the head learns: a name no training label has (one name too many,
    or in the wrong place) would become an output that never trains."""
    absent = np.setdiff1d(np.arange(len(names)), train)
    if len(absent):
        raise HeadtuneError(f"{flag('label_names')} gives {len(names)} names, but label {absent[0]} "
                            f"('{names[absent[0]]}') never occurs in the train split, so the head cannot learn it; "
                            f"pass one name per label 0..{int(train.max())} that the data has")


def _names_and_ids(columns: dict[str, np.ndarray], source_names, user_names, single: bool):
    """Label names and per-split ids of flat label values; the first column is the train split's."""
    ints = {s: as_int_labels(v) for s, v in columns.items()}
    if all(v is not None for v in ints.values()):
        known = user_names or source_names
        if known is None and single and set(np.unique(np.concatenate(list(ints.values()))).tolist()) <= {0, 1}:
            known = NEG_POS
        if known is not None:
            _check_named(np.concatenate(list(ints.values())), known)
            if user_names:
                _check_all_trained(next(iter(ints.values())), user_names)
            return list(known), ints
        # e.g. star ratings 1..5: numbered in sorted order, the values are the names
        order = np.unique(next(iter(ints.values())))
        return [str(v) for v in order], {s: _ids_in(order, v, s) for s, v in ints.items()}
    if user_names:
        raise HeadtuneError(f"{flag('label_names')} names integer labels, but the labels are strings")
    strings = {s: _strings(v) for s, v in columns.items()}
    order = np.unique(next(iter(strings.values())))
    return order.tolist(), {s: _ids_in(order, v, s) for s, v in strings.items()}


def _check_seen(ids: dict[str, np.ndarray], names: list[str]) -> None:
    """At least two labels in train, and no other split's label missing from train."""
    train, *others = ids
    present = np.unique(ids[train])
    if len(present) < 2:
        raise HeadtuneError(f"the train split has only one label ('{names[present[0]] if len(present) else ''}'); "
                            f"a classifier needs at least two: add examples of another label")
    for split in others:
        unseen = np.setdiff1d(np.unique(ids[split]), present)
        if len(unseen):
            raise _unseen(split, names[unseen[0]], int(np.sum(ids[split] == unseen[0])))


# --------------------------------------------------------------------------- training data


def encode_single(columns: dict[str, np.ndarray], source_names: list[str] | None,
                  user_names: list[str] | None) -> tuple[list[str], dict[str, np.ndarray]]:
    """Label names, and int64 ids per split (the first split given is train).

    Integer labels keep their value as id when names are known (--label-names, the dataset's
    own, or neg/pos for 0/1); other labels are numbered in the sorted order of the train values.
    """
    for split, values in columns.items():
        _check_plain_values(split, values)
    names, ids = _names_and_ids(columns, source_names, user_names, single=True)
    _check_seen(ids, names)
    return names, ids


def encode_labels(train, test, source_names: list[str] | None,
                  user_names: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Single-label ids of a train and a test split, and the name of every id."""
    names, ids = encode_single({"train": np.asarray(train, dtype=object), "test": np.asarray(test, dtype=object)},
                               source_names, user_names)
    return ids["train"], ids["test"], names


def _matrix(rows: list[list], ids: np.ndarray, width: int) -> np.ndarray:
    """(n, width) float32 0/1 rows from each row's label ids, given flat in row order."""
    matrix = np.zeros((len(rows), width), dtype=np.float32)
    matrix[np.repeat(np.arange(len(rows)), [len(r) for r in rows]), ids] = 1.0
    return matrix


def encode_multi(columns: dict[str, np.ndarray], source_names: list[str] | None, user_names: list[str] | None,
                 split_strings: bool) -> tuple[list[str], dict[str, np.ndarray]]:
    """Label names, and an (n, K) float32 0/1 matrix per split (the first split given is train).

    Names: integer labels by --label-names or the dataset's names, else the sorted train values as strings.
    A row may have no labels; a label of another split that train never has is refused.
    """
    rows = {s: label_sets(v, split_strings) for s, v in columns.items()}
    for split, split_rows in rows.items():
        _check_plain(split, split_rows)
    flat = {s: np.array([x for r in rs for x in r], dtype=object) for s, rs in rows.items()}
    names, ids = _names_and_ids(flat, source_names, user_names, single=False)
    matrices = {s: _matrix(rows[s], ids[s], len(names)) for s in ids}
    train, *others = matrices
    counts = {s: m.sum(axis=0) for s, m in matrices.items()}
    present = counts[train] > 0
    if present.sum() < 2:
        has = f"only one label ('{names[np.flatnonzero(present)[0]]}')" if present.any() else "no labels"
        raise HeadtuneError(f"the train split has {has}; a classifier needs at least two: add examples of "
                            f"another label")
    for split in others:
        unseen = np.flatnonzero((counts[split] > 0) & ~present)
        if len(unseen):
            raise _unseen(split, names[unseen[0]], int(counts[split][unseen[0]]))
    return names, matrices


def positive_id(names: list[str], positive_label: str | None, multi_label: bool) -> int | None:
    """The id whose F1 is reported for two-label data: --positive-label, else 1; None for other data."""
    if multi_label or len(names) != 2:
        if positive_label is not None:
            what = "multi-label" if multi_label else f"{len(names)} labels"
            raise HeadtuneError(f"{flag('positive_label')} applies to two-label data only, but this data has "
                                f"{what}; leave it out")
        return None
    if positive_label is None:
        return 1
    if positive_label not in names:
        raise HeadtuneError(f"{flag('positive_label')} '{positive_label}' is not one of the labels "
                            f"({', '.join(names)}); pass one of them")
    return names.index(positive_label)


# --------------------------------------------------------------------------- data for a trained model


def _candidate_names(ints: np.ndarray | None, flat: np.ndarray, source_names, user_names,
                     multi_label: bool) -> list[list[str]]:
    """Ways to name the values, most likely first: training's rules, then transformers' default LABEL_i."""
    if ints is None:
        if user_names:
            raise HeadtuneError(f"{flag('label_names')} names integer labels, but the labels are strings")
        return [_strings(flat).tolist()]
    known = user_names or source_names
    if known is not None:
        _check_named(ints, known)
        return [[known[v] for v in ints]]
    candidates = []
    if not multi_label and set(ints.tolist()) <= {0, 1}:
        candidates.append([NEG_POS[v] for v in ints])
    candidates += [[str(v) for v in ints], [f"LABEL_{v}" for v in ints]]
    return candidates


def encode_for_model(values: np.ndarray, source_names: list[str] | None, user_names: list[str] | None,
                     label2id: dict[str, int], multi_label: bool, split: str) -> np.ndarray:
    """One split's labels as the model's ids (int64) or, multi-label, an (n, K) matrix in the model's order."""
    if not multi_label and holds_lists(values):
        raise HeadtuneError(f"the {split} split holds lists of labels (multi-label data), but the model is "
                            f"single-label; evaluate it on data with one label per text")
    if not multi_label:
        _check_plain_values(split, values)
    rows = label_sets(values, split_strings=True) if multi_label else None
    flat = np.array([x for r in rows for x in r], dtype=object) if multi_label else values
    ints = as_int_labels(flat)
    candidates = _candidate_names(ints, flat, source_names, user_names, multi_label)
    for names in candidates:
        if all(n in label2id for n in set(names)):
            ids = np.array([label2id[n] for n in names], dtype=np.int64)
            return _matrix(rows, ids, max(label2id.values()) + 1) if multi_label else ids
    unknown = next(n for n in candidates[0] if n not in label2id)
    model = describe_labels(sorted(label2id, key=label2id.get), shown=10)
    hint = (f"the labels are integers: pass the model's names for them, in order, with {flag('label_names')}"
            if ints is not None and not (user_names or source_names) else
            "evaluate on data labelled like the model's training data")
    raise HeadtuneError(f"{split} label '{_shown(unknown)}' is not one of the model's labels (the model has {model}); "
                        f"{hint}")
