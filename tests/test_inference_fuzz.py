"""Property-based tests: whatever texts or labels come in, headtune either works or stops with its
one-line error, never a traceback.

The tiny classifier is built and loaded once per module; the CLI cases reuse it through a patched
loader, so each example costs a forward pass, not a model load.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import headtune.inference
from headtune import cli
from headtune.config import DataConfig
from headtune.data import encode_labels, invalid_texts, load_splits
from headtune.sampling import sample_stratified
from headtune.errors import HeadtuneError
from headtune.inference import check_texts, class_probabilities
from headtune.saved import load_classifier

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every code point, lone surrogates and control characters included
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(st.sampled_from(" \t\r\n\x0b\x0c\x1c\x85\u2028\u3000\x00\x7f"), max_size=6),  # whitespace, controls
    st.builds(lambda word, n: word * n, st.text(ANY_CHAR, min_size=1, max_size=8), st.integers(50, 400)),  # long
    st.sampled_from(["", " ", "great film", "NA", "null", "-", "--", "-x", "0", "\ud800", "a\udcffb", "\u200b"]),
)


def assert_one_line(err: HeadtuneError) -> str:
    message = str(err)
    assert message and "\n" not in message and "\r" not in message
    return message


@pytest.fixture(scope="module")
def classifier(tiny_models, tmp_path_factory):
    """A saved 2-label classifier (tiny distilbert, random head), and it loaded once."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("clf") / "model"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_models["distilbert"], num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_models["distilbert"]).save_pretrained(folder)
    clf, tokenizer, _ = load_classifier(str(folder), torch.device("cpu"))
    return folder, clf, tokenizer


# --------------------------------------------------------------------------- predict, as a library


@FUZZ
@given(texts=st.lists(ANY_TEXT, max_size=6))
def test_check_texts_then_class_probabilities(classifier, texts):
    _, clf, tokenizer = classifier
    try:
        checked = check_texts(texts)
    except HeadtuneError as err:
        message = assert_one_line(err)
        bad = not texts or any(not t.strip() for t in texts) or any(
            not _encodable(t) for t in texts)
        assert bad, message
        return
    assert checked == texts
    assert all(t.strip() and _encodable(t) for t in texts)
    probs = class_probabilities(clf, tokenizer, checked, max_length=32, batch_size=4)
    assert probs.shape == (len(texts), 2)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@FEW
@given(value=st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=5),
                       st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3)), min_size=1, max_size=3)))
def test_check_texts_refuses_what_is_not_text(value):
    assume(not (isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)))
    with pytest.raises(HeadtuneError) as info:
        check_texts(value)
    assert_one_line(info.value)


def test_a_text_is_the_same_as_a_list_of_one(classifier):
    assert check_texts("one review") == ["one review"]


def test_probabilities_do_not_depend_on_batching(classifier):
    _, clf, tokenizer = classifier
    texts = ["short", "a much longer text " * 20, "mid sized text here", "x"]
    one = class_probabilities(clf, tokenizer, texts, max_length=32, batch_size=1)
    all_ = class_probabilities(clf, tokenizer, texts, max_length=32, batch_size=8)
    np.testing.assert_allclose(one, all_, atol=1e-5)


# --------------------------------------------------------------------------- predict, through the CLI


@pytest.fixture(scope="module")
def cached_loader(classifier):
    """`headtune predict` loads the model once for the whole module (a patch in the test, not in headtune)."""
    _, clf, tokenizer = classifier
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(headtune.inference, "load_classifier",
                      lambda path, device, allow_pickle=False: (clf, tokenizer, {}))
        yield


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_predicted_or_one_line_error(code: int, out: str, err: str, texts: list[str]) -> None:
    assert "Traceback" not in err
    if code == 0:
        rows = json.loads(out)
        assert [r["text"] for r in rows] == texts
        for row in rows:
            assert list(row)[:4] == ["text", "neg_prob", "pos_prob", "label"]
            assert list(row)[4:] in ([], ["truncated"]) and row.get("truncated", True) is True
            assert row["label"] in ("neg", "pos")
            assert math.isclose(row["neg_prob"] + row["pos_prob"], 1, abs_tol=1e-5)
        cut = sum("truncated" in row for row in rows)
        # stderr: nothing, or the one truncation line counting the rows marked "truncated"
        assert err == (f"headtune: {cut} of {len(rows)} texts were longer than 32 tokens and were truncated to "
                       f'them, keeping their start as in training (marked "truncated": true)\n' if cut else "")
    else:
        assert code == 2, err
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("headtune: error: "), err


@FUZZ
@given(texts=st.lists(ANY_TEXT, max_size=5))
def test_predict_command_line_texts(classifier, cached_loader, texts):
    assume(texts != ["-"])  # that one means: read stdin
    code, out, err = run_cli(["predict", "--model", classifier[0], "--max-length", "32", "--", *texts])
    assert_predicted_or_one_line_error(code, out, err, texts)
    valid = bool(texts) and "-" not in texts and all(t.strip() and _encodable(t) for t in texts)
    assert (code == 0) == valid, err


@FUZZ
@given(data=st.one_of(st.binary(max_size=200),
                      st.lists(ANY_TEXT, max_size=5).map(lambda ts: "\n".join(ts).encode("utf-8", "surrogatepass"))))
def test_predict_file_of_any_bytes(classifier, cached_loader, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.txt"
        path.write_bytes(data)
        code, out, err = run_cli(["predict", "--model", classifier[0], "--max-length", "32", "--file", path])
    try:
        text = data.decode("utf-8")  # as open() reads it: universal newlines; a byte-order mark is not text
        lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    except UnicodeDecodeError:
        assert code == 2 and "not valid UTF-8" in err, err
        return
    while lines and not lines[-1].strip():  # blank lines at the end are ignored
        lines.pop()
    assert_predicted_or_one_line_error(code, out, err, lines)
    assert (code == 0) == (bool(lines) and all(line.strip() for line in lines)), err


# --------------------------------------------------------------------------- data: labels and sampling

LABEL = st.one_of(st.integers(-3, 6), st.sampled_from(["neg", "pos", "meh", "0", "1", "", " x "]),
                  st.sampled_from([0.0, 1.0, 2.5, True]))


@FUZZ
@given(train=st.lists(LABEL, min_size=1, max_size=12), test=st.lists(LABEL, min_size=1, max_size=6),
       names=st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4,
                                           unique=True)))
def test_encode_labels_is_consistent_or_refuses(train, test, names):
    try:
        train_ids, test_ids, label_names = encode_labels(pd.Series(train, dtype=object), pd.Series(test, dtype=object),
                                                         None, names)
    except HeadtuneError as err:
        assert_one_line(err)
        return
    assert len(train_ids) == len(train) and len(test_ids) == len(test)
    assert len(set(label_names)) == len(label_names)
    assert train_ids.dtype == np.int64 and test_ids.dtype == np.int64
    assert 0 <= min(train_ids.min(), test_ids.min()) and max(train_ids.max(), test_ids.max()) < len(label_names)
    assert len(set(train_ids.tolist())) >= 2  # a classifier needs two classes
    assert set(test_ids.tolist()) <= set(train_ids.tolist())  # every test label was seen in training
    # a label id stands for one label: equal raw labels share an id, different strings never do
    raw = [(type(v).__name__, v) for v in train + test]
    ids = train_ids.tolist() + test_ids.tolist()
    by_raw: dict = {}
    for key, i in zip(raw, ids):
        assert by_raw.setdefault(key, i) == i
    strings = {v: i for (kind, v), i in zip(raw, ids) if kind == "str"}
    assert len(set(strings.values())) == len(strings)
    for value, i in zip(train, train_ids):
        if isinstance(value, str):
            assert label_names[i] == value


@FUZZ
@given(labels=st.lists(st.integers(0, 3), min_size=1, max_size=60), fraction=st.floats(0, 1),
       seed=st.integers(0, 2**32 - 1))
def test_sample_stratified_exact_and_proportional(labels, fraction, seed):
    labels = np.array(labels)
    n = max(1, round(fraction * len(labels)))
    index = sample_stratified(labels, n, seed, "train")
    assert len(index) == n and len(set(index.tolist())) == n
    assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < len(labels)
    for c in np.unique(labels):
        share = (labels == c).sum() * n / len(labels)
        assert math.floor(share) <= (labels[index] == c).sum() <= math.ceil(share)
    assert np.array_equal(index, sample_stratified(labels, n, seed, "train"))
    with pytest.raises(HeadtuneError, match=f"{len(labels)} rows"):
        sample_stratified(labels, len(labels) + 1, seed, "train")


CELL = st.one_of(ANY_TEXT, st.none(), st.integers(-5, 5), st.floats(allow_nan=True))


@FUZZ
@given(texts=st.lists(CELL, min_size=1, max_size=10), ext=st.sampled_from(["parquet", "jsonl", "csv"]),
       drop=st.booleans())
def test_loading_any_texts_keeps_the_valid_ones_or_refuses(texts, ext, drop):
    train = pd.DataFrame({"text": pd.Series(texts, dtype=object), "label": [i % 2 for i in range(len(texts))]})
    test = pd.DataFrame({"text": ["fine film", "dull film"], "label": [0, 1]})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            _write(folder, "train", train, ext)
        except (UnicodeEncodeError, ValueError, TypeError):  # the writer itself cannot store these values
            assume(False)
        _write(folder, "test", test, ext)
        stored = _read_back(folder / f"train.{ext}", ext)  # what the file really holds, as a plain reader sees it
        try:
            splits = load_splits(DataConfig(dataset=str(folder), drop_invalid=drop, val_fraction=0.0))
        except HeadtuneError as err:
            message = assert_one_line(err)
            bad = invalid_texts(stored["text"])
            no_label = stored["label"].isna().to_numpy()
            kept_labels = set(stored["label"][~(bad | no_label)].tolist())
            assert bad.any() or no_label.any() or len(kept_labels) < 2, message
            if bad.any() and not drop:
                assert "train split" in message and f"{bad.sum():,} invalid text" in message, message
            return
    valid = [(t, int(y)) for t, y in zip(stored["text"], stored["label"])
             if isinstance(t, str) and t.strip() and _encodable(t) and not pd.isna(y)]
    assert drop or len(valid) == len(stored)
    assert splits.train.texts == [t for t, _ in valid]
    assert splits.train.labels.tolist() == [y for _, y in valid]
    assert splits.dropped["train"] == len(stored) - len(valid)


def _write(folder: Path, split: str, frame: pd.DataFrame, ext: str) -> None:
    path = folder / f"{split}.{ext}"
    if ext == "parquet":
        frame.to_parquet(path)
    elif ext == "csv":
        frame.to_csv(path, index=False, encoding="utf-8")
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)


def _read_back(path: Path, ext: str) -> pd.DataFrame:
    """The table as a plain reader sees it (pandas writes a bare CR unquoted, so a CSV row may split in two)."""
    if ext == "parquet":
        return pd.read_parquet(path)
    if ext == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"text": str})
    return pd.read_json(path, lines=True, dtype=False)
