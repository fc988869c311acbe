"""`headtune predict` and `headtune.predict`: row shapes, --top-k, multi-label, truncation, input files,
and the API's errors, on tiny saved classifiers whose own probabilities are the expected ones."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import headtune
from headtune import cli
from headtune.errors import HeadtuneError

from saved_models import expected_probs, save_ordinary, save_pooled

TEXTS = ["a great film with a moving story", "dull mess"]
LONG = " ".join(["the movie was quite boring and the plot a mess"] * 3)  # 30 words: over 8 tokens, under 128
MULTI = "multi_label_classification"
GENRES = ["action", "comedy", "drama", "horror"]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def predicted(argv, capsys) -> tuple[list[dict], str]:
    code, out, err = run_cli(["predict", *argv], capsys)
    assert code == 0, err
    return json.loads(out), err


def one_line_error(argv, capsys) -> str:
    code, out, err = run_cli(["predict", *argv], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("headtune: error: ")
    return err.strip().removeprefix("headtune: error: ")


def descending(row: dict) -> list[float]:
    probs = [v for k, v in row.items() if k.endswith("_prob")]
    assert probs == sorted(probs, reverse=True), row
    return probs


@pytest.fixture(scope="module")
def binary(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("binary") / "model"
    return folder, save_ordinary(folder, tokenizer, ["neg", "pos"])


@pytest.fixture(scope="module")
def three(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("three") / "model"
    return folder, save_ordinary(folder, tokenizer, ["bad", "good", "meh"], seed=3)


@pytest.fixture(scope="module")
def many(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("many") / "model"
    return folder, save_pooled(folder, tokenizer, [f"intent_{i:02d}" for i in range(77)], seed=7)


@pytest.fixture(scope="module")
def multi(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("multi") / "model"
    return folder, save_ordinary(folder, tokenizer, GENRES, problem_type=MULTI, seed=5)


# --------------------------------------------------------------------------- row shapes


def test_two_labels_keep_todays_rows(binary, tokenizer, capsys):
    folder, model = binary
    rows, err = predicted(["--model", folder, *TEXTS], capsys)
    assert err == ""
    assert [list(r) for r in rows] == [["text", "neg_prob", "pos_prob", "label"]] * 2
    for row, text, probs in zip(rows, TEXTS, expected_probs(model, tokenizer, TEXTS)):
        assert row["text"] == text
        assert [row["neg_prob"], row["pos_prob"]] == pytest.approx(probs, abs=1e-5)
        assert row["label"] == ["neg", "pos"][int(np.argmax(probs))]


def test_two_labels_with_top_k_put_the_label_first(binary, capsys):
    folder, _ = binary
    plain, _ = predicted(["--model", folder, *TEXTS], capsys)
    top1, _ = predicted(["--model", folder, "--top-k", "1", *TEXTS], capsys)
    top2, _ = predicted(["--model", folder, "--top-k", "2", *TEXTS], capsys)
    for p, one, two in zip(plain, top1, top2):
        assert list(one) == ["text", "label", f"{p['label']}_prob"]
        assert one["label"] == p["label"] and one[f"{p['label']}_prob"] == p[f"{p['label']}_prob"]
        other = "neg" if p["label"] == "pos" else "pos"
        assert list(two) == ["text", "label", f"{p['label']}_prob", f"{other}_prob"]
        descending(two)


def test_three_labels_most_probable_first(three, tokenizer, capsys):
    folder, model = three
    rows, _ = predicted(["--model", folder, *TEXTS], capsys)
    names = ["bad", "good", "meh"]
    for row, probs in zip(rows, expected_probs(model, tokenizer, TEXTS)):
        order = np.argsort(probs)[::-1]
        assert list(row) == ["text", "label", *[f"{names[i]}_prob" for i in order]]
        assert row["label"] == names[order[0]]
        assert descending(row) == pytest.approx(sorted(probs, reverse=True), abs=1e-5)


def test_top_k_above_the_number_of_labels_lists_them_all(three, capsys):
    folder, _ = three
    rows, _ = predicted(["--model", folder, "--top-k", "10", *TEXTS], capsys)
    everything, _ = predicted(["--model", folder, *TEXTS], capsys)
    assert rows == everything


def test_77_labels_with_top_k_3_stay_short(many, tokenizer, capsys):
    folder, model = many
    rows, _ = predicted(["--model", folder, "--top-k", "3", *TEXTS], capsys)
    everything = headtune.predict(TEXTS, model=folder, device="cpu")
    assert [len(r) for r in everything] == [2 + 77] * 2
    for row, full, probs in zip(rows, everything, expected_probs(model, tokenizer, TEXTS)):
        assert len(row) == 5  # text, label and 3 probabilities
        top3 = np.argsort(probs)[::-1][:3]
        assert list(row) == ["text", "label", *[f"intent_{i:02d}_prob" for i in top3]]
        assert row["label"] == f"intent_{top3[0]:02d}" == full["label"]
        assert descending(row) == pytest.approx([probs[i] for i in top3], abs=1e-5)
        assert list(full)[:5] == list(row)


# --------------------------------------------------------------------------- multi-label


def test_multi_label_rows(multi, tokenizer, capsys):
    folder, model = multi
    rows, _ = predicted(["--model", folder, *TEXTS], capsys)
    for row, probs in zip(rows, expected_probs(model, tokenizer, TEXTS, multi_label=True)):
        order = np.argsort(probs)[::-1]
        assert list(row) == ["text", "labels", *[f"{GENRES[i]}_prob" for i in order]]
        assert row["labels"] == [GENRES[i] for i in order if probs[i] >= 0.5]  # the default threshold
        assert descending(row) == pytest.approx([probs[i] for i in order], abs=1e-5)
        assert not math.isclose(sum(probs), 1, abs_tol=1e-3)  # sigmoids, not a softmax


def test_multi_label_threshold_from_the_flag_then_headtune_json(multi, tokenizer, tmp_path, capsys):
    import shutil

    folder, model = multi
    probs = expected_probs(model, tokenizer, TEXTS[:1], multi_label=True)[0]
    by_prob = [GENRES[i] for i in np.argsort(probs)[::-1]]
    threshold = float(np.median(probs))  # two labels above it, two below
    above = by_prob[:2]
    rows, _ = predicted(["--model", folder, "--threshold", threshold, TEXTS[0]], capsys)
    assert rows[0]["labels"] == above
    saved = tmp_path / "model"
    shutil.copytree(folder, saved)
    (saved / "headtune.json").write_text(json.dumps({"threshold": threshold, "problem_type": MULTI}))
    assert headtune.predict(TEXTS[:1], model=saved, device="cpu")[0]["labels"] == above
    assert headtune.predict(TEXTS[:1], model=saved, device="cpu", threshold=0.0)[0]["labels"] == by_prob  # flag wins


def test_multi_label_top_k_limits_the_probabilities_not_the_labels(multi, capsys):
    folder, _ = multi
    rows, _ = predicted(["--model", folder, "--threshold", "0", "--top-k", "1", *TEXTS], capsys)
    for row in rows:
        assert len(row["labels"]) == 4
        assert list(row) == ["text", "labels", f"{row['labels'][0]}_prob"]


def test_multi_label_from_headtune_json_when_the_config_does_not_say(tmp_path, tokenizer):
    folder = tmp_path / "model"
    model = save_ordinary(folder, tokenizer, ["x", "y"], settings={"problem_type": MULTI})
    config = json.loads((folder / "config.json").read_text())
    config.pop("problem_type", None)
    (folder / "config.json").write_text(json.dumps(config))
    row = headtune.predict(TEXTS[:1], model=folder, device="cpu")[0]
    probs = expected_probs(model, tokenizer, TEXTS[:1], multi_label=True)[0]
    assert "labels" in row and sorted([row["x_prob"], row["y_prob"]]) == pytest.approx(sorted(probs), abs=1e-5)


def test_threshold_on_a_single_label_model_is_refused(binary, capsys):
    folder, _ = binary
    message = one_line_error(["--model", folder, "--threshold", "0.3", "hi"], capsys)
    assert "--threshold applies to multi-label models only" in message and "drop --threshold" in message


def test_weights_that_are_not_finite_are_one_line_not_nan_in_the_json(binary, tmp_path, capsys):
    """Bare NaN is not JSON, and the row's label was the first label's."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(binary[0], folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.bias"][1] = float("inf")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    message = one_line_error(["--model", folder, "good", "bad"], capsys)
    assert "gives no finite probabilities for 2 of 2 texts" in message
    assert "its weights hold NaN or infinite values (classifier.bias)" in message


def test_a_classifier_stored_in_bf16_predicts_as_its_fp32_copy(binary, tmp_path, capsys):
    """Loaded in fp32, as training loads its backbone: a bf16 folder computed in bf16 and scored otherwise."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(binary[0]).to(torch.bfloat16)
    for name in ("bf16", "fp32"):
        model.save_pretrained(tmp_path / name)
        AutoTokenizer.from_pretrained(binary[0]).save_pretrained(tmp_path / name)
        model.float()
    texts = ["good", LONG, "a dull and boring film"]
    rows = {name: predicted(["--model", tmp_path / name, *texts], capsys)[0] for name in ("bf16", "fp32")}
    assert rows["bf16"] == rows["fp32"]


@pytest.mark.parametrize("problem_type", [None, "regression"])
def test_a_regression_checkpoint_is_refused(tmp_path, tokenizer, capsys, problem_type):
    """One output became a one-label classifier: every text 'LABEL_0' with probability 1.0."""
    folder = tmp_path / "model"
    save_ordinary(folder, tokenizer, ["score"], problem_type=problem_type)
    message = one_line_error(["--model", folder, "good"], capsys)
    assert message == f"{folder} is a regression checkpoint (1 output, no classes), not a classifier; headtune " \
                      f"predicts and evaluates classifiers of two or more labels"


# --------------------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def trained_at_8(tmp_path_factory, tokenizer):
    """A model whose headtune.json says it was trained with max_length 8."""
    folder = tmp_path_factory.mktemp("len8") / "model"
    return folder, save_ordinary(folder, tokenizer, ["neg", "pos"], settings={"max_length": 8}, seed=2)


def test_truncated_rows_are_marked_and_counted_in_one_warning(trained_at_8, tokenizer, capsys):
    folder, model = trained_at_8
    texts = [LONG, "dull mess"]
    rows, err = predicted(["--model", folder, *texts], capsys)
    assert err == 'headtune: 1 of 2 texts were longer than 8 tokens and were truncated to them, keeping their start ' \
                  'as in training (marked "truncated": true)\n'
    assert list(rows[0]) == ["text", "neg_prob", "pos_prob", "label", "truncated"] and rows[0]["truncated"] is True
    assert list(rows[1]) == ["text", "neg_prob", "pos_prob", "label"]
    # classified from its first 8 tokens ([CLS] + 6 words + [SEP])
    first = expected_probs(model, tokenizer, [" ".join(LONG.split()[:6])])[0]
    assert [rows[0]["neg_prob"], rows[0]["pos_prob"]] == pytest.approx(first, abs=1e-5)
    assert headtune.predict(texts, model=folder, device="cpu") == rows  # the API returns the same rows


def test_truncated_is_the_last_key_with_top_k_and_multi_label(multi, capsys):
    folder, _ = multi
    rows, err = predicted(["--model", folder, "--max-length", "8", "--top-k", "2", LONG], capsys)
    assert list(rows[0])[-1] == "truncated" and len(rows[0]) == 5
    assert "1 of 1 texts were longer than 8 tokens" in err


def test_the_api_warns_through_logging(trained_at_8, caplog):
    folder, _ = trained_at_8
    headtune.predict([LONG, LONG, "short"], model=folder, device="cpu")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warnings] == [
        '2 of 3 texts were longer than 8 tokens and were truncated to them, keeping their start as in training '
        '(marked "truncated": true)']


def test_default_max_length_is_headtune_json_else_the_models_limit(trained_at_8, tmp_path, capsys):
    import shutil

    folder, _ = trained_at_8
    explicit, _ = predicted(["--model", folder, "--max-length", "8", LONG], capsys)
    default, _ = predicted(["--model", folder, LONG], capsys)
    assert default == explicit
    longer, err = predicted(["--model", folder, "--max-length", "64", LONG], capsys)
    assert "truncated" not in longer[0] and err == "" and longer[0]["neg_prob"] != default[0]["neg_prob"]
    elsewhere = tmp_path / "model"  # the same checkpoint from elsewhere: no headtune.json
    shutil.copytree(folder, elsewhere)
    (elsewhere / "headtune.json").unlink()
    no_settings, err = predicted(["--model", elsewhere, LONG], capsys)
    assert no_settings == longer and err == ""  # the model's limit (128): nothing cut


# --------------------------------------------------------------------------- input files


def test_blank_lines_at_the_end_of_a_file_are_ignored(binary, tmp_path, capsys):
    folder, _ = binary
    path = tmp_path / "texts.txt"
    path.write_text("a great film\ndull mess\n\n   \n\t\n\n")
    rows, _ = predicted(["--model", folder, "--file", path], capsys)
    assert [r["text"] for r in rows] == ["a great film", "dull mess"]


def test_blank_lines_at_the_end_of_stdin_are_ignored(binary, capsys, monkeypatch):
    folder, _ = binary
    monkeypatch.setattr("sys.stdin", io.StringIO("a great film\r\ndull mess\r\n\r\n"))
    rows, _ = predicted(["--model", folder, "-"], capsys)
    assert [r["text"] for r in rows] == ["a great film", "dull mess"]


def test_a_line_is_one_text_whatever_it_holds(binary, tmp_path, capsys):
    """Only a newline ends a text: a form feed or U+2028 inside scraped text does not split it (str.splitlines
    would), and a byte-order mark at the start (Windows Notepad's UTF-8) is not part of the first text."""
    folder, _ = binary
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufeffa great film\r\ndull\x0cmess\u2028really\x85\n".encode("utf-8"))
    rows, _ = predicted(["--model", folder, "--file", path], capsys)
    assert [r["text"] for r in rows] == ["a great film", "dull\x0cmess\u2028really\x85"]


def test_a_blank_line_between_texts_is_still_refused(binary, tmp_path, capsys):
    folder, _ = binary
    path = tmp_path / "texts.txt"
    path.write_text("a great film\n  \ndull mess\n\n")
    assert one_line_error(["--model", folder, "--file", path], capsys) == \
        "line 2 is empty or whitespace only; every line must be non-blank, valid Unicode text"


def test_a_file_of_blank_lines_has_no_texts(binary, tmp_path, capsys):
    folder, _ = binary
    path = tmp_path / "texts.txt"
    path.write_text("\n \n\n")
    assert one_line_error(["--model", folder, "--file", path], capsys).startswith("no texts to predict")


# --------------------------------------------------------------------------- the API


def test_api_takes_a_path_and_matches_the_cli(binary, capsys):
    folder, _ = binary
    rows, _ = predicted(["--model", folder, *TEXTS], capsys)
    assert isinstance(folder, Path)
    assert headtune.predict(TEXTS, model=folder, device="cpu") == rows
    single = headtune.predict(TEXTS[0], model=folder, device="cpu")  # one string: one text
    assert len(single) == 1 and single[0].keys() == rows[0].keys()
    # alone, the text is batched without padding: the same probabilities up to float rounding
    assert single[0] == pytest.approx(rows[0], abs=1e-6)


@pytest.mark.parametrize("make", [tuple, iter, lambda texts: (t for t in texts), np.array,
                                  lambda texts: pd.Series(texts, index=[7, 3])],
                         ids=["tuple", "iterator", "generator", "numpy", "series"])
def test_api_reads_any_iterable_of_texts_once_as_plain_str(binary, make):
    folder, _ = binary
    rows = headtune.predict(make(TEXTS), model=folder, device="cpu")
    assert rows == headtune.predict(TEXTS, model=folder, device="cpu")
    assert [type(r["text"]) for r in rows] == [str, str]  # not numpy's str_, a subclass that prints as np.str_(...)


def test_api_file_reads_as_the_cli_file_does(binary, tmp_path, capsys, monkeypatch):
    folder, _ = binary
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufeffa great film\r\ndull mess\n\n".encode("utf-8"))
    rows, _ = predicted(["--model", folder, "--file", path], capsys)
    assert [r["text"] for r in rows] == ["a great film", "dull mess"]
    assert headtune.predict(file=path, model=folder, device="cpu") == rows  # os.PathLike
    assert headtune.predict(file=str(path), model=folder, device="cpu") == rows
    monkeypatch.setattr("sys.stdin", io.StringIO("a great film\ndull mess\n"))
    assert headtune.predict(file="-", model=folder, device="cpu") == rows


@pytest.mark.parametrize("texts, file, message", [
    (["x"], "texts.txt", "give texts or file=PATH, not both"),
    ([], "texts.txt", "give texts or file=PATH, not both"),
    (None, None, "no texts to predict; pass texts (a list of strings) or file=PATH (one text per line)"),
    (None, "gone.txt", "--file {tmp}/gone.txt does not exist"),
    (None, "blank.txt", "line 2 is empty or whitespace only; every line must be non-blank, valid Unicode text"),
])
def test_api_texts_and_file_errors_are_one_line(binary, tmp_path, texts, file, message):
    folder, _ = binary
    (tmp_path / "texts.txt").write_text("a great film\n")
    (tmp_path / "blank.txt").write_text("a great film\n \ndull mess\n")
    with pytest.raises(HeadtuneError) as info:
        headtune.predict(texts, model=folder, device="cpu", **({} if file is None else {"file": tmp_path / file}))
    assert str(info.value) == message.format(tmp=tmp_path)


def test_api_error_for_a_missing_folder_is_the_cli_line(tmp_path, capsys):
    cli_line = one_line_error(["--model", tmp_path / "gone", "hello"], capsys)
    with pytest.raises(headtune.HeadtuneError) as info:  # importable from the package, as the README says
        headtune.predict(["hello"], model=tmp_path / "gone")
    assert str(info.value) == cli_line and "does not exist" in cli_line
    assert headtune.HeadtuneError is HeadtuneError


@pytest.mark.parametrize("texts, settings, argv", [
    ([], {}, []),
    (["hello"], {"top_k": 0}, ["--top-k", "0", "hello"]),
    (["hello"], {"max_length": 999}, ["--max-length", "999", "hello"]),
    (["fine", " \t "], {}, ["fine", " \t "]),
])
def test_api_errors_are_the_lines_the_cli_prints(binary, capsys, texts, settings, argv):
    folder, _ = binary
    cli_line = one_line_error(["--model", folder, *argv], capsys)
    with pytest.raises(HeadtuneError) as info:
        headtune.predict(texts, model=folder, device="cpu", **settings)
    assert str(info.value) == cli_line


@pytest.mark.parametrize("texts, settings, needle", [
    (["ok", 3], {}, "text 2 is not a string (int)"),
    (b"bytes", {}, "decode the bytes first"),
    (42, {}, "texts must be a list of strings (got int)"),
    (["ok"], {"topk": 3}, "unknown setting --topk"),
    (["ok"], {"threshold": 1.5}, "--threshold must be a number from 0 to below 1"),
    (["ok"], {"model": 7}, "--model must be a path or name"),
    (["ok", None], {}, "text 2 is not a string (NoneType)"),
    (["ok", b"x"], {}, "text 2 is not a string (bytes)"),
    ({"a great film": 1}, {}, "not a dict; pass list(texts.values()) or list(texts) to say which"),
    ({"a great film"}, {}, "not a set, which has no order; pass a list, e.g. sorted(texts)"),
    (np.array([TEXTS, TEXTS]), {}, "not a 2-D ndarray; pass one column of texts"),
    (pd.DataFrame({"text": TEXTS}), {}, "not a 2-D DataFrame; pass one column of texts"),
])
def test_api_only_errors_are_one_line(binary, texts, settings, needle):
    folder, _ = binary
    with pytest.raises(HeadtuneError) as info:
        headtune.predict(texts, **{"model": folder, **settings})
    assert needle in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- transformers' output


@pytest.fixture
def transformers_output(monkeypatch):
    """Sets transformers' verbosity and progress bars and huggingface_hub's bars; puts them back after the test."""
    import importlib

    from huggingface_hub import utils as hub
    from transformers.utils import logging as tf_logging

    # a CLI test run in this process before huggingface_hub was imported has fixed its bars' switch through
    # $HF_HUB_DISABLE_PROGRESS_BARS (cli._configure_logging): free the switch for this test
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", None)

    def state():
        return tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()

    def set_state(verbosity, bars, hub_bars_off):
        tf_logging.set_verbosity(verbosity)
        (tf_logging.enable_progress_bar if bars else tf_logging.disable_progress_bar)()
        (hub.disable_progress_bars if hub_bars_off else hub.enable_progress_bars)()
        assert state() == (verbosity, bars, hub_bars_off)

    before = state()
    yield state, set_state
    set_state(*before)


def no_transformers_output(err: str) -> bool:
    return not any(text in err for text in ("Loading weights", "LOAD REPORT", "[transformers]"))


@pytest.mark.parametrize("caller", [(logging.WARNING, True, False), (logging.INFO, True, True),
                                    (logging.ERROR, False, False)])
def test_api_predict_hides_transformers_output_and_leaves_its_settings(binary, transformers_output, capfd, caller):
    folder, _ = binary
    state, set_state = transformers_output
    set_state(*caller)
    headtune.predict(TEXTS, model=folder, device="cpu")
    assert no_transformers_output(capfd.readouterr().err)
    assert state() == caller


def test_api_train_and_evaluate_hide_transformers_output_too(tiny_models, tmp_path, transformers_output, capfd):
    from conftest import sentiment_frame

    state, set_state = transformers_output
    set_state(logging.WARNING, True, False)
    data = tmp_path / "data"
    data.mkdir()
    sentiment_frame(60, seed=1).to_parquet(data / "train.parquet")
    sentiment_frame(40, seed=2).to_parquet(data / "test.parquet")
    capfd.readouterr()
    # the backbone has no classification head: transformers reports the head's weights as missing (LOAD REPORT)
    headtune.train(model=str(tiny_models["distilbert"]), dataset=str(data), output_dir=str(tmp_path / "out"),
                   device="cpu", epochs=1, max_length=16)
    headtune.evaluate(model=str(tmp_path / "out" / "model"), dataset=str(data), device="cpu", no_cache=True,
                      output_dir=str(tmp_path / "eval"))
    assert no_transformers_output(capfd.readouterr().err)
    assert state() == (logging.WARNING, True, False)


def test_api_quiets_the_transformers_it_imports_then_leaves_it_as_the_caller_set_it(binary):
    """In a fresh process transformers is imported by the call itself: quiet from its import on, and afterwards
    as that import would have set it (TRANSFORMERS_VERBOSITY=info, bars on)."""
    folder, _ = binary
    code = ("import os, sys, headtune; headtune.predict(['a great film'], model=sys.argv[1], device='cpu'); "
            "from transformers.utils import logging as t; "
            "print(t.get_verbosity(), t.is_progress_bar_enabled(), os.environ['TRANSFORMERS_VERBOSITY'])")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    env.update(TRANSFORMERS_VERBOSITY="info", PYTHONPATH=str(Path(headtune.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert no_transformers_output(done.stderr), done.stderr
    assert done.stdout.split() == [str(logging.INFO), "True", "info"]


def test_a_reader_that_stops_early_is_no_error(many, tmp_path):
    """`headtune predict ... | head`: the closed pipe ends the command quietly, with status 0."""
    folder, _ = many
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"text number {i}\n" for i in range(1500)))  # 77 labels each: far over a pipe's buffer
    env = {**os.environ, "PYTHONPATH": str(Path(headtune.__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-m", "headtune", "predict", "--model", str(folder), "--file", str(texts),
                              "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert child.stdout.read(10) == b'[\n  {\n    '
    child.stdout.close()
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, stderr
    assert "error" not in stderr
