"""data.py: validation splits (the dataset's own, or held out of the training sample), samples that would
lose a class, the positive label, labels in brief, and one split read for `evaluate`.

Every refusal is a one-line HeadtuneError that names the problem and the fix.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from headtune.config import DataConfig, DataSource
from headtune.data import describe_labels, load_split, load_splits
from headtune.sampling import allocate, smallest_sample_keeping_classes
from headtune.errors import HeadtuneError

from conftest import ROOT, sentiment_frame
from test_data import GOOD_TEST, GOOD_TRAIN, frame, write

BANKING77 = ROOT.parent / "shared" / "data" / "banking77"


def load(folder, **settings):
    return load_splits(DataConfig(dataset=str(folder), **settings))


def refused(call, *needles) -> str:
    with pytest.raises(HeadtuneError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def save(frame_: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame_.to_parquet(path)
    elif path.suffix == ".csv":
        frame_.to_csv(path, index=False)
    else:
        frame_.to_json(path, orient="records", lines=True, force_ascii=False)


VALID = frame(["nice film", "dull film", "fine plot"], [1, 0, 1])


# --------------------------------------------------------------------------- the dataset's own validation split


@pytest.mark.parametrize("name", ["validation.parquet", "valid.csv", "dev.jsonl", "data/validation-00000-of-00001.parquet"])
def test_dataset_validation_file_is_used_whole(tmp_path, name):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, Path(name).suffix[1:])
    save(VALID, tmp_path / name)
    splits = load(tmp_path, folds=1)  # one training, on held-out rows: the dataset's own
    assert splits.validation_source == "dataset" and splits.folds is None
    assert splits.validation.texts == VALID.text.tolist()
    assert splits.validation.labels.tolist() == [1, 0, 1]
    assert splits.train.texts == GOOD_TRAIN.text.tolist()  # nothing held out of train
    assert splits.dropped == {"train": 0, "test": 0, "validation": 0}


@pytest.mark.parametrize("asked, source", [({"val_fraction": 0.3}, "train"), ({"val_fraction": 0.0}, None),
                                           ({"folds": 2}, "cross-validation")])
def test_an_explicit_validation_flag_replaces_the_datasets_split(tmp_path, caplog, asked, source):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    save(VALID, tmp_path / "validation.parquet")
    with caplog.at_level(logging.INFO, logger="headtune"):
        splits = load(tmp_path, **asked)
    assert splits.validation_source == source
    assert splits.validation is None or splits.validation.texts != VALID.text.tolist()
    assert (splits.folds is not None) == ("folds" in asked)
    flag_, value = next(iter(asked.items()))
    assert f"--{flag_.replace('_', '-')} {value:g}, so the dataset's own validation split is not used" in caplog.text


def test_dataset_validation_is_not_sampled(sentiment_dir, tmp_path):
    for name in ("train", "test"):
        (tmp_path / f"{name}.parquet").write_bytes((sentiment_dir / f"{name}.parquet").read_bytes())
    sentiment_frame(90, seed=9).to_parquet(tmp_path / "validation.parquet")
    splits = load(tmp_path, small_run=True, train_size=50, test_size=20)
    assert (len(splits.train.texts), len(splits.validation.texts), len(splits.test.texts)) == (50, 90, 20)


def test_aclimdb_style_dev_folder(tmp_path):
    for split, n in (("train", 3), ("test", 2), ("dev", 1)):
        for label in ("neg", "pos"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(n):
                (tmp_path / split / label / f"{i}_7.txt").write_text(f"{label} {split} {i}", encoding="utf-8")
    splits = load(tmp_path)
    assert splits.validation_source == "dataset"
    assert splits.validation.texts == ["neg dev 0", "pos dev 0"]
    assert splits.validation.labels.tolist() == [0, 1]
    assert len(splits.train.texts) == 6


def test_invalid_validation_texts_honour_drop_invalid(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, "jsonl")
    save(frame(["fine", "  ", None, "good"], [1, 0, 1, 0]), tmp_path / "validation.jsonl")
    refused(lambda: load(tmp_path), "validation split", "2 invalid texts", "rows 1, 2 ", "--drop-invalid")
    splits = load(tmp_path, drop_invalid=True)
    assert splits.validation.texts == ["fine", "good"] and splits.validation.labels.tolist() == [1, 0]
    assert splits.dropped["validation"] == 2 and splits.validation.dropped == 2


def test_validation_label_unknown_to_train(tmp_path):
    write(tmp_path, frame(["a", "b"], ["neg", "pos"]), frame(["c"], ["pos"]))
    save(frame(["d", "e", "f"], ["pos", "meh", "meh"]), tmp_path / "dev.parquet")
    refused(lambda: load(tmp_path), "validation label 'meh'", "(2 validation rows)", "never occurs in the train split")


def test_validation_without_the_label_column(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    save(VALID.rename(columns={"label": "y"}), tmp_path / "validation.parquet")
    refused(lambda: load(tmp_path), "column 'label' not found in the validation split", "text, y", "--label-column")


def test_two_validation_splits_are_refused(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    save(VALID, tmp_path / "valid.parquet")
    save(VALID, tmp_path / "dev.parquet")
    refused(lambda: load(tmp_path), "several validation splits", "valid, dev", "keep one")


def test_a_file_that_only_starts_like_dev_is_not_a_validation_split(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    (tmp_path / "dev-notes.md").write_text("notes")
    assert load(tmp_path, val_fraction=0.0).validation is None


# --------------------------------------------------------------------------- validation held out of the training sample


def test_by_default_the_whole_sample_trains_in_stratified_folds(sentiment_dir):
    splits = load(sentiment_dir)
    assert splits.validation is None and splits.validation_source == "cross-validation"
    assert len(splits.train.texts) == 400 and len(splits.folds) == 400
    assert np.bincount(splits.folds).tolist() == [80] * 5
    assert [int(splits.train.labels[splits.folds == f].sum()) for f in range(5)] == [40] * 5  # half pos, as the data
    assert (load(sentiment_dir, folds=4).folds >= 0).all() and load(sentiment_dir, folds=4).folds.max() == 3


def test_folds_are_the_default_while_rows_times_labels_stay_small(tmp_path, caplog):
    from headtune.config import FOLDS_BUDGET

    assert DataConfig().folds_for(50_000, 2) == 5 and DataConfig().folds_for(10_003, 77) == 1  # IMDb / BANKING77
    assert DataConfig().folds_for(FOLDS_BUDGET // 4, 4) == 5 and DataConfig().folds_for(FOLDS_BUDGET // 4 + 1, 4) == 1
    assert DataConfig(folds=3).folds_for(10**7, 100) == 3 and DataConfig(val_fraction=0.2).folds_for(10, 2) == 1
    labels = [f"intent_{i % 60}" for i in range(1_800)]  # 1,800 x 60 = 108,000
    write(tmp_path, frame([f"text {i}" for i in range(1_800)], labels), frame(["t"], ["intent_0"]))
    with caplog.at_level(logging.INFO, logger="headtune"):
        held = load(tmp_path)
    assert held.folds is None and held.validation_source == "train" and len(held.validation.texts) == 180
    assert "1,800 training rows x 60 labels is over 100,000" in caplog.text and "--folds 5" in caplog.text
    assert load(tmp_path, folds=5).validation_source == "cross-validation"


def test_held_out_rows_are_a_stratified_share_of_the_sample(sentiment_dir):
    splits = load(sentiment_dir, folds=1)  # --val-fraction 0.1
    assert splits.validation_source == "train"
    assert len(splits.validation.texts) == 40 and len(splits.train.texts) == 360
    assert splits.validation.labels.sum() == 20  # half of each class, as in train
    full = pd.read_parquet(sentiment_dir / "train.parquet")
    assert sorted(splits.train.texts + splits.validation.texts) == sorted(full.text)
    assert not set(splits.train.texts) & set(splits.validation.texts)
    pairs = set(zip(full.text, full.label))
    assert all((t, int(y)) in pairs for t, y in zip(splits.validation.texts, splits.validation.labels))


def test_the_sample_is_the_same_rows_whatever_the_validation_share(sentiment_dir):
    whole = load(sentiment_dir, sample_seed=4, train_size=101, val_fraction=0.0)
    for fraction in (0.1, 0.3):
        split = load(sentiment_dir, sample_seed=4, train_size=101, val_fraction=fraction)
        assert sorted(split.train.texts + split.validation.texts) == sorted(whole.train.texts)
        assert len(split.validation.texts) == round(fraction * 101)
    assert whole.validation is None and whole.validation_source is None


def test_held_out_rows_depend_on_the_sample_seed_only(sentiment_dir):
    a, b, c = (load(sentiment_dir, sample_seed=s, val_fraction=0.2) for s in (1, 1, 2))
    assert a.validation.texts == b.validation.texts and a.train.texts == b.train.texts
    assert a.validation.texts != c.validation.texts


def test_tiny_train_split_still_gets_one_validation_row(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)  # 4 rows: 10% rounds to 0, but a validation split needs a row
    splits = load(tmp_path, folds=1)
    assert len(splits.validation.texts) == 1 and len(splits.train.texts) == 3
    assert sorted(splits.train.labels.tolist() + splits.validation.labels.tolist()) == [0, 0, 1, 1]


def test_nothing_to_hold_out_when_every_class_has_one_row(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], ["x", "y", "z"]), frame(["d"], ["x"]))
    splits = load(tmp_path, folds=1)
    assert splits.validation is None and splits.validation_source is None and len(splits.train.texts) == 3
    assert sorted(load(tmp_path).folds.tolist()) == [0, 1, 2]  # folds: at most one per row


# --------------------------------------------------------------------------- samples that would lose a class


def many_classes(seed: int = 0) -> pd.DataFrame:
    """BANKING77-like: 77 imbalanced classes of 35 to 187 examples."""
    rng = np.random.default_rng(seed)
    counts = np.linspace(35, 187, 77).astype(int)
    labels = np.repeat([f"intent_{i:02d}" for i in range(77)], counts)
    rng.shuffle(labels)
    return frame([f"query {i} about {label}" for i, label in enumerate(labels)], labels.tolist())


@pytest.fixture(scope="module")
def intents_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("intents")
    train = many_classes()
    write(folder, train, train.iloc[:300])
    return folder


def test_train_sample_that_loses_classes_names_the_smallest_that_keeps_them(intents_dir):
    message = refused(lambda: load(intents_dir, train_size=50), "--train-size 50 leaves ",
                      "of the 77 classes without a training example", "or more")
    counts = many_classes().label.value_counts().sort_index().to_numpy()
    lost = int(message.split("leaves ")[1].split(" of")[0])
    assert lost == (allocate(counts, 50) == 0).sum() >= 77 - 50
    smallest = int(message.split("pass --train-size ")[1].split(" ")[0])
    sizes = np.arange(smallest, counts.sum() + 1)
    assert (allocate(counts, sizes) > 0).all()  # every size from there on keeps every class
    assert (allocate(counts, smallest - 1) == 0).any()  # and one row fewer does not
    splits = load(intents_dir, train_size=smallest)
    assert len(set(splits.train.labels.tolist())) == 77  # the held-out rows never take a class's last one


def test_small_run_that_loses_classes(tmp_path):
    labels = ["big_a"] * 2000 + ["big_b"] * 2000 + [f"rare_{i:03d}" for i in range(500)]
    write(tmp_path, frame([f"text {i}" for i in range(len(labels))], labels), frame(["t"], ["big_a"]))
    counts = np.array([1] * 500 + [2000, 2000])
    refused(lambda: load(tmp_path, small_run=True), "--small-run's sample of 4,000 texts leaves",
            f"{(allocate(counts, 4000) == 0).sum()} of the 502 classes",
            f"--train-size {smallest_sample_keeping_classes(counts)} or more")
    splits = load(tmp_path)  # the whole split: unaffected (4,500 x 502 labels: rows held out, not folds)
    assert len(splits.train.texts) + len(splits.validation.texts) == 4500
    assert len(set(splits.train.labels.tolist())) == 502


def test_test_sample_may_lose_classes(intents_dir):
    assert len(load(intents_dir, test_size=10).test.texts) == 10


@pytest.mark.skipif(not (BANKING77 / "train.parquet").exists(), reason="no shared BANKING77 copy")
def test_real_banking77_train_size_50():
    refused(lambda: load(BANKING77, label_column="category", train_size=50),
            "--train-size 50 leaves 27 of the 77 classes without a training example; pass --train-size 171 or more")
    splits = load(BANKING77, label_column="category", train_size=171)
    assert len(set(splits.train.labels.tolist())) == 77 and len(splits.label_names) == 77
    assert splits.describe_labels() == ("77 labels: Refund_not_showing_up, activate_my_card, age_limit, "
                                        "apple_pay_or_google_pay, atm_support, ...")
    assert splits.positive is None


# --------------------------------------------------------------------------- the positive label and labels in brief


def test_positive_label(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    assert load(tmp_path).positive == 1
    assert load(tmp_path, positive_label="neg").positive == 0
    refused(lambda: load(tmp_path, positive_label="good"), "--positive-label 'good' is not one of the labels",
            "neg, pos")


def test_positive_label_with_string_labels(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], ["spam", "ham", "spam"]), frame(["d"], ["ham"]))
    splits = load(tmp_path, positive_label="spam")
    assert splits.label_names == ["ham", "spam"] and splits.positive == 1
    assert load(tmp_path, positive_label="ham").positive == 0


def test_positive_label_needs_two_labels(tmp_path):
    write(tmp_path, frame(list("abc"), ["x", "y", "z"]), frame(["d"], ["x"]))
    assert load(tmp_path).positive is None
    refused(lambda: load(tmp_path, positive_label="x"), "--positive-label applies to two-label data only",
            "3 labels", "leave it out")


def test_describe_labels():
    names = [f"label_{i}" for i in range(77)]
    assert describe_labels(names) == "77 labels: label_0, label_1, label_2, label_3, label_4, ..."
    assert describe_labels(["neg", "pos"]) == "2 labels: neg, pos"
    assert describe_labels(["bad\nfilm", "good", "né"]) == "3 labels: 'bad\\nfilm', good, né"  # one log line
    assert describe_labels(names[:5], shown=5) == "5 labels: label_0, label_1, label_2, label_3, label_4"


# --------------------------------------------------------------------------- a Hub dataset (datasets, in memory)


def fake_hub(monkeypatch, splits: dict[str, pd.DataFrame], names=None):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names) if names else datasets.Value("int64")})
    dd = datasets.DatasetDict({s: datasets.Dataset.from_pandas(f, features=features, preserve_index=False)
                               for s, f in splits.items()})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: dd)


def test_hub_dataset_validation_split_and_class_names(monkeypatch):
    fake_hub(monkeypatch, {"train": GOOD_TRAIN.astype({"label": int}), "validation": VALID.astype({"label": int}),
                           "test": GOOD_TEST.astype({"label": int})}, names=["bad", "good"])
    splits = load_splits(DataConfig(dataset="someone/reviews"))
    assert splits.label_names == ["bad", "good"]
    assert splits.validation_source == "dataset" and splits.validation.texts == VALID.text.tolist()
    assert splits.train.texts == GOOD_TRAIN.text.tolist()


def test_hub_dataset_without_a_test_split(monkeypatch):
    fake_hub(monkeypatch, {"train": GOOD_TRAIN.astype({"label": int}), "dev": VALID.astype({"label": int})})
    refused(lambda: load_splits(DataConfig(dataset="someone/reviews")), "dataset 'someone/reviews' has no test split",
            "it has: train, dev")


# --------------------------------------------------------------------------- one split for evaluate


def evaluate_split(folder, split="test", label2id=None, multi_label=False, **source):
    label2id = label2id if label2id is not None else {"neg": 0, "pos": 1}
    return load_split(DataSource(dataset=str(folder), **source), split, label2id, multi_label)


def test_load_split_maps_labels_through_the_model(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    split = evaluate_split(tmp_path, label2id={"pos": 0, "neg": 1})  # the model's order, not the data's
    assert split.texts == GOOD_TEST.text.tolist() and split.labels.tolist() == [0, 1]
    assert split.labels.dtype == np.int64


def test_load_split_unknown_name_lists_the_splits(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    save(VALID, tmp_path / "data" / "dev-00000-of-00001.parquet")
    refused(lambda: evaluate_split(tmp_path, split="holdout"), "has no 'holdout' split",
            "its splits are: dev, test, train", "--split")


def test_load_split_validation_finds_dev(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    save(VALID, tmp_path / "dev.parquet")
    assert evaluate_split(tmp_path, split="validation").texts == VALID.text.tolist()


def test_load_split_integer_labels_the_model_does_not_know(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    model = {"negative": 0, "positive": 1}
    refused(lambda: evaluate_split(tmp_path, label2id=model), "test label 'pos' is not one of the model's labels",
            "2 labels: negative, positive", "--label-names")
    split = evaluate_split(tmp_path, label2id=model, label_names=["negative", "positive"])
    assert split.labels.tolist() == [1, 0]


def test_load_split_integer_labels_by_value_or_transformers_default_names(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    assert evaluate_split(tmp_path, label2id={"0": 0, "1": 1, "2": 2}).labels.tolist() == [1, 0]
    assert evaluate_split(tmp_path, label2id={"LABEL_0": 0, "LABEL_1": 1}).labels.tolist() == [1, 0]


def test_load_split_string_label_the_model_does_not_know(tmp_path):
    write(tmp_path, frame(["a"], ["x"]), frame(["b", "c"], ["spam", "eggs"]))
    message = refused(lambda: evaluate_split(tmp_path, label2id={"spam": 0, "ham": 1}),
                      "test label 'eggs' is not one of the model's labels", "2 labels: spam, ham")
    assert "--label-names" not in message


def test_load_split_validates_texts(tmp_path):
    write(tmp_path, GOOD_TRAIN, frame(["fine", "", "poor"], [1, 0, 0]), "jsonl")
    refused(lambda: evaluate_split(tmp_path), "test split", "1 invalid text ", "--drop-invalid")
    split = evaluate_split(tmp_path, drop_invalid=True)
    assert split.texts == ["fine", "poor"] and split.dropped == 1


def test_load_split_of_a_single_label_model_refuses_lists(tmp_path):
    write(tmp_path, GOOD_TRAIN, frame(["a"], [["neg", "pos"]]), "jsonl")
    refused(lambda: evaluate_split(tmp_path), "lists of labels", "single-label")


def test_load_split_multi_label_in_the_model_order(tmp_path):
    write(tmp_path, GOOD_TRAIN, frame(["a", "b", "c"], [["sports", "news"], [], ["tech"]]), "jsonl")
    split = evaluate_split(tmp_path, label2id={"tech": 0, "news": 1, "sports": 2}, multi_label=True)
    assert split.labels.dtype == np.float32
    assert split.labels.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    refused(lambda: evaluate_split(tmp_path, label2id={"news": 0, "sports": 1}, multi_label=True),
            "test label 'tech' is not one of the model's labels")
