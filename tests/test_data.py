"""data.py: reading local folders, validating texts and labels, naming labels, stratified sampling.

Every refusal is a one-line HeadtuneError that names the problem and the fix.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from headtune.config import DataConfig
from headtune.data import encode_labels, load_splits
from headtune.errors import HeadtuneError

from conftest import SHARED_IMDB, sentiment_frame


def write(folder: Path, train: pd.DataFrame, test: pd.DataFrame, ext: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("train", train), ("test", test)):
        path = folder / f"{name}.{ext}"
        if ext == "parquet":
            frame.to_parquet(path)
        elif ext == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return folder


def frame(texts, labels) -> pd.DataFrame:
    return pd.DataFrame({"text": pd.Series(texts, dtype=object), "label": pd.Series(labels, dtype=object)})


def load(folder, seed: int = 0, **settings):
    # No validation rows held out unless a test asks: these tests check reading and sampling, which
    # they compare against the whole train split (test_data_splits.py covers the held-out rows).
    settings.setdefault("val_fraction", 0.0)
    return load_splits(DataConfig(dataset=str(folder), sample_seed=seed, **settings))


def refused(folder, *needles, seed: int = 0, **settings) -> str:
    with pytest.raises(HeadtuneError) as info:
        load(folder, seed, **settings)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


GOOD_TRAIN = frame(["good film", "bad film", "great plot", "awful plot"], [1, 0, 1, 0])
GOOD_TEST = frame(["fine film", "poor film"], [1, 0])


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_reads_each_table_format(tmp_path, ext):
    splits = load(write(tmp_path / ext, GOOD_TRAIN, GOOD_TEST, ext))
    assert splits.train.texts == GOOD_TRAIN.text.tolist()
    assert splits.train.labels.tolist() == [1, 0, 1, 0]
    assert splits.test.texts == ["fine film", "poor film"]
    assert splits.label_names == ["neg", "pos"]  # 0/1 without names: the IMDb convention
    assert splits.dropped == {"train": 0, "test": 0}


def test_a_json_file_may_hold_one_array_of_rows(tmp_path):
    """What pandas' to_json(orient="records") writes: it was read as JSON lines, and the error listed the rows'
    positions as its columns."""
    tmp_path.mkdir(exist_ok=True)
    GOOD_TRAIN.to_json(tmp_path / "train.json", orient="records")
    GOOD_TEST.to_json(tmp_path / "test.json", orient="records", lines=True)  # JSON lines still read
    splits = load(tmp_path)
    assert splits.train.texts == GOOD_TRAIN.text.tolist() and splits.test.texts == ["fine film", "poor film"]


def test_json_lines_with_a_byte_order_mark(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, "jsonl")
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows tools save UTF-8
    assert load(tmp_path).train.texts == GOOD_TRAIN.text.tolist()


def hub_layout(root: Path, train_shards: tuple[str, str]) -> Path:
    """A dataset folder as the Hub lays it out: data/, GOOD_TRAIN in two shards of these names, GOOD_TEST in one."""
    data = root / "ds" / "data"
    data.mkdir(parents=True)
    GOOD_TRAIN.iloc[:2].to_parquet(data / f"{train_shards[0]}.parquet")
    GOOD_TRAIN.iloc[2:].to_parquet(data / f"{train_shards[1]}.parquet")
    GOOD_TEST.to_parquet(data / "test-00000-of-00001.parquet")
    return root / "ds"


def test_reads_sharded_files_in_data_subfolder(tmp_path):
    splits = load(hub_layout(tmp_path, ("train-00000-of-00002", "train-00001-of-00002")))
    assert splits.train.texts == GOOD_TRAIN.text.tolist()
    assert len(splits.test.texts) == 2


def test_a_missing_shard_is_refused(tmp_path):
    """train-00000-of-00003 says there are 3: with only the first, a third of the split trained silently."""
    refused(hub_layout(tmp_path, ("train-00000-of-00003", "train-00002-of-00003")),
            "the train split is 3 shards, but 1 of them is missing (train-00001-of-00003)")


def test_an_unreadable_text_file_is_named(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            (root / split / label).mkdir(parents=True)
            (root / split / label / "0.txt").write_text(f"{label} review", encoding="utf-8")
    (root / "train" / "pos" / "1.txt").symlink_to(tmp_path / "gone.txt")  # a dangling link
    refused(root, "cannot read", "1.txt", "fix or remove it")


def test_reads_aclimdb_style_text_folders(tmp_path):
    root = tmp_path / "aclImdb"
    for split, n in (("train", 3), ("test", 2)):
        for label in ("neg", "pos"):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                (root / split / label / f"{i}_7.txt").write_text(f"{label} review {i}", encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled", encoding="utf-8")
    splits = load(root)
    assert splits.label_names == ["neg", "pos"]
    assert len(splits.train.texts) == 6 and len(splits.test.texts) == 4
    assert "unlabelled" not in splits.train.texts
    for text, label in zip(splits.train.texts, splits.train.labels):
        assert text.startswith(splits.label_names[label])


def test_a_text_folders_bad_text_is_named_by_its_file(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            (root / split / label).mkdir(parents=True)
            for i in range(2):
                (root / split / label / f"{i}_7.txt").write_text(f"{label} review {i}", encoding="utf-8")
    (root / "train" / "pos" / "1_7.txt").write_text("  \n", encoding="utf-8")  # row 3 of the split: no such row to see
    message = refused(root, "1 invalid text", "--drop-invalid")
    assert f"at {root / 'train' / 'pos' / '1_7.txt'};" in message and "row" not in message


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
def test_a_single_label_that_is_not_a_name_or_number_is_refused(tmp_path, ext):
    """A dict label became the class "{'y': 1}" (the test split's 1 was then 'never seen in train')."""
    train = frame(["a", "b", "c"], [{"y": 0}, {"y": 1}, {"y": 0}])
    refused(write(tmp_path, train, frame(["d"], [1]), ext), "the train split's labels at row 0", "hold {'y': 0}",
            "a name or a number")


def test_labels_as_long_as_texts_suggest_swapped_columns(tmp_path):
    review = "an excellent film with a cast that carries every scene and a script that never lets them down " * 3
    train = frame(["0", "1"], ["a dull film " * 20, "a fine film " * 20])
    message = refused(write(tmp_path, train, frame(["1"], [review]), "csv"), "test label 'an excellent film",
                      "look like texts", "--text-column and --label-column")
    assert review not in message and len(message) < 300


def test_csv_texts_that_look_like_numbers_stay_texts(tmp_path):
    train = frame(["10", "1e5", "NA", "nan", "0"], [0, 1, 0, 1, 0])
    splits = load(write(tmp_path, train, frame(["3", "4"], [0, 1]), "csv"))
    assert splits.train.texts == ["10", "1e5", "NA", "nan", "0"]
    assert splits.test.texts == ["3", "4"]


def test_csv_with_byte_order_mark(tmp_path):
    for name in ("train", "test"):
        (tmp_path / f"{name}.csv").write_bytes(b"\xef\xbb\xbftext,label\nnice,1\nugly,0\n")
    assert load(tmp_path).train.texts == ["nice", "ugly"]


def test_missing_dataset_path(tmp_path):
    refused(tmp_path / "nowhere", "does not exist", "--dataset")


def test_dataset_path_is_a_file(tmp_path):
    path = tmp_path / "reviews.csv"
    GOOD_TRAIN.to_csv(path, index=False)
    refused(path, "is a file", "train.csv and test.csv")


def test_folder_without_train_and_test_files(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    refused(tmp_path, "no train file", "train.parquet", "train.csv", "train.jsonl")


def test_folder_with_only_a_train_file(tmp_path):
    GOOD_TRAIN.to_parquet(tmp_path / "train.parquet")
    refused(tmp_path, "no test file")


@pytest.mark.parametrize("name", ["train.xlsx", "train.tsv", "train.csv.gz"])
def test_unsupported_file_type(tmp_path, name):
    (tmp_path / name).write_bytes(b"text\tlabel\nx\t1\n")
    GOOD_TEST.to_parquet(tmp_path / "test.parquet")
    refused(tmp_path, "unsupported file type", name, ".parquet, .csv or .jsonl")


def test_two_file_types_for_one_split(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, "csv")
    GOOD_TRAIN.to_parquet(tmp_path / "train.parquet")
    refused(tmp_path, "several types", ".csv", ".parquet", "keep one")


def test_csv_that_is_not_utf8_names_the_encoding_flag(tmp_path):
    latin = "text,label\ncaf\xe9 cr\xe8me,1\nna\xefve plot,0\n".encode("latin-1")
    (tmp_path / "train.csv").write_bytes(latin)
    (tmp_path / "test.csv").write_bytes(latin)
    message = refused(tmp_path, "train.csv", "not valid utf-8", "--encoding latin-1")
    assert "0xe9" in message
    splits = load(tmp_path, encoding="latin-1")  # the fix the message names works
    assert splits.train.texts == ["caf\xe9 cr\xe8me", "na\xefve plot"]


def test_unknown_encoding(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, "csv")
    refused(tmp_path, "unknown --encoding", "klingon", encoding="klingon")


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_empty_file(tmp_path, ext):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, ext)
    (tmp_path / f"test.{ext}").write_bytes(b"")
    refused(tmp_path, f"test.{ext}", "is empty")


def test_split_with_a_header_but_no_rows(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST, "csv")
    (tmp_path / "train.csv").write_text("text,label\n")
    refused(tmp_path, "train split", "has no rows")


def test_corrupt_parquet(tmp_path):
    write(tmp_path, GOOD_TRAIN, GOOD_TEST)
    (tmp_path / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    refused(tmp_path, "cannot read", "train.parquet", "as parquet")


@pytest.mark.parametrize("column", ["text", "label"])
def test_missing_column_lists_the_columns_that_exist(tmp_path, column):
    train = GOOD_TRAIN.rename(columns={column: "other"})
    write(tmp_path, train, GOOD_TEST)
    message = refused(tmp_path, f"column '{column}' not found", "train split", f"--{column}-column")
    listed = message.split("columns are:")[1]
    assert "other" in listed and ({"text", "label"} - {column}).pop() in listed


def test_custom_column_names(tmp_path):
    rename = {"text": "review", "label": "sentiment"}
    write(tmp_path, GOOD_TRAIN.rename(columns=rename), GOOD_TEST.rename(columns=rename))
    splits = load(tmp_path, text_column="review", label_column="sentiment")
    assert splits.train.texts == GOOD_TRAIN.text.tolist()


# --------------------------------------------------------------------------- invalid texts and labels


def bad_texts_train():
    texts = ["fine", "", "good", "   \t\n", None, "ok", 42, "great", "nice", "", "", "", "bad", 3.5]
    labels = [i % 2 for i in range(len(texts))]
    return frame(texts, labels)


def test_invalid_texts_are_refused_with_split_rows_and_count(tmp_path):
    write(tmp_path, bad_texts_train(), GOOD_TEST, "jsonl")
    message = refused(tmp_path, "train split", "8 invalid texts", "rows 1, 3, 4, 6, 9, ...", "--drop-invalid")
    assert "10" not in message  # only the first five rows are listed


def test_invalid_texts_in_the_test_split_name_that_split(tmp_path):
    write(tmp_path, GOOD_TRAIN, frame(["fine", " "], [1, 0]), "jsonl")
    refused(tmp_path, "test split", "1 invalid text ", "row 1 ")


def test_drop_invalid_drops_and_counts(tmp_path):
    train = bad_texts_train()
    write(tmp_path, train, GOOD_TEST, "jsonl")
    splits = load(tmp_path, drop_invalid=True)
    assert splits.train.texts == ["fine", "good", "ok", "great", "nice", "bad"]
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 0, 0]  # each label stays with its text
    assert splits.dropped == {"train": 8, "test": 0}


def test_empty_csv_cells_are_invalid_texts(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\nfine,1\n,0\n"  ",1\nokay,0\n')
    GOOD_TEST.to_csv(tmp_path / "test.csv", index=False)
    refused(tmp_path, "train split", "2 invalid texts", "rows 1, 2 ")


def test_split_with_nothing_valid_left(tmp_path):
    write(tmp_path, GOOD_TRAIN, frame(["", None], [0, 1]), "jsonl")
    refused(tmp_path, "test split", "no valid rows left", drop_invalid=True)


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_null_labels_are_refused(tmp_path, missing):
    train = frame(["a", "b", "c", "d"], [0, missing, 1, 0])
    write(tmp_path, train, GOOD_TEST, "parquet" if missing is None else "jsonl")
    refused(tmp_path, "train split", "1 missing label ", "row 1 ", "--drop-invalid")


def test_null_labels_in_csv(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,1\nb,\nc,0\nd,1\n")
    GOOD_TEST.to_csv(tmp_path / "test.csv", index=False)
    refused(tmp_path, "missing label", "row 1 ")
    assert load(tmp_path, drop_invalid=True).train.texts == ["a", "c", "d"]


def test_test_label_that_never_occurs_in_train(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], [0, 1, 2]), frame(["d", "e"], [1, 3]))
    refused(tmp_path, "test label '3'", "never occurs in the train split")


def test_string_test_label_that_never_occurs_in_train(tmp_path):
    write(tmp_path, frame(["a", "b"], ["neg", "pos"]), frame(["c", "d"], ["pos", "neutral"]))
    refused(tmp_path, "test label 'neutral'", "never occurs in the train split")


def test_single_class_train_split(tmp_path):
    write(tmp_path, frame(["a", "b", "c"], [1, 1, 1]), frame(["d"], [1]))
    refused(tmp_path, "only one label", "'pos'", "at least two")


def test_single_class_after_dropping_invalid_rows(tmp_path):
    write(tmp_path, frame(["a", "", "c"], ["x", "y", "x"]), frame(["d"], ["x"]), "jsonl")
    refused(tmp_path, "only one label", "'x'", drop_invalid=True)


# --------------------------------------------------------------------------- label names


def test_string_labels_are_numbered_in_sorted_order(tmp_path):
    write(tmp_path, frame(["a", "b", "c", "d"], ["pos", "neg", "neutral", "pos"]), frame(["e"], ["neutral"]))
    splits = load(tmp_path)
    assert splits.label_names == ["neg", "neutral", "pos"]
    assert splits.train.labels.tolist() == [2, 0, 1, 2]
    assert splits.test.labels.tolist() == [1]


def test_star_ratings_are_numbered_and_keep_their_values_as_names(tmp_path):
    write(tmp_path, frame(list("abcde"), [1, 2, 3, 4, 5]), frame(["f", "g"], [5, 1]))
    splits = load(tmp_path)
    assert splits.label_names == ["1", "2", "3", "4", "5"]
    assert splits.test.labels.tolist() == [4, 0]


def test_float_labels_that_are_whole_numbers(tmp_path):
    write(tmp_path, frame(["a", "b"], [0.0, 1.0]), frame(["c"], [1.0]), "jsonl")
    splits = load(tmp_path)
    assert splits.label_names == ["neg", "pos"] and splits.train.labels.dtype == np.int64


def test_label_names_flag(tmp_path):
    write(tmp_path, frame(list("abc"), [0, 1, 2]), frame(["d"], [2]))
    splits = load(tmp_path, label_names=["sad", "meh", "glad"])
    assert splits.label_names == ["sad", "meh", "glad"]
    assert splits.train.labels.tolist() == [0, 1, 2]


def test_label_names_too_few(tmp_path):
    write(tmp_path, frame(list("abc"), [0, 1, 2]), frame(["d"], [2]))
    refused(tmp_path, "label 2 has no name", "--label-names", label_names=["sad", "glad"])


def test_label_names_too_many(tmp_path):
    """A name no training label has would be an output of the head that never trains."""
    write(tmp_path, frame(list("abc"), [0, 1, 0]), frame(["d"], [1]))
    refused(tmp_path, "--label-names gives 3 names", "label 2 ('neutral') never occurs in the train split",
            label_names=["neg", "pos", "neutral"])


def test_label_names_with_a_gap_in_the_train_labels(tmp_path):
    write(tmp_path, frame(list("abc"), [0, 2, 0]), frame(["d"], [2]))
    refused(tmp_path, "label 1 ('meh') never occurs in the train split", label_names=["sad", "meh", "glad"])


@pytest.mark.parametrize("names", [["neg", ""], [" ", "pos"]])
def test_label_names_must_not_be_blank(names):
    with pytest.raises(HeadtuneError, match="--label-names must not be empty or blank"):
        DataConfig(dataset="x", label_names=names)


def test_label_names_for_string_labels(tmp_path):
    write(tmp_path, frame(["a", "b"], ["x", "y"]), frame(["c"], ["x"]))
    refused(tmp_path, "--label-names", "strings", label_names=["p", "q"])


def test_texts_and_labels_must_be_different_columns():
    """With string labels the head read its own answer and scored 1.0."""
    with pytest.raises(HeadtuneError, match="--text-column and --label-column are both 'label'"):
        DataConfig(dataset="x", text_column="label")


def test_label_names_must_be_distinct():
    with pytest.raises(HeadtuneError, match="--label-names must be distinct"):
        DataConfig(dataset="x", label_names=["a", "a"])


def test_encode_labels_ids_round_trip():
    train, test = pd.Series(["b", "a", "c", "a"]), pd.Series(["c", "b"])
    train_ids, test_ids, names = encode_labels(train, test, None, None)
    assert [names[i] for i in train_ids] == train.tolist()
    assert [names[i] for i in test_ids] == test.tolist()


# --------------------------------------------------------------------------- sampling


def test_sample_sizes_are_exact_and_stratified(sentiment_dir):
    splits = load(sentiment_dir, seed=3, train_size=101, test_size=37)
    assert len(splits.train.texts) == len(splits.train.labels) == 101
    assert len(splits.test.texts) == 37
    # the full splits are exactly half positive: the sample's share differs by at most one row's rounding
    assert abs(splits.train.labels.sum() - 101 / 2) <= 0.5
    assert abs(splits.test.labels.sum() - 37 / 2) <= 0.5


def test_sample_keeps_text_label_pairs(sentiment_dir):
    full = pd.read_parquet(sentiment_dir / "train.parquet")
    pairs = set(zip(full.text, full.label))
    splits = load(sentiment_dir, seed=5, train_size=50)
    assert splits.label_names == ["neg", "pos"]  # ids are the file's 0/1 labels
    assert all((t, int(y)) in pairs for t, y in zip(splits.train.texts, splits.train.labels))


def test_sample_is_reproducible_by_seed(sentiment_dir):
    a = load(sentiment_dir, seed=7, train_size=60, test_size=20)
    b = load(sentiment_dir, seed=7, train_size=60, test_size=20)
    c = load(sentiment_dir, seed=8, train_size=60, test_size=20)
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert np.array_equal(a.train.labels, b.train.labels)
    assert a.train.texts != c.train.texts


def test_sample_larger_than_the_split_names_its_size(sentiment_dir):
    refused(sentiment_dir, "--train-size 401", "train split", "400 rows", "--train-size 400 or less", train_size=401)
    refused(sentiment_dir, "--test-size 1,000", "test split", "200 rows", test_size=1000)


@pytest.mark.parametrize("size", [0, -3])
def test_zero_or_negative_sizes(size):
    for name in ("train_size", "test_size"):
        with pytest.raises(HeadtuneError, match=f"--{name.replace('_', '-')} must be an integer above 0"):
            DataConfig(dataset="x", **{name: size})


def test_small_run_on_a_small_dataset_uses_the_whole_split(sentiment_dir):
    splits = load(sentiment_dir, small_run=True)
    assert len(splits.train.texts) == 400 and len(splits.test.texts) == 200


def test_sampling_happens_after_dropping_invalid_rows(tmp_path):
    train = sentiment_frame(40, seed=3)
    train.loc[[0, 5, 11], "text"] = "  "
    write(tmp_path, train, sentiment_frame(10, seed=4), "parquet")
    splits = load(tmp_path, drop_invalid=True, train_size=37)
    assert len(splits.train.texts) == 37 and splits.dropped["train"] == 3
    refused(tmp_path, "--train-size 38", "37 rows", drop_invalid=True, train_size=38)


def test_jsonl_unicode_round_trip(tmp_path):
    texts = ["caf\u00e9 \U0001f600", "line\nbreak", "tab\there", "\u00a0nbsp lead", "emoji \u2764\ufe0f"]
    rows = [json.dumps({"text": t, "label": i % 2}, ensure_ascii=False) for i, t in enumerate(texts)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text("\n".join(rows[:2]) + "\n", encoding="utf-8")
    assert load(tmp_path).train.texts == texts


# --------------------------------------------------------------------------- fast reading: the same answers


def test_whitespace_is_exactly_what_python_strips():
    import sys

    from headtune.data import WHITESPACE

    assert set(WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


TRICKY = ["ok", "", " ", "\u3000\x85\x1c", "\u200b", "\ufeff", " x ", "\n\t", "\xa0a", "caf\u00e9", "\U0001f600",
          "a\ud800", "\udfff", None, 3, 2.5, float("nan"), b"bytes", ["list"]]


def test_invalid_texts_agree_with_text_problem_for_objects_and_arrow():
    import pyarrow as pa

    from headtune.data import invalid_texts, text_problem

    expected = [text_problem(t) is not None for t in TRICKY]
    assert invalid_texts(TRICKY).tolist() == expected
    assert invalid_texts(pd.Series(TRICKY, dtype=object)).tolist() == expected
    # Arrow holds valid UTF-8 only: no lone surrogates
    strings = [t for t in TRICKY if t is None or isinstance(t, str) and not any(0xD800 <= ord(c) < 0xE000 for c in t)]
    arrow = pa.chunked_array([pa.array(strings, type=pa.large_string())])
    assert invalid_texts(arrow).tolist() == [text_problem(t) is not None for t in strings]


def test_parquet_reads_only_the_text_and_label_columns(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    train = GOOD_TRAIN.assign(embedding=[np.ones(1000)] * 4, text_id=range(4))
    write(tmp_path, train, GOOD_TEST)
    asked = []
    real = pq.ParquetFile.read
    monkeypatch.setattr(pq.ParquetFile, "read", lambda self, columns=None, **kw: asked.append(columns) or
                        real(self, columns=columns, **kw))
    assert load(tmp_path).train.texts == GOOD_TRAIN.text.tolist()
    assert asked == [["text", "label"], ["text", "label"]]


@pytest.mark.skipif(not (SHARED_IMDB / "train.parquet").exists(), reason="no shared IMDb copy")
def test_real_imdb_small_run_is_the_same_sample_as_before():
    """The rows --small-run drew before validation rows were held out (features are cached by the texts)."""
    splits = load_splits(DataConfig(dataset=str(SHARED_IMDB), small_run=True))
    full = pd.read_parquet(SHARED_IMDB / "train.parquet")
    labels = full.label.to_numpy()
    rng = np.random.default_rng(42)  # the sample as sample_stratified drew it: per class, in class order
    chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), size=2000, replace=False)
                                     for c in (0, 1)]))
    assert sorted(splits.train.texts) == sorted(full.text[chosen])
    assert (len(splits.train.texts), len(splits.test.texts)) == (4000, 2000)
    assert np.bincount(splits.folds).tolist() == [800] * 5 and splits.label_names == ["neg", "pos"]
    assert splits.validation_source == "cross-validation" and splits.dropped == {"train": 0, "test": 0}
    held = load_splits(DataConfig(dataset=str(SHARED_IMDB), small_run=True, folds=1))  # --folds 1: 10 % held out
    assert sorted(held.train.texts + held.validation.texts) == sorted(full.text[chosen])
    assert (len(held.train.texts), len(held.validation.texts), held.validation.labels.sum()) == (3600, 400, 200)
