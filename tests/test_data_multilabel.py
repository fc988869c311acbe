"""data.py / labels.py: multi-label data (any number of labels per text) as a float32 0/1 matrix."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from headtune.config import DataConfig
from headtune.data import load_splits
from headtune.errors import HeadtuneError

from test_data import frame, write


def load(folder, **settings):
    settings.setdefault("val_fraction", 0.0)
    return load_splits(DataConfig(dataset=str(folder), **settings))


def refused(folder, *needles, **settings) -> str:
    with pytest.raises(HeadtuneError) as info:
        load(folder, **settings)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


TRAIN = frame(["a match and a vote", "a new phone", "nothing", "a vote on phones"],
              [["sports", "politics"], ["tech"], [], ["politics", "tech"]])
TEST = frame(["a goal", "an election"], [["sports"], ["politics"]])


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])  # parquet gives numpy arrays, jsonl Python lists
def test_list_labels_are_multi_label_automatically(tmp_path, ext):
    splits = load(write(tmp_path, TRAIN, TEST, ext))
    assert splits.multi_label and splits.positive is None
    assert splits.label_names == ["politics", "sports", "tech"]  # sorted
    assert splits.train.labels.dtype == np.float32 and splits.train.labels.shape == (4, 3)
    assert splits.train.labels.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]]  # [] is a row with no label
    assert splits.test.labels.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_tuple_cells_count_as_lists(tmp_path):
    path = write(tmp_path, frame(["x", "y"], [("b", "a"), ("a",)]), frame(["z"], [("b",)]), "jsonl")
    assert load(path).train.labels.tolist() == [[1, 1], [1, 0]]


def test_comma_separated_strings_with_the_flag(tmp_path):
    train = frame(["a", "b", "c"], ["billing, refund", "refund", " card ,billing "])
    write(tmp_path, train, frame(["d"], ["card"]), "csv")
    splits = load(tmp_path, multi_label=True)
    assert splits.label_names == ["billing", "card", "refund"]
    assert splits.train.labels.tolist() == [[1, 0, 1], [0, 0, 1], [1, 1, 0]]


def test_comma_strings_without_the_flag_stay_single_labels(tmp_path):
    write(tmp_path, frame(["a", "b"], ["billing, refund", "refund"]), frame(["d"], ["refund"]), "csv")
    splits = load(tmp_path)
    assert not splits.multi_label and splits.label_names == ["billing, refund", "refund"]


def test_scalar_cells_are_one_label_each(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], [3, 1, 3]), frame(["d"], [1]))
    splits = load(tmp_path, multi_label=True)
    assert splits.label_names == ["1", "3"] and splits.train.labels.tolist() == [[0, 1], [1, 0], [0, 1]]


def test_integer_lists_named_by_label_names(tmp_path):
    write(tmp_path, frame(["a", "b"], [[0, 2], [1]]), frame(["c"], [[2]]), "jsonl")
    splits = load(tmp_path, label_names=["sad", "meh", "glad"])
    assert splits.label_names == ["sad", "meh", "glad"]
    assert splits.train.labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    refused(tmp_path, "label 2 has no name", "--label-names", label_names=["sad", "meh"])


def test_integer_lists_without_names_sort_by_value(tmp_path):
    write(tmp_path, frame(["a", "b"], [[10, 2], [9]]), frame(["c"], [[2]]), "jsonl")
    splits = load(tmp_path)
    assert splits.label_names == ["2", "9", "10"]
    assert splits.train.labels.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_test_label_unknown_to_train(tmp_path):
    write(tmp_path, TRAIN, frame(["x", "y", "z"], [["tech"], ["weather"], ["weather", "sports"]]), "jsonl")
    refused(tmp_path, "test label 'weather'", "(2 test rows)", "never occurs in the train split")


@pytest.mark.parametrize("cell, shown", [(["x", None], "None"), (["x", {"k": 0}], "{'k': 0}"),
                                         (["x", ["y"]], "['y']")], ids=["null", "dict", "nested list"])
def test_a_label_that_is_not_a_name_or_number_is_refused(cell, shown, tmp_path):
    write(tmp_path, frame(["a", "b", "c"], [["x"], ["y"], cell]), frame(["d"], [["x"]]), "jsonl")
    refused(tmp_path, "the train split's labels at row 2", f"hold {shown}", "a name or a number")


def test_one_label_in_train_is_refused(tmp_path):
    write(tmp_path, frame(["a", "b"], [["x"], []]), frame(["c"], [["x"]]), "jsonl")
    refused(tmp_path, "only one label ('x')", "at least two")
    write(tmp_path, frame(["a", "b"], [[], []]), frame(["c"], [[]]), "jsonl")
    refused(tmp_path, "has no labels", "at least two")


def test_missing_label_cells_are_refused_or_dropped(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], [["x"], None, ["y"]]), frame(["d"], [["x"]]), "jsonl")
    refused(tmp_path, "1 missing label ", "row 1 ", "--drop-invalid")
    assert load(tmp_path, drop_invalid=True).train.texts == ["a", "c"]


def test_positive_label_is_refused_for_multi_label(tmp_path):
    write(tmp_path, frame(["a", "b"], [["x"], ["y"]]), frame(["c"], [["x"]]), "jsonl")
    refused(tmp_path, "--positive-label applies to two-label data only", "multi-label", positive_label="x")


@pytest.fixture(scope="module")
def topics_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    topics = ["art", "food", "sports", "tech", "travel"]
    rows = [sorted(rng.choice(topics, size=rng.integers(0, 3), replace=False).tolist()) for _ in range(300)]
    folder = tmp_path_factory.mktemp("topics")
    train = frame([f"text {i}" for i in range(300)], rows)
    write(folder, train, train.iloc[:40], "parquet")
    return folder


def test_multi_label_sample_and_holdout_are_seeded(topics_dir):
    a = load(topics_dir, train_size=100, sample_seed=3, val_fraction=0.2)
    b = load(topics_dir, train_size=100, sample_seed=3, val_fraction=0.2)
    c = load(topics_dir, train_size=100, sample_seed=3, val_fraction=0.0)
    assert len(a.train.texts) == 80 and len(a.validation.texts) == 20 and a.validation_source == "train"
    assert a.train.texts == b.train.texts and a.validation.texts == b.validation.texts
    assert sorted(a.train.texts + a.validation.texts) == sorted(c.train.texts)  # the same sample
    assert a.validation.labels.shape == (20, 5)
    d = load(topics_dir, train_size=100, sample_seed=4, val_fraction=0.2)
    assert sorted(d.train.texts + d.validation.texts) != sorted(c.train.texts)  # another seed, another sample
    whole = [load(topics_dir, sample_seed=seed, val_fraction=0.2) for seed in (3, 4)]  # the same rows...
    assert sorted(whole[0].train.texts + whole[0].validation.texts) == \
        sorted(whole[1].train.texts + whole[1].validation.texts)
    assert whole[0].validation.texts != whole[1].validation.texts  # ...held out by the seed
    full = pd.read_parquet(topics_dir / "train.parquet")
    by_text = dict(zip(full.text, full.label))
    for text, row in zip(a.train.texts, a.train.labels):
        assert [a.label_names[i] for i in np.flatnonzero(row)] == list(by_text[text])


def test_hub_sequence_of_class_labels(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.Sequence(datasets.ClassLabel(names=["x", "y", "z"]))})
    data = {"train": {"text": ["a", "b"], "label": [[0, 2], [1]]}, "test": {"text": ["c"], "label": [[2]]}}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(d, features=features) for s, d in data.items()})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: dd)
    splits = load_splits(DataConfig(dataset="someone/topics", val_fraction=0.0))
    assert splits.multi_label and splits.label_names == ["x", "y", "z"]
    assert splits.train.labels.tolist() == [[1, 0, 1], [0, 1, 0]]
