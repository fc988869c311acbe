"""`headtune.train` end to end: artifacts, a checkpoint transformers loads as is, predict, labels, the fallback."""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, pipeline

import headtune
from conftest import FILLER, NEGATIVE, POSITIVE
from headtune.errors import HeadtuneError

MAX_LENGTH = 32
TEXTS = ["a great and moving film", "awful , boring and dull", "the movie", "superb"]


@pytest.fixture(autouse=True)
def _propagate(monkeypatch):
    # the CLI (when another test ran it) stops headtune's records at its own handler; caplog listens at the root
    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)


def train(tmp_path, dataset, model, **settings):
    settings = {"max_length": MAX_LENGTH, "device": "cpu", "epochs": 2, "cache_dir": str(tmp_path / "cache"),
                "output_dir": str(tmp_path / "out"), **settings}
    return headtune.train(dataset=str(dataset), model=str(model), **settings)


@pytest.fixture(scope="module")
def binary_run(tiny_models, sentiment_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binary-run")
    return train(tmp, sentiment_dir, tiny_models["distilbert"]), tmp / "out"


# --------------------------------------------------------------------------- artifacts

def test_all_artifacts_are_written(binary_run):
    metrics, out = binary_run
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["images/BAR_CHART.png", "images/CONFUSION_MATRIX.png", "images/LINE_CHART.png",
                     "images/LR_SWEEP.png", "images/RELIABILITY.png", "metrics.json", "model/README.md",
                     "model/config.json", "model/headtune.json", "model/model.safetensors", "model/tokenizer.json",
                     "model/tokenizer_config.json"]
    for chart in ("BAR_CHART.png", "LINE_CHART.png", "LR_SWEEP.png", "CONFUSION_MATRIX.png", "RELIABILITY.png"):
        with Image.open(out / "images" / chart) as image:
            image.verify()
            assert image.format == "PNG"
    assert not [p for p in out.parent.rglob("*") if p.suffix in (".bin", ".pkl", ".pickle", ".pt", ".pth")]

    config = json.loads((out / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert config["label2id"] == {"neg": 0, "pos": 1}
    assert config["architectures"] == ["DistilBertForSequenceClassification"]


def test_metrics_json(binary_run):
    metrics, out = binary_run
    saved = json.loads((out / "metrics.json").read_text())
    assert {"before", "after", "history", "config", "timings_s", "labels", "backbone_pass",
            "parameters"} <= set(saved)
    # what is returned is what was saved, plus the time the save took
    assert set(metrics["timings_s"]) - set(saved["timings_s"]) == {"total_with_save"}
    assert {k: v for k, v in metrics.items() if k != "timings_s"} == {k: v for k, v in saved.items()
                                                                      if k != "timings_s"}
    assert [h["epoch"] for h in saved["history"]] == [0, 1, 2]
    test_labels = pd.read_parquet(Path(saved["config"]["data"]["dataset"]) / "test.parquet").label
    assert saved["chance_accuracy"] == test_labels.value_counts().max() / len(test_labels)  # the majority's share
    assert saved["before"] == {k: saved["history"][0]["test"][k] for k in ("accuracy", "f1", "loss")}
    kept = saved["history"][saved["kept_epoch"]]
    # calibration folds a temperature into the head: the same predictions, so the same accuracy and F1
    assert {k: saved["after"][k] for k in ("accuracy", "f1")} == {k: kept["test"][k] for k in ("accuracy", "f1")}
    assert saved["labels"] == ["neg", "pos"] and saved["positive_label"] == "pos"
    assert saved["metric_names"] == {"accuracy": "accuracy", "f1": "F1 (pos)"}
    assert saved["config"]["train"]["epochs"] == 2 and saved["config"]["model"]["max_length"] == MAX_LENGTH
    # the choices cross-validated on 5 folds of the 400 training rows, and the saved head trained on all of them
    assert saved["data"] == {**saved["data"], "train": 400, "validation": 0, "test": 200, "folds": 5,
                             "validation_source": "cross-validation"}
    assert saved["validation"]["source"] == "cross-validation" and saved["validation"]["folds"] == 5
    assert saved["calibration"]["fitted_on"] == "out-of-fold"
    assert saved["pooling"] == "native" and saved["loading"] == "ordinary"
    assert saved["lr"]["mode"] == "auto" and saved["lr"]["chosen"] in [row["lr"] for row in saved["lr"]["sweep"]]
    best = max(row["best_validation_accuracy"] for row in saved["lr"]["sweep"])
    assert saved["validation"]["after"]["accuracy"] == best == kept["validation"]["accuracy"]
    assert set(saved["test"]["per_class"]) == {"neg", "pos"}
    assert sum(map(sum, saved["test"]["confusion_matrix"])) == 200
    assert saved["calibration"]["temperature"] > 0 and 0 <= saved["calibration"]["ece_after"] <= 1
    assert saved["after"]["ece"] == saved["calibration"]["ece_after"]
    assert all(isinstance(v, float) and v >= 0 for v in saved["timings_s"].values())


def test_saved_model_works_with_transformers_pipeline_and_predict(binary_run):
    _, out = binary_run
    model_dir = str(out / "model")
    predictions = headtune.predict(TEXTS, model=model_dir, device="cpu")
    classifier = pipeline("text-classification", model=model_dir, top_k=None, device="cpu")
    for text, pred, scores in zip(TEXTS, predictions, classifier(TEXTS)):
        assert list(pred) == ["text", "neg_prob", "pos_prob", "label"]
        assert pred["text"] == text
        assert all(type(pred[k]) is float for k in ("neg_prob", "pos_prob"))
        assert pred["neg_prob"] + pred["pos_prob"] == pytest.approx(1.0, abs=1e-6)
        assert pred["label"] == ("pos" if pred["pos_prob"] > pred["neg_prob"] else "neg")
        by_label = {s["label"]: s["score"] for s in scores}
        assert set(by_label) == {"neg", "pos"}
        assert by_label["neg"] == pytest.approx(pred["neg_prob"], abs=1e-5)
        assert by_label["pos"] == pytest.approx(pred["pos_prob"], abs=1e-5)
    assert json.loads(json.dumps(predictions)) == predictions


def test_existing_model_is_not_overwritten_unasked(binary_run, sentiment_dir, tiny_models):
    _, out = binary_run
    before = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(HeadtuneError, match="--overwrite"):
        headtune.train(dataset=str(sentiment_dir), model=str(tiny_models["distilbert"]), output_dir=str(out),
                       max_length=MAX_LENGTH, device="cpu")
    assert (out / "model" / "model.safetensors").read_bytes() == before


# --------------------------------------------------------------------------- string labels, 3 classes

def three_class_frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    words = {"good": ["great", "superb", "wonderful"], "bad": ["awful", "dull", "mess"],
             "meh": ["quite", "okay", "fine"]}
    rows = []
    for i in range(n):
        label = ["good", "bad", "meh"][i % 3]
        text = rng.choices(["the", "movie", "plot", "was", "a", "film"], k=4) + rng.choices(words[label], k=2)
        rng.shuffle(text)
        rows.append({"review": " ".join(text), "sentiment": label})
    return pd.DataFrame(rows)


def test_three_string_labels_end_to_end(tiny_models, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    three_class_frame(90, seed=1).to_csv(data / "train.csv", index=False)
    test = three_class_frame(30, seed=2)
    test.to_csv(data / "test.csv", index=False)

    metrics = train(tmp_path, data, tiny_models["bert"], text_column="review", label_column="sentiment")
    assert metrics["labels"] == ["bad", "good", "meh"]  # sorted string values
    assert metrics["metric_names"]["f1"] == "macro F1"
    model_dir = tmp_path / "out" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "bad", "1": "good", "2": "meh"}

    predictions = headtune.predict(test.review.tolist(), model=str(model_dir), device="cpu")
    for p in predictions:  # the label and its probability first, then the others, most probable first
        assert list(p)[:2] == ["text", "label"] and list(p)[2] == f"{p['label']}_prob"
        assert sorted(list(p)[2:]) == ["bad_prob", "good_prob", "meh_prob"]
        assert list(p.values())[2:] == sorted(list(p.values())[2:], reverse=True)
    # the saved model predicts what the head-only evaluation measured: same accuracy, same macro F1
    names = ["bad", "good", "meh"]
    labels = np.array([names.index(s) for s in test.sentiment])
    preds = np.array([names.index(p["label"]) for p in predictions])
    assert metrics["after"]["accuracy"] == pytest.approx(float((preds == labels).mean()), abs=1e-12)
    assert metrics["after"]["f1"] == pytest.approx(f1_score(labels, preds, average="macro", labels=[0, 1, 2],
                                                            zero_division=0.0), abs=1e-12)


# --------------------------------------------------------------------------- an architecture without a mapping

def test_unregistered_architecture_falls_back_and_still_yields_a_checkpoint(tiny_convbert, sentiment_dir, tmp_path,
                                                                          caplog):
    with caplog.at_level(logging.WARNING):
        metrics = train(tmp_path, sentiment_dir, tiny_convbert, train_size=48, test_size=24, epochs=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("headtune")]
    assert len(warnings) == 2  # --lr auto falling back to one rate, and the slow path
    assert "--lr auto" in warnings[0]
    assert "'convbert'" in warnings[1] and "classifier" in warnings[1] and "\n" not in warnings[1]

    params = metrics["parameters"]
    assert params["cached_features"] is False and params["head_modules"] == ["classifier"]
    assert params["feature_point"] == "full-model"
    assert params["trainable"] == (32 * 32 + 32) + (32 * 2 + 2)  # classifier.dense + classifier.out_proj
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["lr"] == {"mode": "fixed", "chosen": 0.03, "chosen_by": "accuracy", "sweep": []}
    # folds would train through the whole model once per fold: this path holds 10 % out instead
    assert (metrics["data"]["validation_source"], metrics["data"]["validation"], metrics["data"]["folds"]) == \
           ("train", 5, None)
    assert not (tmp_path / "cache").exists()  # nothing cached on this path

    saved = load_file(tmp_path / "out" / "model" / "model.safetensors")
    for key, tensor in load_file(tiny_convbert / "model.safetensors").items():
        assert torch.equal(saved[f"convbert.{key}"], tensor), key  # the backbone is untouched
    predictions = headtune.predict(TEXTS, model=str(tmp_path / "out" / "model"), device="cpu")
    assert [list(p) for p in predictions] == [["text", "neg_prob", "pos_prob", "label"]] * len(TEXTS)
    with pytest.raises(HeadtuneError, match="--pooling native"):
        train(tmp_path, sentiment_dir, tiny_convbert, pooling="mean", output_dir=str(tmp_path / "mean"))


def test_no_centre_trains_on_the_raw_features_from_the_same_untrained_head(tiny_models, sentiment_dir, tmp_path):
    runs = {centre: train(tmp_path, sentiment_dir, tiny_models["bert"], centre=centre, lr=0.03,
                          output_dir=str(tmp_path / f"out-{centre}")) for centre in (True, False)}
    assert runs[True]["centred"] is True and runs[False]["centred"] is False
    assert runs[True]["before"] == runs[False]["before"]  # the untrained head computes the same either way
    a, b = (load_file(tmp_path / f"out-{centre}" / "model" / "model.safetensors") for centre in (True, False))
    assert a.keys() == b.keys() and not torch.allclose(a["classifier.bias"], b["classifier.bias"], atol=1e-3)


def test_the_fallback_saves_the_kept_epoch_calibrated(tiny_convbert, sentiment_dir, tmp_path):
    """The slow path's head modules live inside the model: the kept epoch and the folded temperature must
    reach that model, which scores the splits and is saved."""
    settings = dict(test_size=24, epochs=6, lr=0.1, val_fraction=0.3)
    metrics = train(tmp_path, sentiment_dir, tiny_convbert, calibrate=False, output_dir=str(tmp_path / "raw"),
                    **settings)
    assert metrics["kept_epoch"] < 6  # an earlier epoch was the best: the case this test is about
    assert metrics["centred"] is False  # no cached features to centre: the whole model runs every step
    kept = metrics["history"][metrics["kept_epoch"]]["test"]
    assert (metrics["after"]["accuracy"], metrics["after"]["loss"]) == (kept["accuracy"], pytest.approx(kept["loss"]))
    evaluated = headtune.evaluate(model=str(tmp_path / "raw" / "model"), dataset=str(sentiment_dir), size=24,
                                  device="cpu", output_dir=str(tmp_path / "raw-eval"))
    assert evaluated["loss"] == pytest.approx(kept["loss"], abs=1e-5)  # the saved folder is the kept head

    calibrated = train(tmp_path, sentiment_dir, tiny_convbert, output_dir=str(tmp_path / "cal"), **settings)
    calibration = calibrated["calibration"]
    assert calibration["temperature"] != 1 and calibration["ece_after"] != calibration["ece_before"]
    evaluated = headtune.evaluate(model=str(tmp_path / "cal" / "model"), dataset=str(sentiment_dir), size=24,
                                  device="cpu", output_dir=str(tmp_path / "cal-eval"))
    assert evaluated["ece"] == pytest.approx(calibration["ece_after"], abs=1e-6)


# --------------------------------------------------------------------------- a warm cache: no model load

def comparable(metrics: dict) -> dict:
    """metrics without what differs between a cold and a warm run of the same settings."""
    metrics = json.loads(json.dumps(metrics))
    for key in ("timings_s", "backbone_pass"):
        metrics.pop(key)
    for row in metrics["history"]:
        row.pop("seconds")
    metrics["environment"].pop("model_loaded")
    metrics.pop("config_file")
    metrics["config"]["output"].pop("output_dir")
    return metrics


def test_warm_run_writes_the_same_checkpoint_without_loading_the_model(tiny_models, sentiment_dir, tmp_path,
                                                                       monkeypatch):
    settings = dict(train_size=64, test_size=32, epochs=2, seed=3)
    cold = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "cold"), **settings)
    assert cold["environment"]["model_loaded"] is True

    def refuse(*args, **kwargs):
        raise AssertionError("a warm run loaded the model")

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", refuse)
    warm = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "warm"), **settings)
    assert warm["environment"]["model_loaded"] is False
    assert comparable(warm) == comparable(cold)
    assert {s: p["computed_shards"] for s, p in warm["backbone_pass"].items()} == {"train": 0, "test": 0}

    saved = {run: load_file(tmp_path / run / "model" / "model.safetensors") for run in ("cold", "warm")}
    assert saved["cold"].keys() == saved["warm"].keys()
    assert all(torch.equal(saved["cold"][k], saved["warm"][k]) for k in saved["cold"])
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (tmp_path / "warm" / "model" / name).read_bytes() == (tmp_path / "cold" / "model" / name).read_bytes()

    # head settings still change the head, from the cache alone (not the seed: it also draws the sample)
    other = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "lr"), lr=0.1, **settings)
    assert other["environment"]["model_loaded"] is False
    changed = load_file(tmp_path / "lr" / "model" / "model.safetensors")
    assert not torch.equal(changed["classifier.weight"], saved["cold"]["classifier.weight"])
    assert all(torch.equal(changed[k], saved["cold"][k]) for k in saved["cold"] if k.startswith("bert."))


def test_depth_trains_on_the_cut_model_saves_it_and_caches_it_apart(tiny_models, sentiment_dir, tmp_path,
                                                                     monkeypatch):
    settings = dict(train_size=64, test_size=32, epochs=2, seed=3)
    cut = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "cut"), depth=1, **settings)
    whole = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "whole"), depth="all",
                  **settings)
    assert cut["config"]["model"]["depth"] == 1 and whole["config"]["model"]["depth"] == "all"
    # another model: its own features and body in the cache, neither read by the run of the whole model
    assert {s: p["computed_shards"] > 0 for s, p in whole["backbone_pass"].items()} == {"train": True, "test": True}
    assert whole["environment"]["model_loaded"] is True
    saved = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert {k.split(".")[3] for k in saved if k.startswith("bert.encoder.layer.")} == {"0"}
    assert json.loads((tmp_path / "cut" / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert cut["parameters"]["frozen"] < whole["parameters"]["frozen"]
    card = (tmp_path / "cut" / "model" / "README.md").read_text()
    assert f"cut to its first layer, frozen ({cut['parameters']['frozen']:,} parameters)" in card
    texts = ["a wonderful film", "a dull plot"]
    rows = headtune.predict(texts, model=str(tmp_path / "cut" / "model"), device="cpu")
    scores = pipeline("text-classification", model=str(tmp_path / "cut" / "model"), top_k=None, device="cpu")(texts)
    for row, score in zip(rows, scores):
        assert {s["label"]: s["score"] for s in score}["pos"] == pytest.approx(row["pos_prob"], abs=1e-5)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained",
                        lambda *a, **k: pytest.fail("a warm run loaded the model"))
    warm = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "warm"), depth=1, **settings)
    assert warm["environment"]["model_loaded"] is False
    assert comparable(warm) == comparable(cut)
    warm_saved = load_file(tmp_path / "warm" / "model" / "model.safetensors")
    assert warm_saved.keys() == saved.keys() and all(torch.equal(warm_saved[k], saved[k]) for k in saved)


def test_a_depth_beyond_the_layers_or_on_an_unregistered_architecture_is_one_line(tiny_models, tiny_convbert,
                                                                                  sentiment_dir, tmp_path):
    with pytest.raises(HeadtuneError, match=r"^--depth 3 is more layers than the model has \(2\); pass 1 to 2, or "
                                            r"leave it out to keep them all$"):
        train(tmp_path, sentiment_dir, tiny_models["distilbert"], depth=3)
    with pytest.raises(HeadtuneError, match=r"^--depth needs an architecture headtune has an entry for .*model type "
                                            r"'convbert' trains through its own class: drop --depth$"):
        train(tmp_path, sentiment_dir, tiny_convbert, depth=1)
    with pytest.raises(HeadtuneError, match="--depth"):
        train(tmp_path, sentiment_dir, tiny_models["distilbert"], depth=0)
    assert not (tmp_path / "out").exists()


def test_a_lost_model_body_loads_the_model_once_more(tiny_models, sentiment_dir, tmp_path):
    settings = dict(train_size=64, test_size=32, epochs=1, depth="all")  # one body: the whole model's
    train(tmp_path, sentiment_dir, tiny_models["distilbert"], output_dir=str(tmp_path / "a"), **settings)
    (body,) = (tmp_path / "cache").glob("*/body.safetensors")
    body.unlink()
    again = train(tmp_path, sentiment_dir, tiny_models["distilbert"], output_dir=str(tmp_path / "b"), **settings)
    assert again["environment"]["model_loaded"] is True
    assert {s: p["computed_shards"] for s, p in again["backbone_pass"].items()} == {"train": 0, "test": 0}
    assert body.exists()  # stored again


def test_backbone_weights_missing_from_the_checkpoint_are_never_cached(tokenizer, sentiment_dir, tmp_path, caplog):
    from conftest import tiny_config
    from transformers import BertModel

    folder = tmp_path / "no-pooler"  # a BERT checkpoint without the pooler the head reads from
    torch.manual_seed(0)
    BertModel(tiny_config("bert"), add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = dict(train_size=64, test_size=32, epochs=1)
    with caplog.at_level(logging.WARNING):
        train(tmp_path, sentiment_dir, folder, output_dir=str(tmp_path / "a"), **settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("headtune")]
    assert len(warnings) == 1 and "pooler.dense.weight" in warnings[0] and "not cached" in warnings[0]
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))
    second = train(tmp_path, sentiment_dir, folder, output_dir=str(tmp_path / "b"), **settings, seed=5)
    assert second["environment"]["model_loaded"] is True
    assert second["backbone_pass"]["train"]["cached_shards"] == 0
    # the saved model holds the random pooler its features came from: it predicts what was evaluated
    saved = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert "bert.pooler.dense.weight" in saved


# --------------------------------------------------------------------------- poolings, choices, calibration

@pytest.fixture(scope="module")
def sentence_model(tmp_path_factory, tokenizer):
    """A tiny BERT with a sentence-transformers mean-pooling config, as all-MiniLM ships."""
    from conftest import save_pretrained_like
    from test_pooling import st_folder

    folder = save_pretrained_like("bert", tmp_path_factory.mktemp("st") / "bert", tokenizer)
    return st_folder(folder, {"pooling_mode_mean_tokens": True})


def test_auto_mean_pooling_saves_a_pooled_model_that_loads_everywhere_alike(sentence_model, sentiment_dir, tmp_path):
    """headtune predict (no code from the folder), pipeline and AutoModel with trust_remote_code: same probabilities."""
    metrics = train(tmp_path, sentiment_dir, sentence_model, train_size=120, test_size=40)
    assert metrics["pooling"] == "mean" and metrics["loading"] == "trust_remote_code"
    assert metrics["parameters"]["feature_point"] == "mean"
    model_dir = tmp_path / "out" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "headtune_pooled" and config["pooling"] == "mean"
    assert (model_dir / "modeling_headtune.py").is_file()
    assert json.loads((model_dir / "headtune.json").read_text())["loading"] == "trust_remote_code"

    ours = headtune.predict(TEXTS, model=str(model_dir), device="cpu")
    rows = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu",
                    trust_remote_code=True)(TEXTS)
    auto = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    enc = auto_tokenizer(model_dir)(TEXTS, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        auto_probs = torch.softmax(auto(**enc).logits, -1)
    for pred, scores, probs in zip(ours, rows, auto_probs):
        by_label = {s["label"]: s["score"] for s in scores}
        for i, name in enumerate(("neg", "pos")):
            assert by_label[name] == pytest.approx(pred[f"{name}_prob"], abs=1e-5)
            assert float(probs[i]) == pytest.approx(pred[f"{name}_prob"], abs=1e-5)
    with pytest.raises(ValueError, match="trust_remote_code"):  # never silently loaded as a plain BERT
        AutoModelForSequenceClassification.from_pretrained(model_dir)


def auto_tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=True)


def test_changing_every_test_label_changes_no_choice_and_no_saved_weight(tiny_models, sentiment_dir, tmp_path):
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    pd.read_parquet(sentiment_dir / "train.parquet").to_parquet(flipped / "train.parquet")
    test = pd.read_parquet(sentiment_dir / "test.parquet")
    test["label"] = 1 - test["label"]
    test.to_parquet(flipped / "test.parquet")
    settings = dict(train_size=200, epochs=3, patience=2)
    a = train(tmp_path, sentiment_dir, tiny_models["distilbert"], output_dir=str(tmp_path / "a"), **settings)
    b = train(tmp_path, flipped, tiny_models["distilbert"], output_dir=str(tmp_path / "b"), **settings)
    assert (a["lr"], a["kept_epoch"], a["calibration"]["temperature"], a["validation"]) == \
           (b["lr"], b["kept_epoch"], b["calibration"]["temperature"], b["validation"])
    assert (tmp_path / "a" / "model" / "model.safetensors").read_bytes() == \
           (tmp_path / "b" / "model" / "model.safetensors").read_bytes()
    assert a["after"]["accuracy"] == pytest.approx(1 - b["after"]["accuracy"])  # the test split did differ


def test_the_folded_temperature_keeps_the_argmax_and_gives_the_fitted_probabilities(tiny_models, sentiment_dir,
                                                                                     tmp_path):
    # a held-out split, whose texts predict can score (cross-validated runs: test_crossval.py)
    settings = dict(train_size=200, test_size=100, epochs=2, val_fraction=0.1)
    plain = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "plain"), calibrate=False,
                  **settings)
    calibrated = train(tmp_path, sentiment_dir, tiny_models["bert"], output_dir=str(tmp_path / "cal"), **settings)
    temperature = calibrated["calibration"]["temperature"]
    assert temperature > 0 and temperature != pytest.approx(1.0, abs=1e-3)
    assert plain["calibration"]["temperature"] is None
    a = load_file(tmp_path / "plain" / "model" / "model.safetensors")
    b = load_file(tmp_path / "cal" / "model" / "model.safetensors")
    assert torch.allclose(b["classifier.weight"], a["classifier.weight"] / temperature, atol=1e-7)
    assert torch.allclose(b["classifier.bias"], a["classifier.bias"] / temperature, atol=1e-7)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("classifier"))

    texts = pd.read_parquet(sentiment_dir / "test.parquet").text.tolist()[:50]
    before = headtune.predict(texts, model=str(tmp_path / "plain" / "model"), device="cpu")
    after = headtune.predict(texts, model=str(tmp_path / "cal" / "model"), device="cpu")
    for x, y in zip(before, after):
        assert x["label"] == y["label"]  # same argmax
        logit = np.log(x["pos_prob"] / x["neg_prob"])  # softmax(z / T) of two labels: sigmoid((z1 - z0) / T)
        assert y["pos_prob"] == pytest.approx(1 / (1 + np.exp(-logit / temperature)), abs=1e-5)
    assert {k: plain["after"][k] for k in ("accuracy", "f1")} == {k: calibrated["after"][k] for k in ("accuracy", "f1")}
    assert calibrated["calibration"]["ece_after"] != calibrated["calibration"]["ece_before"]

    # the temperature is the one that minimises the validation split's log loss (the test split plays no part)
    from headtune.config import DataConfig
    from headtune.data import load_splits

    validation = load_splits(DataConfig(dataset=str(sentiment_dir), train_size=200, test_size=100,
                                        val_fraction=0.1)).validation
    rows = headtune.predict(validation.texts, model=str(tmp_path / "plain" / "model"), device="cpu", max_length=32)
    margin = np.array([np.log(r["pos_prob"] / r["neg_prob"]) for r in rows])
    sign = np.where(validation.labels == 1, 1.0, -1.0)

    def log_loss(t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -sign * margin / t)))

    neighbours = [t for t in (temperature * 1.05, temperature / 1.05) if 0.05 <= t <= 20]  # the range searched
    assert neighbours and log_loss(temperature) < min(log_loss(t) for t in neighbours)


def test_paths_work_everywhere_in_the_api(tiny_models, sentiment_dir, tmp_path):
    from pathlib import Path

    metrics = headtune.train(model=Path(tiny_models["distilbert"]), dataset=Path(sentiment_dir),
                             output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", max_length=MAX_LENGTH,
                             device="cpu", epochs=1, train_size=60, test_size=20)
    assert metrics["config"]["model"]["model"] == str(tiny_models["distilbert"])
    assert headtune.predict(["great"], model=tmp_path / "out" / "model", device="cpu")[0]["label"] in ("neg", "pos")
    assert headtune.evaluate(model=tmp_path / "out" / "model", dataset=Path(sentiment_dir), device="cpu",
                             cache_dir=tmp_path / "cache", output_dir=tmp_path / "eval")["texts"] == 200


@pytest.mark.parametrize("settings, message", [
    (dict(epochs="3"), "--epochs must be an integer above 0"),
    (dict(model=42), "--model must be a path or name"),
    (dict(lr="fast"), "--lr must be auto or a number"),
    (dict(pooling="max"), "--pooling must be one of auto, native, cls, mean"),
    (dict(val_fraction=0.9), "--val-fraction must be a number from 0 to below 0.5"),
    (dict(no_such_setting=1), "unknown setting --no-such-setting"),
    (dict(val_fraction=0.0), r"--lr auto chooses the learning rate on held-out rows, and this run has none "
                             r"\(--val-fraction 0\); pass a learning rate, e.g. --lr 0.03, or validate"),
    (dict(train_size=2, val_fraction=0.4), r"this run has none \(every class of the training sample has a single "
                                           r"example, so none can be held out\); .*, or train on more rows"),
    (dict(folds=0), "--folds must be an integer above 0"),
    (dict(folds=3, val_fraction=0.2), "--val-fraction holds rows out instead of cross-validating, and --folds 3"),
    (dict(overwrite="false"), "--overwrite is on or off"),
    (dict(encoding="bogus"), "unknown --encoding 'bogus': pass a text encoding"),
    (dict(val_fraction=0.0, lr=0.03, patience=1), "--patience stops when the validation accuracy no longer"),
    (dict(small_run=1), "--small-run is on or off"),
])
def test_bad_api_input_is_one_headtune_error(settings, message, tiny_models, sentiment_dir, tmp_path):
    settings = {"model": str(tiny_models["distilbert"]), "dataset": str(sentiment_dir), "device": "cpu", "max_length": 32,
                "output_dir": str(tmp_path / "out"), **settings}
    with pytest.raises(HeadtuneError, match=message) as err:
        headtune.train(**settings)
    assert "\n" not in str(err.value)


def test_the_threshold_is_tuned_on_the_validation_split(tiny_models, tmp_path):
    from headtune.calibration import tune_threshold
    from headtune.config import DataConfig
    from headtune.data import load_splits

    data = multi_label_dir(tmp_path / "data", 300, 100)
    metrics = train(tmp_path, data, tiny_models["distilbert"], label_column="tags", epochs=2, lr=0.3, folds=1)
    validation = load_splits(DataConfig(dataset=str(data), label_column="tags", folds=1)).validation
    rows = headtune.predict(validation.texts, model=str(tmp_path / "out" / "model"), device="cpu", max_length=32)
    probabilities = np.array([[r[f"{n}_prob"] for n in ("long", "neg", "pos")] for r in rows])
    assert metrics["threshold"] == tune_threshold(probabilities, validation.labels) != 0.5  # not the default


def test_evaluate_refuses_a_threshold_for_a_single_label_model(binary_run, sentiment_dir, tmp_path):
    _, out = binary_run  # as predict does: a silent no-op would look like a threshold that did nothing
    with pytest.raises(HeadtuneError, match="--threshold applies to multi-label models only"):
        headtune.evaluate(model=str(out / "model"), dataset=str(sentiment_dir), threshold=0.3, device="cpu",
                          output_dir=str(tmp_path / "eval"))


def test_a_threshold_of_zero_is_kept(tiny_models, tmp_path):
    data = multi_label_dir(tmp_path / "data", 60, 20)
    metrics = train(tmp_path, data, tiny_models["distilbert"], label_column="tags", epochs=1, lr=0.03, threshold=0.0)
    assert metrics["threshold"] == 0.0 and metrics["after"]["accuracy"] == 0.0  # every label predicted for every text
    label_sets = pd.Series([tuple(sorted(tags)) for tags in multi_label_frame(20, 2).tags]).value_counts()
    assert metrics["chance_accuracy"] == label_sets.max() / 20 != 0.5  # the most common label set's share


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tiny_models, sentiment_dir, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    with pytest.raises(HeadtuneError, match=f"--output-dir {blocker / 'sub'} cannot be created: .* is a file"):
        train(tmp_path, sentiment_dir, tiny_models["distilbert"], output_dir=str(blocker / "sub"))
    assert not (tmp_path / "cache").exists()  # refused before the backbone ran
    with pytest.raises(HeadtuneError, match="is a file, not a folder"):
        headtune.evaluate(model=str(tiny_models["distilbert"]), dataset=str(sentiment_dir), output_dir=str(blocker))


# --------------------------------------------------------------------------- multi-label

def multi_label_dir(folder: Path, train: int, test: int) -> Path:
    """A dataset folder of `multi_label_frame`s: train (seed 1) and test (seed 2) parquet files."""
    folder.mkdir()
    multi_label_frame(train, 1).to_parquet(folder / "train.parquet")
    multi_label_frame(test, 2).to_parquet(folder / "test.parquet")
    return folder


def multi_label_frame(n: int, seed: int) -> pd.DataFrame:
    """Sentiment and length: every text has its sentiment label, and `long` when it has over 10 words."""
    frame = sentiment_frame_words(n, seed)
    frame["tags"] = [[("pos" if label else "neg")] + (["long"] if len(text.split()) > 10 else [])
                     for text, label in zip(frame.text, frame.label)]
    return frame[["text", "tags"]]


def sentiment_frame_words(n, seed):
    from conftest import sentiment_frame

    return sentiment_frame(n, seed)


def test_multi_label_trains_evaluates_predicts_and_loads_in_pipeline(tiny_models, tmp_path):
    data = multi_label_dir(tmp_path / "data", 300, 100)
    metrics = train(tmp_path, data, tiny_models["distilbert"], label_column="tags", epochs=2)
    assert metrics["task"] == "multi_label_classification" and metrics["labels"] == ["long", "neg", "pos"]
    assert metrics["metric_names"] == {"accuracy": "subset accuracy", "f1": "micro F1"}
    assert set(metrics["test"]["per_label"]) == {"long", "neg", "pos"}
    assert 0 < metrics["threshold"] < 1 and metrics["calibration"] is None
    assert metrics["lr"]["chosen_by"] == "f1"  # the rate and epoch are chosen by micro F1
    kept = metrics["history"][metrics["kept_epoch"]]["validation"]
    assert max(row["best_validation_accuracy"] for row in metrics["lr"]["sweep"]) == kept["f1"]
    model_dir = tmp_path / "out" / "model"
    assert json.loads((model_dir / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert (tmp_path / "out" / "images" / "CONFUSION_MATRIX.png").is_file()

    rows = headtune.predict(TEXTS, model=str(model_dir), device="cpu")
    for row in rows:
        assert list(row)[:2] == ["text", "labels"] and sorted(list(row)[2:]) == ["long_prob", "neg_prob", "pos_prob"]
        assert row["labels"] == [n for n in sorted(("long", "neg", "pos"), key=lambda n: -row[f"{n}_prob"])
                                 if row[f"{n}_prob"] >= metrics["threshold"]]
    scores = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu")(TEXTS)
    for row, by in zip(rows, scores):  # the pipeline applies a sigmoid per label: the same probabilities
        assert {s["label"]: pytest.approx(row[f"{s['label']}_prob"], abs=1e-5) for s in by} == \
               {s["label"]: s["score"] for s in by}

    result = headtune.evaluate(model=str(model_dir), dataset=str(data), label_column="tags", device="cpu",
                               cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "eval"))
    assert result["features"] == "cache"
    assert (result["accuracy"], result["f1"]) == (metrics["after"]["accuracy"], metrics["after"]["f1"])
    # --threshold 0 (a threshold, not "unset") predicts every label: recall 1, precision = the share of positives
    every = headtune.evaluate(model=str(model_dir), dataset=str(data), label_column="tags", device="cpu",
                              cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "eval0"), threshold=0.0)
    positives = sum(len(tags) for tags in multi_label_frame(100, 2).tags)
    assert every["f1"] == pytest.approx(2 * positives / (3 * 100 + positives))
    assert (result["threshold"], every["threshold"]) == (metrics["threshold"], 0.0)  # the threshold applied


def test_a_warm_run_imports_neither_transformers_nor_scikit_learn_nor_pandas(sentence_model, sentiment_dir, tmp_path):
    """Features and body cached: the run needs no model, no tokenizer, no transformers (~3 s of import), and reads
    Parquet without pandas (~0.5 s). Its charts are drawn by a second process (drawing.py), so matplotlib is not
    imported either, and they are the very charts the cold run drew in this process."""
    import subprocess
    import sys

    settings = dict(model=str(sentence_model), dataset=str(sentiment_dir), max_length=MAX_LENGTH, device="cpu",
                    epochs=1, train_size=60, test_size=20, cache_dir=str(tmp_path / "cache"))
    headtune.train(output_dir=str(tmp_path / "cold"), **settings)
    code = ("import json, sys, headtune; settings = json.loads(sys.argv[1]); "
            "m = headtune.train(output_dir=sys.argv[2], **settings); "
            "print(json.dumps([m['environment']['model_loaded'], "
            "[name for name in ('transformers', 'sklearn', 'datasets', 'pandas', 'headtune.pooled_model', 'matplotlib') "
            "if name in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(settings), str(tmp_path / "warm")],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                           "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [False, []]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modeling_headtune.py", "README.md"):
        assert (tmp_path / "warm" / "model" / name).read_bytes() == (tmp_path / "cold" / "model" / name).read_bytes()
    cold_charts = sorted(p.name for p in (tmp_path / "cold" / "images").iterdir())
    assert len(cold_charts) == 5 and sorted(p.name for p in (tmp_path / "warm" / "images").iterdir()) == cold_charts
    for name in cold_charts:
        assert (tmp_path / "warm" / "images" / name).read_bytes() == (tmp_path / "cold" / "images" / name).read_bytes()


def ending_dir(folder: Path) -> Path:
    """Sentiment texts whose 2 class words come after 40 neutral ones: cut to MAX_LENGTH (32) tokens, the start of
    a text says nothing about its label and the end says everything."""
    def frame(n, seed):
        rng = random.Random(seed)
        return pd.DataFrame([(" ".join(rng.choices(FILLER, k=40) + rng.choices(POSITIVE if i % 2 else NEGATIVE, k=2)),
                              i % 2) for i in range(n)], columns=["text", "label"])

    folder.mkdir()
    frame(300, 1).to_parquet(folder / "train.parquet")
    frame(200, 2).to_parquet(folder / "test.parquet")
    return folder


def test_truncation_side_left_keeps_each_texts_end_in_training_predict_evaluate_and_pipeline(tiny_models, tmp_path):
    data = ending_dir(tmp_path / "ending")
    settings = dict(pooling="mean", epochs=4)
    right = train(tmp_path, data, tiny_models["distilbert"], output_dir=str(tmp_path / "right"), **settings)
    # the model's body is cached now, its tokenizer files as the right-side run saved them
    left = train(tmp_path, data, tiny_models["distilbert"], output_dir=str(tmp_path / "left"),
                 truncation_side="left", **settings)
    assert right["data"]["truncated"] == left["data"]["truncated"] == {"train": 300, "test": 200}
    assert left["backbone_pass"]["train"]["cached_shards"] == 0  # the right side's features are not the left's
    assert right["after"]["accuracy"] <= 0.6 and left["after"]["accuracy"] >= 0.65  # only the end has the label
    assert left["config"]["model"]["truncation_side"] == "left"

    model_dir = tmp_path / "left" / "model"
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["truncation_side"] == "left"
    assert "keeping their end" in (model_dir / "README.md").read_text()
    texts = pd.read_parquet(data / "test.parquet")["text"].tolist()[:6]
    ours = headtune.predict(texts, model=str(model_dir), device="cpu")
    assert all(row["truncated"] is True for row in ours)
    # the saved tokenizer cuts as training did: from the left, to the run's --max-length (its model_max_length)
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"] == MAX_LENGTH
    rows = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu",
                    trust_remote_code=True)(texts, truncation=True)
    for pred, scores in zip(ours, rows):
        by_label = {s["label"]: s["score"] for s in scores}
        assert by_label["pos"] == pytest.approx(pred["pos_prob"], abs=1e-5)
    end_only = [" ".join(text.split()[-(MAX_LENGTH - 2):]) for text in texts]  # what the left side keeps
    assert [r["pos_prob"] for r in headtune.predict(end_only, model=str(model_dir), device="cpu")] == \
        pytest.approx([r["pos_prob"] for r in ours], abs=1e-6)

    result = headtune.evaluate(model=str(model_dir), dataset=str(data), device="cpu",
                               cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "evaluated"))
    assert result["features"] == "cache" and result["accuracy"] == left["after"]["accuracy"]


def test_a_batch_size_beyond_the_rows_trains_on_all_of_them_at_once(tiny_models, sentiment_dir, tmp_path):
    whole = train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=60, test_size=20, batch_size=60,
                  output_dir=str(tmp_path / "whole"))
    huge = train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=60, test_size=20, batch_size=2**70,
                 output_dir=str(tmp_path / "huge"))  # past int64: torch could not take it
    assert [r["test"] for r in huge["history"]] == [r["test"] for r in whole["history"]]
    assert huge["after"] == whole["after"] and huge["lr"]["chosen"] == whole["lr"]["chosen"]


def test_a_head_whose_training_diverged_is_refused_not_saved(tiny_models, sentiment_dir, tmp_path):
    """(A rate that large, 1e308, is refused as a setting now: --lr is at most 10.)"""
    with pytest.raises(HeadtuneError, match="training diverged.*no longer finite.*smaller --lr or --weight-decay") as err:
        train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=60, test_size=20, lr=0.03,
              weight_decay=1e300)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_threshold_on_single_label_data_is_refused_as_predict_refuses_it(tiny_models, sentiment_dir, tmp_path):
    with pytest.raises(HeadtuneError, match="--threshold applies to multi-label data only.*drop --threshold"):
        train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=60, test_size=20, threshold=0.3)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("no_cache", [False, True])
def test_a_backbone_stored_in_bf16_trains_as_its_fp32_copy(tiny_models, sentiment_dir, tokenizer, tmp_path, no_cache):
    """Many Hub checkpoints store bf16 weights (config.json "dtype": "bfloat16"): caching the body stopped on
    numpy's missing bf16, and --no-cache on bf16 features meeting the fp32 pooler."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_models["bert"]).to(torch.bfloat16)
    for name in ("bf16", "fp32"):  # the same values, stored two ways
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        model.float()
    assert load_file(tmp_path / "bf16" / "model.safetensors")["pooler.dense.weight"].dtype == torch.bfloat16
    runs = {name: train(tmp_path, sentiment_dir, tmp_path / name, output_dir=str(tmp_path / f"out-{name}"),
                        train_size=60, test_size=40, epochs=1, no_cache=no_cache, cache_dir=str(tmp_path / name / "c"))
            for name in ("bf16", "fp32")}
    assert runs["bf16"]["test"]["confusion_matrix"] == runs["fp32"]["test"]["confusion_matrix"]
    saved = {name: load_file(tmp_path / f"out-{name}" / "model" / "model.safetensors") for name in runs}
    assert saved["bf16"].keys() == saved["fp32"].keys()
    for key, value in saved["bf16"].items():
        assert value.dtype == torch.float32 and torch.equal(value, saved["fp32"][key]), key


def test_settings_that_do_nothing_here_say_so(tiny_models, sentiment_dir, tmp_path, caplog):
    """BERT's mean reading has no pretrained head part to train, and a local folder has no Hub revision: both
    flags were ignored without a word."""
    with caplog.at_level(logging.WARNING):
        train(tmp_path, sentiment_dir, tiny_models["bert"], train_size=60, test_size=20, epochs=1, pooling="mean",
              train_pretrained_head=True, revision="main", depth="auto")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("headtune")]
    assert any("--train-pretrained-head has nothing to train: the mean reading of BERT" in w for w in warnings)
    # once, though --depth auto reads the model twice (every layer, then the chosen cut)
    assert sum("--revision applies to Hub models" in w for w in warnings) == 1


def test_a_run_without_validation_says_what_it_saves(tiny_models, sentiment_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        metrics = train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=60, test_size=20, epochs=2,
                        val_fraction=0.0, lr=0.03)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("headtune")]
    assert "no validation (--val-fraction 0): the last epoch's head is saved, uncalibrated" in lines
    assert metrics["kept_epoch"] == 2 and metrics["calibration"]["temperature"] is None


@pytest.mark.parametrize("pooling", ["native", "mean"])
def test_int8_backbone_on_bert_trains_and_saves_fp32_weights(pooling, tiny_models, sentiment_dir, tmp_path):
    """native reads BERT's frozen pooler, which was looked up in the quantized state dict: KeyError."""
    from safetensors.torch import load_file

    metrics = train(tmp_path, sentiment_dir, tiny_models["bert"], train_size=60, test_size=20, epochs=1,
                    precision="int8", pooling=pooling, lr=0.03)
    assert metrics["pooling"] == pooling
    weights = load_file(tmp_path / "out" / "model" / "model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())


def test_the_api_leaves_the_callers_random_state_as_it_was(tiny_models, sentiment_dir, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(tmp_path, sentiment_dir, tiny_models["distilbert"], train_size=40, test_size=20, epochs=1, lr=0.03)
    headtune.evaluate(model=str(tmp_path / "out" / "model"), dataset=str(sentiment_dir), device="cpu",
                      cache_dir=str(tmp_path / "cache"), size=20)
    assert torch.equal(torch.rand(3), expected)
