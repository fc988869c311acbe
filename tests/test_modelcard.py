"""model/README.md: a Hugging Face model card with front matter, training details, results and usage."""
from __future__ import annotations

import json

import pytest
import yaml

import headtune


@pytest.fixture(scope="module")
def card(tiny_models, sentiment_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    metrics = headtune.train(dataset=str(sentiment_dir), model=str(tiny_models["distilbert"]), output_dir=str(out),
                             cache_dir=str(out / "cache"), max_length=32, device="cpu", epochs=2, train_size=100,
                             test_size=50, overwrite=True)
    return metrics, (out / "model" / "README.md").read_text(), out / "model"


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_front_matter_names_library_task_metrics_and_tags(card):
    metrics, text, _ = card
    meta = front_matter(text)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta and "datasets" not in meta  # local folders are no Hub names
    assert {"headtune", "text-classification"} <= set(meta["tags"]) and meta["metrics"] == ["accuracy", "f1"]
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert {r["type"]: r["value"] for r in results} == {"accuracy": round(metrics["after"]["accuracy"], 4),
                                                        "f1": round(metrics["after"]["f1"], 4)}


def test_body_says_how_it_was_trained_and_how_to_load_it(card):
    metrics, text, _ = card
    params = metrics["parameters"]
    assert f"{params['trainable']:,} trainable parameters" in text and f"{params['frozen']:,} parameters" in text
    assert "pre_classifier" in text and "Pooling: native" in text
    assert f"learning rate {metrics['lr']['chosen']:g}, chosen on the out-of-fold scores" in text
    assert f"(kept: epoch {metrics['kept_epoch']}, by the best out-of-fold accuracy)" in text
    assert "5-fold cross-validation of the training texts" in text
    assert metrics["centred"] is True and "trained on features centred on the training mean" in text
    assert f"| after training | **{metrics['after']['accuracy']:.4f}** |" in text
    assert 'pipeline("text-classification", model="path/to/model", top_k=None)' in text
    assert "trust_remote_code" not in text.split("## Usage")[1]  # an ordinary checkpoint
    assert "Backbone pass:" not in text  # fp32 features: the folder's own model gives them


def test_the_usage_snippet_as_written_gives_predicts_probabilities_on_a_long_text(card):
    """Without truncation=True the pipeline cut nothing: a text past --max-length scored otherwise than predict
    (or failed past the encoder's positions)."""
    _, text, folder = card
    long_text = "the movie was quite boring and the plot a mess " * 20  # 202 tokens: over --max-length 32 and
    # over the 128 positions of the tiny model (uncut, it fails)
    code = text.split("```python\n")[1].split("```")[0]
    code = code.replace("path/to/model", str(folder)).replace("Put the text to classify here.", long_text)
    *body, last = code.strip().splitlines()
    scope: dict = {}
    exec("\n".join(body), scope)
    rows = eval(last, scope)
    predicted = headtune.predict([long_text], model=str(folder), device="cpu")[0]
    assert predicted["truncated"] is True
    rows = rows[0] if len(rows) == 1 else rows  # one text: its rows, or a list holding them
    assert len(rows) == 2
    for row in rows:
        assert abs(row["score"] - predicted[f"{row['label']}_prob"]) < 1e-5, (row, predicted)


def test_hub_names_appear_in_the_front_matter():
    from headtune.modelcard import model_card

    metrics = json.loads(json.dumps({
        "config": {"model": {"max_length": 128}, "train": {"epochs": 3, "keep": "best", "batch_size": 16,
                                                           "lr_schedule": "linear", "class_weight": "none", "seed": 1}},
        "metric_names": {"accuracy": "accuracy", "f1": "F1 (pos)"}, "after": {"accuracy": 0.9, "f1": 0.8},
        "before": {"accuracy": 0.5, "f1": 0.4}, "task": "single_label_classification", "labels": ["neg", "pos"],
        "data": {"train": 10, "validation": 0, "validation_source": None, "test": 5}, "kept_epoch": 3,
        "lr": {"mode": "fixed", "chosen": 0.03, "sweep": []}, "pooling": "mean", "calibration": None}))
    settings = {"base_model": "sentence-transformers/all-MiniLM-L6-v2", "data": {"dataset": "imdb"},
                "loading": "trust_remote_code", "pooling": "mean"}
    text = model_card(metrics, settings, {"frozen": 10, "trainable": 2, "head_modules": ["dropout", "classifier"],
                                          "feature_point": "mean"})
    meta = front_matter(text)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["datasets"] == ["imdb"]
    odd = dict(metrics, metric_names={"accuracy": "accuracy", "f1": "F1 (yes: good)\nreally"})  # YAML-breaking
    results = front_matter(model_card(odd, settings, {"frozen": 10, "trainable": 2, "head_modules": ["classifier"],
                                                      "feature_point": "mean"}))["model-index"][0]["results"][0]
    assert results["metrics"][1]["name"] == "test F1 (yes: good)\nreally"
    assert "trust_remote_code=True" in text.split("## Usage")[1]
    assert "(kept: epoch 3, the last epoch)" in text  # no validation split: nothing chose the epoch
    assert "centred" not in text  # metrics without "centred": a head trained on the raw features

    multi = dict(metrics, task="multi_label_classification", data=dict(metrics["data"], validation=2),
                 lr={"mode": "fixed", "chosen": 0.03, "chosen_by": "f1", "sweep": []})
    text = model_card(multi, settings, {"frozen": 10, "trainable": 2, "head_modules": ["classifier"],
                                        "feature_point": "mean"})
    assert "(kept: epoch 3, by the best validation micro F1)" in text
