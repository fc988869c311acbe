"""evaluate: any saved classifier on a labelled split; a headtune folder's own features from the cache."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import headtune
from headtune.errors import HeadtuneError

MAX_LENGTH = 32


@pytest.fixture(scope="module")
def run(tiny_models, sentiment_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    metrics = headtune.train(dataset=str(sentiment_dir), model=str(tiny_models["bert"]), output_dir=str(root / "run"),
                             cache_dir=str(root / "cache"), max_length=MAX_LENGTH, device="cpu", epochs=2,
                             test_size=120)
    return metrics, root


def evaluate(root, **settings):
    settings = {"model": str(root / "run" / "model"), "device": "cpu", "cache_dir": str(root / "cache"), **settings}
    return headtune.evaluate(**settings)


def test_the_runs_own_test_sample_gives_its_scores_exactly_from_the_cache(run, sentiment_dir, tmp_path,
                                                                          monkeypatch):
    metrics, root = run

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone ran")

    monkeypatch.setattr("headtune.evaluation.extract_features", refuse)
    result = evaluate(root, dataset=str(sentiment_dir), size=120, output_dir=str(tmp_path / "eval"))
    assert result["features"] == "cache" and result["texts"] == 120 and result["max_length"] == MAX_LENGTH
    for key in ("accuracy", "f1", "per_class", "confusion_matrix", "ece", "loss"):
        assert result[key] == metrics["test"][key], key
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written == result
    assert {p.name for p in (tmp_path / "eval" / "images").iterdir()} == {"CONFUSION_MATRIX.png", "RELIABILITY.png"}


def test_other_texts_run_one_pass_that_is_cached_and_match_the_full_model(run, sentiment_dir, tmp_path):
    metrics, root = run
    first = evaluate(root, dataset=str(sentiment_dir), output_dir=str(tmp_path / "a"))  # all 200 test texts
    assert first["features"].startswith("one backbone pass") and first["texts"] == 200
    again = evaluate(root, dataset=str(sentiment_dir), output_dir=str(tmp_path / "b"))
    assert again["features"] == "cache"
    assert {k: again[k] for k in ("accuracy", "f1", "confusion_matrix")} == \
           {k: first[k] for k in ("accuracy", "f1", "confusion_matrix")}
    full = evaluate(root, dataset=str(sentiment_dir), no_cache=True, output_dir=str(tmp_path / "c"))
    assert full["features"] == "full model"
    assert full["confusion_matrix"] == first["confusion_matrix"]  # the checkpoint predicts what the head did
    assert (root / "run" / "evaluate-test").exists() is False  # an explicit --output-dir was given each time


def test_changed_weights_do_not_trust_the_cache(run, sentiment_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    _, root = run
    folder = tmp_path / "model"
    shutil.copytree(root / "run" / "model", folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 5.0
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    result = headtune.evaluate(model=str(folder), dataset=str(sentiment_dir), device="cpu",
                               cache_dir=str(root / "cache"), size=120)
    assert result["features"] == "full model"
    assert (tmp_path / "evaluate-test" / "metrics.json").is_file()  # the default: beside the model folder


@pytest.mark.parametrize("features", ["cache", "full model"])
def test_weights_that_are_not_finite_are_one_line_not_plausible_metrics(run, sentiment_dir, tmp_path, features):
    """A NaN in the head made every probability NaN: every text took label 0 (accuracy 0.5), loss and ECE NaN."""
    import shutil

    from safetensors.torch import load_file, save_file

    from headtune.digests import file_sha256

    _, root = run
    folder = tmp_path / "model"
    shutil.copytree(root / "run" / "model", folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.weight"][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    if features == "cache":  # as if trained so: the cached features apply, the saved head reads them
        settings = json.loads((folder / "headtune.json").read_text())
        settings["checkpoint_sha256"] = file_sha256(folder / "model.safetensors")
        (folder / "headtune.json").write_text(json.dumps(settings))
    with pytest.raises(HeadtuneError, match=r"gives no finite probabilities for 120 of 120 texts: its weights hold "
                                            r"NaN or infinite values \(classifier.weight\)"):
        evaluate(root, model=str(folder), dataset=str(sentiment_dir), size=120, no_cache=features != "cache",
                 output_dir=str(tmp_path / "eval"))


def test_two_models_in_one_folder_keep_their_own_evaluations(run, sentiment_dir, tmp_path):
    """Both wrote models/evaluate-test by default, the second over the first without a word."""
    import shutil

    _, root = run
    for name in ("a", "b"):
        shutil.copytree(root / "run" / "model", tmp_path / "models" / name)
        headtune.evaluate(model=str(tmp_path / "models" / name), dataset=str(sentiment_dir), device="cpu",
                          cache_dir=str(root / "cache"), size=40)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["a", "a-evaluate-test", "b", "b-evaluate-test"]


def test_any_sequence_classification_folder_is_evaluated_with_its_label2id(tiny_models, tmp_path, tokenizer):
    folder = tmp_path / "foreign"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["roberta"], num_labels=2,
                                                               id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                                               label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"text": ["great film", "awful plot", "dull"], "label": ["POSITIVE", "NEGATIVE", "NEGATIVE"]}) \
        .to_csv(data / "test.csv", index=False)
    result = headtune.evaluate(model=str(folder), dataset=str(data), device="cpu", max_length=16,
                               output_dir=str(tmp_path / "eval"))
    assert result["features"] == "full model" and result["labels"] == ["NEGATIVE", "POSITIVE"]
    assert sum(map(sum, result["confusion_matrix"])) == 3 and result["pooling"] is None

    pd.DataFrame({"text": ["great film"], "label": ["pos"]}).to_csv(data / "test.csv", index=False)
    with pytest.raises(HeadtuneError, match="'pos'.*NEGATIVE, POSITIVE") as err:
        headtune.evaluate(model=str(folder), dataset=str(data), device="cpu", max_length=16)
    assert "\n" not in str(err.value)


def test_a_split_the_dataset_lacks_is_one_line(run, sentiment_dir):
    _, root = run
    with pytest.raises(HeadtuneError, match="no_such_split") as err:
        evaluate(root, dataset=str(sentiment_dir), split="no_such_split")
    assert "\n" not in str(err.value)


def test_a_cache_dir_that_is_a_file_is_one_line(run, sentiment_dir, tmp_path):
    _, root = run
    (tmp_path / "cache.bin").write_text("mine")
    with pytest.raises(HeadtuneError, match="--cache-dir .*cache.bin is a file, not a folder") as err:
        evaluate(root, dataset=str(sentiment_dir), cache_dir=str(tmp_path / "cache.bin"), output_dir=str(tmp_path / "e"))
    assert "\n" not in str(err.value) and not (tmp_path / "e").exists()


@pytest.mark.parametrize("into, held", [("run", "a training run (model/)"), ("run/model", "a model")])
def test_evaluate_does_not_write_over_a_training_run_or_into_a_model(into, held, run, sentiment_dir):
    _, root = run
    before = (root / "run" / "metrics.json").read_bytes()
    with pytest.raises(HeadtuneError, match=f"holds {re.escape(held)}; .*choose another --output-dir") as err:
        evaluate(root, dataset=str(sentiment_dir), output_dir=str(root / into))
    assert "\n" not in str(err.value)
    assert (root / "run" / "metrics.json").read_bytes() == before and not (root / "run" / "model" / "images").exists()


def test_an_edited_config_is_scored_as_the_model_it_now_is(run, sentiment_dir, tmp_path):
    """Same weights, another activation: evaluate scored the run's cached features (its old accuracy)."""
    import json
    import shutil

    _, root = run
    folder = tmp_path / "model"
    shutil.copytree(root / "run" / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    kept = headtune.evaluate(model=str(folder), dataset=str(sentiment_dir), device="cpu",
                             cache_dir=str(root / "cache"), size=120, output_dir=str(tmp_path / "a"))
    fresh = headtune.evaluate(model=str(folder), dataset=str(sentiment_dir), device="cpu", no_cache=True, size=120,
                              output_dir=str(tmp_path / "b"))
    assert kept["features"] == "full model" and kept["accuracy"] == fresh["accuracy"]


def test_a_model_trained_on_int8_features_is_scored_as_saved(tiny_models, sentiment_dir, tmp_path):
    """The saved model keeps fp32 weights: the cached int8 features (present or not) must not decide the score."""
    settings = dict(dataset=str(sentiment_dir), device="cpu", cache_dir=str(tmp_path / "cache"), test_size=40)
    headtune.train(model=str(tiny_models["bert"]), output_dir=str(tmp_path / "run"), max_length=MAX_LENGTH,
                   epochs=1, precision="int8", lr=0.03, train_size=60, **settings)
    del settings["test_size"]
    cached = headtune.evaluate(model=str(tmp_path / "run" / "model"), size=40, output_dir=str(tmp_path / "a"),
                               **settings)
    fresh = headtune.evaluate(model=str(tmp_path / "run" / "model"), size=40, output_dir=str(tmp_path / "b"),
                              no_cache=True, **{k: v for k, v in settings.items() if k != "cache_dir"})
    assert cached["features"] == "full model" and cached["accuracy"] == fresh["accuracy"]
    # the card's results are the int8 run's, not what this folder scores: it says so
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "- Backbone pass: int8 (`--precision int8`" in card and "measured on the int8 features" in card
