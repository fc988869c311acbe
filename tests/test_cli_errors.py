"""Every bad input through the real CLI: exit 2, ONE line on stderr naming the problem and the fix,
no traceback, and nothing written (or overwritten). A bug exits 1, also in one line.

Most cases call `headtune.cli.main([...])` in-process; a few run the installed `headtune` command
from a shell to prove the same end to end.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from headtune import cli
from headtune.errors import HeadtuneError

from conftest import sentiment_frame

HEADTUNE = Path(sys.executable).with_name("headtune")
MAX_LEN = "32"


# --------------------------------------------------------------------------- helpers


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str, exit_code: int = 2) -> str:
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = "headtune: error: " if exit_code == 2 else "headtune: internal error: "
    assert lines[0].startswith(prefix), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder (hidden ones included) and a digest of its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    """What lies beside the output folder: a crashed or refused run must leave no temp folder there."""
    return sorted(p.name for p in folder.parent.iterdir()) if folder.parent.exists() else []


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    sentiment_frame(24, seed=1).to_parquet(folder / "train.parquet")
    sentiment_frame(12, seed=2).to_parquet(folder / "test.parquet")
    return folder


@pytest.fixture
def train_args(tiny_models, data_dir, tmp_path):
    """A valid, fast `headtune train` command line; tests change one thing in it."""
    def make(**overrides) -> list[str]:
        settings = {"model": tiny_models["distilbert"], "dataset": data_dir, "output-dir": tmp_path / "out",
                    "max-length": MAX_LEN, "epochs": "1", "shard-size": "16"}
        settings.update(overrides)
        argv = ["train"]
        for key, value in settings.items():
            if value is not None:
                argv += [f"--{key}", str(value)]
        return argv
    return make


def refused_train(capsys, argv: list[str], *needles: str) -> str:
    out_dir = Path(argv[argv.index("--output-dir") + 1]) if "--output-dir" in argv else None
    before = siblings(out_dir) if out_dir else None
    code, out, err = run_cli(argv, capsys)
    line = assert_one_line_error(code, err, *needles)
    assert out == ""
    if out_dir is not None:
        assert not out_dir.exists()
        assert siblings(out_dir) == before
    cache = Path(os.environ["HEADTUNE_CACHE"])
    assert not cache.exists(), "refused before any backbone work, so nothing may be cached"
    return line


# --------------------------------------------------------------------------- the dataset


def test_dataset_path_that_does_not_exist(capsys, train_args, tmp_path):
    refused_train(capsys, train_args(dataset=tmp_path / "nowhere"), "nowhere", "does not exist", "--dataset")


def test_folder_without_train_and_test_files(capsys, train_args, tmp_path):
    (tmp_path / "empty").mkdir()
    refused_train(capsys, train_args(dataset=tmp_path / "empty"), "no train file", "train.parquet")


def test_unsupported_file_type(capsys, train_args, tmp_path):
    folder = tmp_path / "excel"
    folder.mkdir()
    (folder / "train.xlsx").write_bytes(b"PK\x03\x04")
    (folder / "test.xlsx").write_bytes(b"PK\x03\x04")
    refused_train(capsys, train_args(dataset=folder), "unsupported file type '.xlsx'", ".parquet, .csv or .jsonl")


def test_csv_that_is_not_utf8(capsys, train_args, tmp_path):
    folder = tmp_path / "latin"
    folder.mkdir()
    for name, frame in (("train", sentiment_frame(10, 1)), ("test", sentiment_frame(6, 2))):
        frame["text"] = frame["text"] + " caf\xe9"
        frame.to_csv(folder / f"{name}.csv", index=False, encoding="latin-1")
    refused_train(capsys, train_args(dataset=folder), "train.csv", "not valid utf-8", "--encoding latin-1")


def test_empty_file(capsys, train_args, data_dir):
    (data_dir / "test.parquet").unlink()
    (data_dir / "test.csv").write_bytes(b"")
    refused_train(capsys, train_args(dataset=data_dir), "test.csv", "is empty")


def test_empty_split(capsys, train_args, data_dir):
    sentiment_frame(24, 1).iloc[:0].to_parquet(data_dir / "test.parquet")
    refused_train(capsys, train_args(dataset=data_dir), "test split", "has no rows")


def test_missing_text_column_lists_the_columns(capsys, train_args, data_dir):
    line = refused_train(capsys, train_args(dataset=data_dir, **{"text-column": "review"}),
                         "column 'review' not found", "train split", "text, label", "--text-column")
    assert line.endswith("pass --text-column")


def test_missing_label_column_lists_the_columns(capsys, train_args, data_dir):
    refused_train(capsys, train_args(dataset=data_dir, **{"label-column": "stars"}),
                  "column 'stars' not found", "text, label", "--label-column")


def test_invalid_texts_name_split_rows_and_count(capsys, train_args, data_dir):
    test = sentiment_frame(12, 2).astype({"text": object})
    test.loc[[2, 5, 7], "text"] = ["", "  \n ", None]
    test.to_parquet(data_dir / "test.parquet")
    refused_train(capsys, train_args(dataset=data_dir), "test split", "3 invalid texts", "rows 2, 5, 7",
                  "--drop-invalid")


def test_null_labels(capsys, train_args, data_dir):
    train = sentiment_frame(24, 1).astype({"label": "float64"})
    train.loc[[4, 9], "label"] = float("nan")
    train.to_parquet(data_dir / "train.parquet")
    refused_train(capsys, train_args(dataset=data_dir), "train split", "2 missing labels", "rows 4, 9",
                  "--drop-invalid")


def test_test_label_never_in_train(capsys, train_args, data_dir):
    test = sentiment_frame(12, 2)
    test["label"] = ["pos", "neg", "meh"] * 4
    train = sentiment_frame(24, 1)
    train["label"] = ["pos", "neg"] * 12
    train.to_parquet(data_dir / "train.parquet")
    test.to_parquet(data_dir / "test.parquet")
    refused_train(capsys, train_args(dataset=data_dir), "test label 'meh'", "never occurs in the train split",
                  "add examples of it to the train split or remove it from the test split")


def test_single_class_train_split(capsys, train_args, data_dir):
    train = sentiment_frame(24, 1)
    train["label"] = 1
    train.to_parquet(data_dir / "train.parquet")
    refused_train(capsys, train_args(dataset=data_dir), "only one label", "at least two", "add examples of another")


# --------------------------------------------------------------------------- sizes and settings


def test_train_size_larger_than_the_split(capsys, train_args):
    refused_train(capsys, train_args(**{"train-size": "25"}), "--train-size 25", "train split", "24 rows")


def test_test_size_larger_than_the_split(capsys, train_args):
    refused_train(capsys, train_args(**{"test-size": "100"}), "--test-size 100", "test split", "12 rows")


@pytest.mark.parametrize("flag,value,needle", [
    ("train-size", "0", "--train-size must be an integer above 0"),
    ("test-size", "-5", "--test-size must be an integer above 0"),
    ("epochs", "0", "--epochs must be an integer above 0"),
    ("epochs", "100000000000000000000", "--epochs must be at most 10,000"),
    ("lr", "0", "--lr must be a number above 0"),
    ("lr", "-0.01", "--lr must be a number above 0"),
    ("lr", "nan", "--lr must be a number above 0"),
    ("lr", "1e30", "--lr must be at most 10 (got 1e+30)"),
    ("batch-size", "0", "--batch-size must be an integer above 0"),
    ("max-length", "0", "--max-length must be an integer above 0"),
    ("max-length", "2", "--max-length 2 leaves no room for text: this model's tokenizer adds 2 special tokens"),
    ("shard-size", "-1", "--shard-size must be an integer above 0"),
    ("pad-to-multiple-of", "0", "--pad-to-multiple-of must be an integer above 0"),
    ("max-tokens-per-batch", "0", "--max-tokens-per-batch must be an integer above 0"),
    ("seed", "-1", "--seed must be an integer from 0"),
    ("epochs", "two", "invalid int value: 'two'"),
    ("device", "tpu", "--device must be auto, cpu, cuda or cuda:N"),
    ("lr-schedule", "cosine", "invalid choice: 'cosine'"),
])
def test_bad_settings(capsys, train_args, flag, value, needle):
    refused_train(capsys, train_args(**{flag: value}), needle)


def test_unknown_flag(capsys, train_args):
    refused_train(capsys, train_args() + ["--colour", "red"],
                  "unrecognized arguments: --colour red (see headtune train --help)")  # the command's own help
    refused_train(capsys, ["-q"] + train_args(), "unrecognized arguments: -q (see headtune train --help; "
                                                 "flags go after the command)")


def test_max_length_above_the_model_limit_is_refused_before_any_work(capsys, train_args, tmp_path):
    # the dataset path does not even exist: the model is checked first, before the data is read
    line = refused_train(capsys, train_args(**{"max-length": "4096"}, dataset=tmp_path / "not-yet"),
                         "--max-length 4096", "above this model's limit of 128 tokens", "--max-length 128 or less")
    assert "dataset" not in line


# --------------------------------------------------------------------------- the model


def copy_model(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    return dst


def test_model_folder_without_weights(capsys, train_args, tiny_models, tmp_path):
    folder = copy_model(tiny_models["distilbert"], tmp_path / "noweights", drop=("*.safetensors",))
    refused_train(capsys, train_args(model=folder), "has no model weights", "model.safetensors")


def test_model_folder_without_tokenizer(capsys, train_args, tiny_models, tmp_path):
    folder = copy_model(tiny_models["distilbert"], tmp_path / "notok", drop=("tokenizer*", "vocab*", "special*"))
    refused_train(capsys, train_args(model=folder), "has no tokenizer files", "save_pretrained")


def test_model_folder_without_config(capsys, train_args, tiny_models, tmp_path):
    folder = copy_model(tiny_models["distilbert"], tmp_path / "noconfig", drop=("config.json",))
    refused_train(capsys, train_args(model=folder), "not a model folder", "config.json")


def damage(weights: Path, how: str) -> None:
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "cut": data[:len(data) // 2], "garbage": b"not safetensors at all"}[how])


@pytest.mark.parametrize("how", ["empty", "cut", "garbage"])
def test_model_folder_with_damaged_weights(how, capsys, train_args, tiny_models, tmp_path):
    folder = copy_model(tiny_models["distilbert"], tmp_path / "damaged")
    damage(folder / "model.safetensors", how)
    refused_train(capsys, train_args(model=folder), "model.safetensors is damaged", "save_pretrained")


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_config_of_a_far_bigger_model_is_refused_before_any_work(capsys, train_args, tiny_models, tmp_path):
    """DistilBERT's settings (dim, n_layers) mean nothing to BERT: transformers would build BERT's defaults,
    110M parameters filled at random (for a large architecture, memory until the process is killed)."""
    folder = copy_model(tiny_models["distilbert"], tmp_path / "edited")
    edit_config(folder, model_type="bert", architectures=["BertModel"])
    refused_train(capsys, train_args(model=folder), "config.json describes a bert model of 109,188,866 parameters",
                  "its weights hold 997,952", "does not belong to these weights")


def test_config_whose_weights_are_not_in_the_checkpoint_is_refused(capsys, train_args, tiny_models, tmp_path):
    """Same sizes, other names: every backbone weight would be new and random (the whole model became the
    "head" and trained)."""
    folder = copy_model(tiny_models["bert"], tmp_path / "edited")
    edit_config(folder, model_type="llama", architectures=["LlamaModel"])
    out = Path(train_args(model=folder)[train_args().index("--output-dir") + 1])
    code, _, err = run_cli(train_args(model=folder), capsys)
    assert_one_line_error(code, err.splitlines()[-1] + "\n", "weights hold only 0 of the",
                          "model type 'llama'", "does not belong to these weights")
    assert not out.exists()


@pytest.mark.parametrize("setting", ["model", "dataset", "output-dir", "cache-dir"])
def test_a_home_folder_of_no_user(capsys, train_args, setting):
    """Path.expanduser raised RuntimeError ('Could not determine home directory'): an internal error."""
    refused_train(capsys, train_args(**{setting: "~nobody-at-all/x"}),
                  f"--{setting} ~nobody-at-all/x: '~nobody-at-all' is the home folder of user 'nobody-at-all', and "
                  f"there is no such user")


def test_model_folder_that_does_not_exist(capsys, train_args, tmp_path):
    refused_train(capsys, train_args(model=tmp_path / "no-model"), "does not exist", "--model")


def test_pickle_only_weights_are_refused(capsys, train_args, tiny_models, tmp_path):
    from safetensors.torch import load_file

    folder = copy_model(tiny_models["distilbert"], tmp_path / "pickled", drop=("*.safetensors",))
    torch.save(load_file(tiny_models["distilbert"] / "model.safetensors"), folder / "pytorch_model.bin")
    refused_train(capsys, train_args(model=folder), "pytorch_model.bin", "pickle", "--allow-pickle")


def test_remote_code_needs_trust_remote_code(capsys, train_args, tiny_models, tmp_path):
    folder = copy_model(tiny_models["distilbert"], tmp_path / "custom", drop=("config.json",))
    ran = tmp_path / "REMOTE_CODE_RAN"
    code = f"open({str(ran)!r}, 'w').write('ran')\nfrom transformers import PretrainedConfig\n" \
           f"class TinyConfig(PretrainedConfig):\n    model_type = 'tinycustom'\n"
    (folder / "configuration_tiny.py").write_text(code)
    (folder / "modeling_tiny.py").write_text(code)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "tinycustom", "architectures": ["TinyForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig",
                     "AutoModelForSequenceClassification": "modeling_tiny.TinyForSequenceClassification"}}))
    refused_train(capsys, train_args(model=folder), "--trust-remote-code")
    assert not ran.exists(), "code shipped with the model ran without --trust-remote-code"


def test_hub_model_name_while_offline(capsys, train_args):
    refused_train(capsys, train_args(model="someone/not-cached-model"), "cannot reach the Hugging Face Hub",
                  "'someone/not-cached-model'", "--model PATH", "--dataset PATH")


def test_hub_dataset_name_while_offline(capsys, train_args):
    refused_train(capsys, train_args(dataset="someone/not-cached-dataset"), "cannot reach the Hugging Face Hub",
                  "'someone/not-cached-dataset'", "no local folder 'someone/not-cached-dataset'", "--model PATH",
                  "--dataset PATH")


@pytest.mark.parametrize("path", ["data/sub/train", "data\\train"])
def test_a_path_no_hub_name_can_be_is_a_missing_path(capsys, train_args, path):
    """Hub ids are `name` or `owner/name`: a deeper path or a backslash is a mistyped folder, not the Hub."""
    refused_train(capsys, train_args(dataset=path), f"dataset path {path} does not exist")


def test_default_hub_names_while_offline_stop_at_once(capsys, tmp_path, monkeypatch):
    from headtune import hub

    assert not hub.hub_reachable()  # conftest sets HF_HUB_OFFLINE=1
    monkeypatch.chdir(tmp_path)
    line = refused_train(capsys, ["train"], "cannot reach the Hugging Face Hub", "--model PATH", "--dataset PATH")
    assert "distilbert-base-uncased" in line or "imdb" in line
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder


# --------------------------------------------------------------------------- the output folder


def test_output_dir_that_is_a_file(capsys, train_args, tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("mine")
    code, _, err = run_cli(train_args(**{"output-dir": path}), capsys)
    assert_one_line_error(code, err, "out.txt", "is a file")
    assert path.read_text() == "mine"


@pytest.mark.parametrize("where, problem", [("cache.bin", "is a file, not a folder"),
                                            ("cache.bin/features", "cannot be created")])
def test_cache_dir_that_is_a_file_is_refused_before_any_work(where, problem, capsys, train_args, tmp_path):
    (tmp_path / "cache.bin").write_text("mine")
    line = refused_train(capsys, train_args(**{"cache-dir": tmp_path / where}), "--cache-dir", problem, "--no-cache")
    assert "cache.bin" in line and (tmp_path / "cache.bin").read_text() == "mine"


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory, tokenizer):
    """One real training run with invalid rows (--drop-invalid) and over-long texts (--max-length 16)."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    data.mkdir()
    train = sentiment_frame(30, seed=1).astype({"text": object})
    long_text = " ".join(["great film and a very good plot"] * 6)
    train.loc[[3, 8], "text"] = [long_text, long_text + " indeed"]
    train.loc[[5, 11, 12], "text"] = ["", "   ", None]
    train.to_parquet(data / "train.parquet")
    test = sentiment_frame(12, seed=2)
    test.loc[0, "text"] = long_text
    test.to_parquet(data / "test.parquet")
    out = root / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["train", "--model", str(tiny_models["distilbert"]), "--dataset", str(data),
                         "--output-dir", str(out), "--max-length", "16", "--epochs", "2", "--drop-invalid",
                         "--cache-dir", str(root / "cache"), "--val-fraction", "0", "--lr", "0.03"])
    assert code == 0, err.getvalue()
    lengths = [len(tokenizer(t)["input_ids"]) for t in train.text if isinstance(t, str) and t.strip()]
    return {"out": out, "stderr": err.getvalue(), "cut_train": sum(n > 16 for n in lengths),
            "cut_test": sum(len(tokenizer(t)["input_ids"]) > 16 for t in test.text)}


def test_drop_invalid_and_truncation_are_reported(trained):
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    assert metrics["data"]["dropped_invalid"] == {"train": 3, "test": 0}
    assert metrics["data"]["train"] == 27
    assert trained["cut_train"] >= 2 and trained["cut_test"] >= 1
    assert metrics["data"]["truncated"] == {"train": trained["cut_train"], "test": trained["cut_test"]}
    log = trained["stderr"]
    assert "dropped 3 invalid rows from the train split" in log
    assert (f"truncated to --max-length 16, keeping each text's start (--truncation-side right): "
            f"{trained['cut_train']} of 27 train texts, "
            f"{trained['cut_test']} of 12 test texts") in log
    assert "Traceback" not in log


def test_nothing_written_is_a_pickle(trained):
    files = [p for folder in (trained["out"], trained["out"].parent / "cache") for p in folder.rglob("*")
             if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and any(p.parent.name != "out" for p in files)
    for path in files:
        assert path.suffix in (".json", ".safetensors", ".png", ".md"), path
        head = path.read_bytes()[:4]
        assert not head.startswith(b"\x80") and head != b"PK\x03\x04", path  # pickle / torch.save zip


def test_output_dir_with_a_trained_model_is_refused_and_untouched(capsys, trained, train_args):
    out = trained["out"]
    before, beside = snapshot(out), siblings(out)
    code, _, err = run_cli(train_args(**{"output-dir": out}), capsys)
    assert_one_line_error(code, err, str(out), "already holds a trained model", "--overwrite", "--output-dir")
    assert snapshot(out) == before and siblings(out) == beside
    assert not Path(os.environ["HEADTUNE_CACHE"]).exists()


def test_overwrite_replaces_the_model_atomically(capsys, trained, train_args, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(trained["out"], out)
    (out / "notes.txt").write_text("the user's own file")
    code, _, err = run_cli(train_args(**{"output-dir": out}) + ["--overwrite"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train"]["epochs"] == 1  # the new run's, not the old one's 2
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["images", "metrics.json", "model", "notes.txt"]
    assert siblings(out) == ["again", "data", "feature-cache"]  # no staging folder left beside it


# --------------------------------------------------------------------------- predict


def test_predict_works_on_the_trained_model(capsys, trained):
    code, out, err = run_cli(["predict", "--model", trained["out"] / "model", "a great film", "dull mess"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["text"] for r in rows] == ["a great film", "dull mess"]
    for row in rows:
        assert row["label"] in ("neg", "pos")
        assert abs(row["neg_prob"] + row["pos_prob"] - 1) < 1e-5


def test_predict_without_texts(capsys, trained):
    code, out, err = run_cli(["predict", "--model", trained["out"] / "model"], capsys)
    assert_one_line_error(code, err, "no texts to predict", "--file", "stdin")
    assert out == ""


def test_predict_empty_line_in_file(capsys, trained, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("a great film\n\ndull mess\n")
    code, out, err = run_cli(["predict", "--model", trained["out"] / "model", "--file", lines], capsys)
    assert_one_line_error(code, err, "line 2 is empty")
    assert out == ""


def test_predict_whitespace_text_argument(capsys, trained):
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "fine", " \t "], capsys)
    assert_one_line_error(code, err, "text 2 is empty or whitespace only")


def test_predict_text_that_is_not_valid_unicode(capsys, trained):
    # what Python makes of command-line bytes that are not UTF-8: a lone surrogate
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "ok", b"caf\xe9".decode(
        "utf-8", "surrogateescape")], capsys)
    assert_one_line_error(code, err, "text 2 is not valid Unicode")


def test_predict_file_that_is_not_utf8(capsys, trained, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "--file", path], capsys)
    assert_one_line_error(code, err, "latin.txt", "not valid UTF-8")


def test_predict_missing_file(capsys, trained, tmp_path):
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "--file", tmp_path / "nope.txt"], capsys)
    assert_one_line_error(code, err, "--file", "nope.txt", "does not exist")


def test_predict_texts_and_file_together(capsys, trained, tmp_path):
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "--file", tmp_path / "x", "hi"], capsys)
    assert_one_line_error(code, err, "not both")


def test_predict_missing_model_folder(capsys, tmp_path):
    code, _, err = run_cli(["predict", "--model", tmp_path / "gone", "hello"], capsys)
    assert_one_line_error(code, err, "gone", "does not exist", "--model")


def test_predict_output_dir_instead_of_model_folder(capsys, trained):
    code, _, err = run_cli(["predict", "--model", trained["out"], "hello"], capsys)
    assert_one_line_error(code, err, "has no config.json", f"did you mean {trained['out'] / 'model'}")


def test_predict_folder_that_is_not_a_model(capsys, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hi")
    code, _, err = run_cli(["predict", "--model", tmp_path / "stuff", "hello"], capsys)
    assert_one_line_error(code, err, "not a model folder", "config.json")


def test_predict_backbone_without_a_classification_head(capsys, tiny_models):
    code, _, err = run_cli(["predict", "--model", tiny_models["distilbert"], "hello"], capsys)
    assert_one_line_error(code, err, "not a text-classification checkpoint", "DistilBertModel", "headtune train")


def test_predict_pickle_only_checkpoint(capsys, trained, tmp_path):
    from safetensors.torch import load_file

    folder = copy_model(trained["out"] / "model", tmp_path / "pickled", drop=("*.safetensors",))
    torch.save(load_file(trained["out"] / "model" / "model.safetensors"), folder / "pytorch_model.bin")
    code, _, err = run_cli(["predict", "--model", folder, "hello"], capsys)
    assert_one_line_error(code, err, "pickle", "--allow-pickle")


@pytest.mark.parametrize("how", ["empty", "cut", "garbage"])
def test_predict_damaged_weights(how, capsys, trained, tmp_path):
    folder = copy_model(trained["out"] / "model", tmp_path / "damaged")
    damage(folder / "model.safetensors", how)
    code, _, err = run_cli(["predict", "--model", folder, "hello"], capsys)
    assert_one_line_error(code, err, "model.safetensors is damaged", "save_pretrained")


SMALL_LLAMA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
               "intermediate_size": 64}


@pytest.mark.parametrize("config, needles", [
    ({"model_type": "llama", "architectures": ["LlamaForSequenceClassification"], **SMALL_LLAMA},
     ("weights lack", "model type 'llama'", "model.embed_tokens.weight")),
    ({"model_type": "bert", "architectures": ["BertForSequenceClassification"]},
     ("config.json describes a bert model of 109,483,778 parameters", "does not belong"))],
    ids=["same sizes, other weights", "a far bigger model"])
def test_predict_config_that_does_not_belong_to_the_weights(config, needles, capsys, trained, tmp_path):
    """The trained DistilBERT's config.json edited to another model type: a llama of its sizes loads none of
    its weights (its predictions came from random weights); BERT does not know DistilBERT's size settings
    (dim, n_layers) and takes its defaults."""
    folder = copy_model(trained["out"] / "model", tmp_path / "edited")
    labels = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if "label" in k}
    (folder / "config.json").write_text(json.dumps({**labels, **config}))
    code, out, err = run_cli(["predict", "--model", folder, "hello"], capsys)
    assert_one_line_error(code, err, *needles)
    assert out == ""


@pytest.mark.parametrize("id2label, needles", [
    ({"0": "neg", "1": "pos", "2": "meh"}, ("cannot load the model", "do not fit its config.json", "id2label")),
    ({"0": "neg", "5": "pos"}, ("id2label must name the labels 0 to 1", "0, 5", "config.json"))],
    ids=["more labels than the classifier has", "ids with a gap"])
def test_predict_config_whose_labels_do_not_fit(id2label, needles, capsys, trained, tmp_path):
    folder = copy_model(trained["out"] / "model", tmp_path / "edited")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"], config["label2id"] = id2label, {name: int(i) for i, name in id2label.items()}
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(["predict", "--model", folder, "hello"], capsys)
    assert_one_line_error(code, err, *needles)


class _FullDisk(io.StringIO):
    def write(self, text):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("stdout, needle", [(None, "stdout is closed"), (_FullDisk(), "No space left on device")],
                         ids=["closed", "full"])
def test_predict_with_nowhere_to_print(stdout, needle, capsys, trained, monkeypatch):
    """`>&-` and `> /dev/full`: internal errors (AttributeError, OSError) before."""
    monkeypatch.setattr("sys.stdout", stdout)
    code = cli.main(["predict", "--model", str(trained["out"] / "model"), "hello"])
    assert_one_line_error(code, capsys.readouterr().err, needle)


def test_predict_max_length_that_leaves_no_room_for_text(capsys, trained):
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "--max-length", "1", "hi"], capsys)
    assert_one_line_error(code, err, "--max-length 1 leaves no room for text", "pass --max-length 3 or more")


def test_predict_max_length_above_the_limit(capsys, trained):
    code, _, err = run_cli(["predict", "--model", trained["out"] / "model", "--max-length", "999", "hi"], capsys)
    assert_one_line_error(code, err, "--max-length 999", "limit of 128")


# --------------------------------------------------------------------------- bugs and --debug


def test_internal_error_is_one_line_with_exit_1(capsys, train_args, monkeypatch):
    import headtune.workflow

    def broken(cfg, **kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(headtune.workflow, "run", broken)
    code, _, err = run_cli(train_args(), capsys)
    assert_one_line_error(code, err, "RuntimeError: something broke", "--debug", exit_code=1)


def test_debug_shows_the_exception(train_args, tmp_path):
    with pytest.raises(HeadtuneError, match="does not exist"):
        cli.main(train_args(dataset=tmp_path / "nowhere") + ["--debug"])


# --------------------------------------------------------------------------- the real command, from a shell


def test_real_command_from_a_shell(tmp_path, tiny_models, data_dir):
    """Bad input through the installed `headtune` script, three at once (each start imports torch)."""
    model, out = tiny_models["distilbert"], tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HEADTUNE_CACHE": str(tmp_path / "cache")}
    commands = {
        "missing dataset": f"'{HEADTUNE}' train --model '{model}' --dataset '{tmp_path}/nowhere' "
                           f"--output-dir '{out}' --max-length {MAX_LEN}",
        "zero epochs": f"'{HEADTUNE}' train --model '{model}' --dataset '{data_dir}' --output-dir '{out}' --epochs 0",
        "empty line on stdin": f"printf 'a great film\\n\\ndull\\n' | '{HEADTUNE}' predict --model '{model}' -",
    }
    procs = {name: subprocess.Popen(cmd, shell=True, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, cmd in commands.items()}
    results = {name: (p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for name, p in procs.items()}
    needles = {"missing dataset": ("nowhere", "does not exist", "--dataset"),
               "zero epochs": ("--epochs must be an integer above 0",),
               "empty line on stdin": ("line 2 is empty",)}
    for name, (code, stdout, stderr) in results.items():
        assert_one_line_error(code, stderr, *needles[name])
        assert stdout == ""
    assert not out.exists() and not (tmp_path / "cache").exists()
