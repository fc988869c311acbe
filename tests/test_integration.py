"""The real thing: all-MiniLM-L6-v2 on real IMDb reviews, head-only, on CPU (about a minute)."""
from __future__ import annotations

import json

import pytest
from transformers import pipeline

import headtune
from conftest import SHARED_IMDB, minilm_path

EPOCHS = 3


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory):
    if not ((SHARED_IMDB / "train.parquet").is_file() and (SHARED_IMDB / "test.parquet").is_file()):
        pytest.fail(f"the IMDb data is missing: expected train.parquet and test.parquet in {SHARED_IMDB} "
                    f"(the shared data folder beside the repository); this test needs the real data")
    out = tmp_path_factory.mktemp("imdb-minilm")
    metrics = headtune.train(dataset=str(SHARED_IMDB), model=str(minilm_path()), output_dir=str(out / "run"),
                             cache_dir=str(out / "cache"), train_size=1000, test_size=500, max_length=128,
                             epochs=EPOCHS, device="cpu")
    return metrics, out / "run"


@pytest.mark.slow
def test_minilm_head_learns_imdb_sentiment(imdb_run):
    metrics, out = imdb_run
    before, after = metrics["before"]["accuracy"], metrics["after"]["accuracy"]
    assert after >= 0.60, metrics["history"]
    assert after >= before + 0.05, metrics["history"]
    assert [h["epoch"] for h in metrics["history"]] == list(range(EPOCHS + 1))

    assert metrics["data"]["train"] == 1000 and metrics["data"]["folds"] == 5
    assert metrics["data"]["test"] == 500
    # --pooling auto: the package's sentence-transformers config says mean, so headtune's pooled model
    assert metrics["pooling"] == "mean" and metrics["loading"] == "trust_remote_code"
    params = metrics["parameters"]
    assert params["cached_features"] is True and params["feature_point"] == "mean"
    assert params["trainable"] == 384 * 2 + 2  # a linear head on the mean of the last hidden states
    passes = metrics["backbone_pass"]
    assert passes["train"]["texts"] == 1000 and passes["train"]["computed_shards"] >= 1
    assert passes["train"]["truncated"] > 0  # many IMDb reviews are longer than 128 tokens
    assert passes["train"]["real_tokens"] <= 1000 * 128
    assert json.loads((out / "metrics.json").read_text())["after"] == metrics["after"]


@pytest.mark.slow
def test_minilm_checkpoint_matches_transformers_pipeline(imdb_run):
    _, out = imdb_run
    texts = ["A wonderful, moving film with superb acting.", "Dull, boring and far too long.", "It was a movie."]
    predictions = headtune.predict(texts, model=str(out / "model"), device="cpu")
    classifier = pipeline("text-classification", model=str(out / "model"), top_k=None, device="cpu",
                          trust_remote_code=True)
    for pred, scores in zip(predictions, classifier(texts)):
        by_label = {s["label"]: s["score"] for s in scores}
        assert by_label["neg"] == pytest.approx(pred["neg_prob"], abs=1e-5)
        assert by_label["pos"] == pytest.approx(pred["pos_prob"], abs=1e-5)
    assert predictions[0]["label"] == "pos" and predictions[1]["label"] == "neg"


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_own_test_scores_exactly(imdb_run, tmp_path):
    """The run's test sample (--test-size 500, --sample-seed 42) again, through `headtune evaluate --size 500`:
    the features come from the cache, so every score is the run's own, exactly."""
    metrics, out = imdb_run
    result = headtune.evaluate(model=str(out / "model"), dataset=str(SHARED_IMDB), size=500, max_length=128,
                               device="cpu", cache_dir=str(out.parent / "cache"), output_dir=str(tmp_path / "eval"))
    assert result["features"] == "cache"
    assert result["accuracy"] == metrics["after"]["accuracy"] and result["f1"] == metrics["after"]["f1"]
    assert result["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert result["per_class"] == metrics["test"]["per_class"]
    assert (tmp_path / "eval" / "images" / "CONFUSION_MATRIX.png").is_file()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == result["accuracy"]
