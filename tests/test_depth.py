"""--depth auto: every layer's features from one pass, a depth chosen on the training sample alone, and then the
run of the model cut to that depth."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import headtune
from headtune.depth import choose, score_depths

FOLDS = np.arange(200) % 5


def layered(labels: np.ndarray, informative: int, depths: int = 4, width: int = 8, seed: int = 0) -> torch.Tensor:
    """(texts, depths, width) of noise, where depth `informative` (1-based) also carries the labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), depths, width))
    x[:, informative - 1, 0] += 3.0 * (np.asarray(labels) if labels.ndim == 1 else labels[:, 0])
    x[:, informative - 1, 1] += 3.0 * (0 if labels.ndim == 1 else labels[:, 1])
    return torch.as_tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("informative", [1, 3, 4])
def test_the_depth_that_holds_the_labels_scores_best(informative):
    labels = np.random.default_rng(1).integers(0, 2, 200)
    scores = score_depths(layered(labels, informative), labels, FOLDS, multi_label=False)
    assert len(scores) == 4 and choose(scores) == informative
    assert scores[informative - 1] > 0.85 and max(s for d, s in enumerate(scores, 1) if d != informative) < 0.7


def test_multi_label_rows_are_scored_by_micro_f1():
    labels = np.random.default_rng(2).integers(0, 2, (200, 3)).astype(np.float32)
    scores = score_depths(layered(labels, 2), labels, FOLDS, multi_label=True)
    assert choose(scores) == 2 and scores[1] > 0.75


def test_the_score_is_out_of_fold():
    # labels no feature holds: in-sample ridge fits noise, out-of-fold it is chance
    labels = np.random.default_rng(3).integers(0, 2, 200)
    noise = torch.as_tensor(np.random.default_rng(4).normal(size=(200, 2, 60)), dtype=torch.float32)
    assert max(score_depths(noise, labels, FOLDS, multi_label=False)) < 0.65


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_score_is_scikit_learns_out_of_fold_ridge(multi_label):
    # folds of unequal sizes, rows of a fold scattered: each depth's score is the best over the penalties of
    # scikit-learn's Ridge (standardised features and a column of ones, penalised alike) fitted without each fold
    from sklearn.linear_model import Ridge

    from headtune.depth import PENALTIES

    rng = np.random.default_rng(5)
    n, k = 150, 3
    folds = rng.permutation(np.arange(n) % 4)[:n - 7]
    n = len(folds)
    labels = rng.integers(0, 2, (n, k)).astype(np.float32) if multi_label else rng.integers(0, k, n)
    targets = labels.astype(np.float64) if multi_label else np.eye(k)[labels]
    features = torch.as_tensor(rng.normal(size=(n, 2, 12)) * rng.uniform(0.1, 9, 12) + rng.normal(size=12) * 4,
                               dtype=torch.float32)
    expected = []
    for d in range(2):
        x = features[:, d].double().numpy()
        x = np.hstack([(x - x.mean(0)) / x.std(0, ddof=1), np.ones((n, 1))])
        best = 0.0
        for penalty in PENALTIES:
            out = np.empty_like(targets)
            for fold in range(4):
                held = folds == fold
                ridge = Ridge(alpha=penalty * (n - held.sum()), fit_intercept=False, solver="cholesky")
                out[held] = ridge.fit(x[~held], targets[~held]).predict(x[held])
            if multi_label:
                hits = ((out >= 0.5) & (targets > 0.5)).sum()
                score = 2 * hits / ((out >= 0.5).sum() + (targets > 0.5).sum())
            else:
                score = (out.argmax(1) == labels).mean()
            best = max(best, float(score))
        expected.append(best)
    assert score_depths(features, labels, folds, multi_label) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < min(expected) < 0.9  # neither degenerate nor perfect: the comparison means something


def test_a_tie_goes_to_the_deeper_layer():
    assert choose([0.5, 0.8, 0.8, 0.7]) == 3
    assert choose([0.9]) == 1


# --------------------------------------------------------------------------- a run


def run(tmp_path, dataset, model, out, **settings):
    settings = {"max_length": 32, "device": "cpu", "epochs": 2, "train_size": 64, "test_size": 32, "seed": 3,
                "cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / out), **settings}
    return headtune.train(dataset=str(dataset), model=str(model), **settings)


def rounded(value, places: int = 4):
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {k: rounded(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, places) for v in value]
    return value


def same_run(metrics: dict, places: int | None = None) -> dict:
    """metrics.json without what a --depth auto run adds or does differently from the --depth N run it becomes;
    with `places`, numbers rounded (BERT's cut model reads its first token through the last-layer shortcut, the
    every-layer pass from the full hidden states: the same vectors to ~1e-7)."""
    metrics = json.loads(json.dumps(metrics))
    for key in ("timings_s", "backbone_pass", "depth", "config_file"):
        metrics.pop(key)
    for row in metrics["history"]:
        row.pop("seconds")
    metrics["environment"].pop("model_loaded")
    metrics["config"]["output"].pop("output_dir")
    metrics["config"]["features"].pop("cache_dir")
    return metrics if places is None else rounded(metrics, places)


def test_auto_becomes_the_run_of_the_chosen_depth(tiny_models, sentiment_dir, tmp_path, monkeypatch):
    auto = run(tmp_path, sentiment_dir, tiny_models["bert"], "auto", depth="auto")
    report = auto["depth"]
    assert report["mode"] == "auto" and report["layers"] == 2 and len(report["scores"]) == 2
    assert report["chosen"] == choose(report["scores"]) and auto["config"]["model"]["depth"] == report["chosen"]
    assert "5 folds of the training sample" in report["chosen_by"]
    assert auto["environment"]["model_loaded"] is True
    assert auto["backbone_pass"]["train"]["computed_shards"] > 0  # the every-layer pass, reported as train's
    card = (tmp_path / "auto" / "model" / "README.md").read_text()
    assert f"chosen by {report['chosen_by']})" in card

    # the same as asking for that depth (its own cache, computed by the cut model): the features handed on are
    # the cut model's, so the choices and the test scores are the same, and the weights equal to rounding
    explicit = run(tmp_path, sentiment_dir, tiny_models["bert"], "explicit", depth=report["chosen"],
                   cache_dir=str(tmp_path / "other-cache"))
    assert explicit["depth"] is None
    # the choice is a stage of its own in the timings (a cold run's every-layer pass is in it, not in "model")
    assert list(auto["timings_s"])[:5] == ["check", "data", "depth", "model", "features"]
    assert "depth" not in explicit["timings_s"]
    assert same_run(auto, 4) == same_run(explicit, 4)
    a, b = (load_file(tmp_path / out / "model" / "model.safetensors") for out in ("auto", "explicit"))
    # the two passes' features differ by rounding (~1e-6); three epochs of Adam's normalised steps carry that into
    # the head's weights at up to ~1e-5
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)

    # warm: the choice and the run come from the cache alone
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained",
                        lambda *args, **kwargs: pytest.fail("a warm run loaded the model"))
    warm = run(tmp_path, sentiment_dir, tiny_models["bert"], "warm", depth="auto")
    assert warm["environment"]["model_loaded"] is False and warm["depth"] == auto["depth"]
    assert same_run(warm) == same_run(auto)


def test_the_choice_never_sees_the_test_labels(tiny_models, sentiment_dir, tmp_path):
    import pandas as pd

    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for split in ("train", "test"):
        frame = pd.read_parquet(sentiment_dir / f"{split}.parquet")
        if split == "test":
            frame["label"] = 1 - frame["label"]
        frame.to_parquet(flipped / f"{split}.parquet")
    original = run(tmp_path, sentiment_dir, tiny_models["distilbert"], "original", depth="auto")
    other = run(tmp_path, flipped, tiny_models["distilbert"], "flipped", depth="auto")
    assert other["depth"]["scores"] == original["depth"]["scores"]
    a, b = (load_file(tmp_path / out / "model" / "model.safetensors") for out in ("original", "flipped"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_without_a_cache_the_last_layer_is_read(tiny_models, sentiment_dir, tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="headtune"):
        metrics = run(tmp_path, sentiment_dir, tiny_models["distilbert"], "out", no_cache=True)
    assert metrics["config"]["model"]["depth"] == "all" and metrics["depth"] is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--depth auto")]
    assert len(lines) == 1 and "--no-cache leaves no cache" in lines[0] and \
        lines[0].endswith("so the last layer is read (--depth all)")


def test_an_unregistered_architecture_reads_its_last_layer(tiny_convbert, sentiment_dir, tmp_path):
    metrics = run(tmp_path, sentiment_dir, tiny_convbert, "out", train_size=48, test_size=24, epochs=1)
    assert metrics["config"]["model"]["depth"] == "all" and metrics["depth"] is None


def test_a_lost_whole_model_body_is_stored_again_so_later_runs_stay_warm(tiny_models, sentiment_dir, tmp_path):
    # the whole model's body holds the config a run needs before it knows its depth: without it, every later run
    # would load the model's config and tokenizer (and import transformers) again
    run(tmp_path, sentiment_dir, tiny_models["distilbert"], "a", depth="auto")
    bodies = {p: json.loads((p.parent / "key.json").read_text()) for p in (tmp_path / "cache").glob("*/body.safetensors")}
    (whole,) = [p for p, key in bodies.items() if "depth" not in key]
    assert len(bodies) == 2  # and the chosen depth's
    whole.unlink()
    again = run(tmp_path, sentiment_dir, tiny_models["distilbert"], "b", depth="auto")
    assert again["environment"]["model_loaded"] is True and whole.exists()
    assert {s: p["computed_shards"] for s, p in again["backbone_pass"].items()} == {"train": 0, "test": 0}
    third = run(tmp_path, sentiment_dir, tiny_models["distilbert"], "c", depth="auto")
    assert third["environment"]["model_loaded"] is False
