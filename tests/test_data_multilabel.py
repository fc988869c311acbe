"""data.py / labels.py: multi-label data (any number of labels per text) as a float32 0/1 matrix."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from headtune.config import DataConfig
from headtune.data import load_splits
from headtune.errors import HeadtuneError
from headtune.sampling import draw

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


def test_a_sample_without_a_label_the_split_has_is_refused(tmp_path):
    """Drawn at random, a multi-label sample can miss a label: its output never trained, yet was saved (predicted
    for every text when its untrained score crossed the threshold)."""
    rows = [["a"], ["b"]] * 10 + [["a", "rare"]]
    train = frame([f"text {i}" for i in range(len(rows))], rows)
    folder = write(tmp_path, train, frame(["x", "y"], [["a"], ["b"]]), "jsonl")
    seed = next(s for s in range(50) if 20 not in draw(np.zeros((21, 3)), 5, s, "train", multi_label=True))
    refused(folder, "--train-size 5 draws no example of 1 of the 3 labels the train split has ('rare')",
            "larger --train-size or another --sample-seed", train_size=5, sample_seed=seed)
    assert load(folder, train_size=21).train.labels[:, 2].sum() == 1  # the whole split: not a sample


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


def test_an_empty_csv_cell_is_a_text_without_labels_with_the_flag(tmp_path, caplog):
    """CSV cannot write parquet's or JSON's [] (pandas reads an empty cell as NaN), so with --multi-label an empty
    cell is a text without labels; without the flag it stays a missing label."""
    train = frame(["a", "b", "c", "d", "e"], ["billing, refund", "", "card", None, "refund"])  # both empty cells
    write(tmp_path, train, frame(["f", "g"], ["", "card"]), "csv")
    with caplog.at_level("INFO", logger="headtune"):
        splits = load(tmp_path, multi_label=True)
    assert splits.label_names == ["billing", "card", "refund"]
    assert splits.train.texts == ["a", "b", "c", "d", "e"]  # nothing dropped
    assert splits.train.labels.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert splits.test.labels.tolist() == [[0, 0, 0], [0, 1, 0]]
    assert "2 empty label cells in the train split, at rows 1, 3 (counting from 0), read as texts without labels" \
        in caplog.messages
    assert "1 empty label cell in the test split, at row 0 (counting from 0), read as texts without labels" \
        in caplog.messages
    refused(tmp_path, "the train split has 2 missing labels (null or NaN) at rows 1, 3 ", "--drop-invalid")


def test_empty_csv_cells_with_integer_labels_keep_them_integers(tmp_path):
    write(tmp_path, frame(["a", "b", "c", "d"], [0, None, 2, 1]), frame(["e", "f"], [None, 2]), "csv")
    splits = load(tmp_path, multi_label=True, label_names=["sad", "meh", "glad"])  # 2.0 (a float column) is 2
    assert splits.train.labels.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert splits.test.labels.tolist() == [[0, 0, 0], [0, 0, 1]]


def test_empty_csv_cells_still_need_two_labels_in_train(tmp_path):
    write(tmp_path, frame(["a", "b"], ["", ""]), frame(["c"], [""]), "csv")
    refused(tmp_path, "the train split has no labels", "at least two", multi_label=True)
    write(tmp_path, frame(["a", "b"], ["x", ""]), frame(["c"], [""]), "csv")
    refused(tmp_path, "only one label ('x')", "at least two", multi_label=True)


def test_a_null_of_json_stays_a_missing_label_with_the_flag(tmp_path):
    """JSON can write [] (and ""), so its null is no empty label set: it may be a label that was never filled in."""
    write(tmp_path, frame(["a", "b", "c"], ["x", None, "y"]), frame(["d"], ["x"]), "jsonl")
    refused(tmp_path, "1 missing label ", "row 1 ", "--drop-invalid", multi_label=True)


def test_a_csv_with_empty_cells_trains_evaluates_and_predicts(tiny_models, tmp_path):
    """Texts without labels through a whole run: the head's targets, the threshold, the metrics, evaluate (the
    model's multi-label reading of the same CSV) and predict agree."""
    import headtune
    from conftest import sentiment_frame

    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 120, 1), ("test", 40, 2)):
        rows = sentiment_frame(n, seed)
        tags = [(["long"] if len(text.split()) > 12 else []) + (["pos"] if label else [])
                for text, label in zip(rows.text, rows.label)]
        assert sum(not t for t in tags) >= 10  # many texts without labels: empty cells
        pd.DataFrame({"text": rows.text, "tags": [", ".join(t) for t in tags]}).to_csv(data / f"{split}.csv",
                                                                                      index=False)
    common = dict(dataset=str(data), label_column="tags", device="cpu", cache_dir=str(tmp_path / "cache"))
    metrics = headtune.train(model=str(tiny_models["distilbert"]), multi_label=True, max_length=32, epochs=4, lr=0.3,
                             pooling="mean", output_dir=str(tmp_path / "out"), **common)
    assert metrics["task"] == "multi_label_classification" and metrics["labels"] == ["long", "pos"]
    model = str(tmp_path / "out" / "model")
    result = headtune.evaluate(model=model, output_dir=str(tmp_path / "eval"), **common)
    assert result["features"] == "cache"
    assert (result["accuracy"], result["f1"]) == (metrics["after"]["accuracy"], metrics["after"]["f1"])
    predicted = headtune.predict(rows.text.tolist(), model=model, device="cpu", max_length=32)
    right = [set(row["labels"]) == set(t) for row, t in zip(predicted, tags)]
    assert metrics["after"]["accuracy"] == pytest.approx(np.mean(right))
    # a text without labels is right when none is predicted: the head learnt that, for some of them
    assert any(ok and not t for ok, t in zip(right, tags))


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
