"""checkpoint: body + trained head written as save_pretrained would write it; the body's cache entry."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from conftest import Backbone
from headtune.checkpoint import BODY_FILE, body_cache, load_body, save_body, save_checkpoint, tokenizer_config_of_run
from headtune.config import FeatureConfig

LABELS = ["bad", "good", "meh"]


def load(path, pooling="native"):
    return Backbone(path, pooling=pooling, max_length=32, labels=LABELS)


def random_head(loaded):
    head = loaded.plan.new_head(loaded.model.config, len(LABELS), seed=1)
    with torch.no_grad():  # unlike a fresh head, nonzero biases: a swapped tensor would show
        for p in head.parameters():
            p.normal_(0, 0.3)
    return head


@pytest.mark.parametrize("arch", ["distilbert", "bert", "roberta"])
def test_ordinary_checkpoint_is_what_save_pretrained_writes(arch, tiny_models, tmp_path):
    loaded = load(tiny_models[arch])
    head = random_head(loaded)
    ours = tmp_path / "ours"
    body = loaded.body()
    save_checkpoint(ours, body, head, loaded.plan, LABELS, "single_label_classification", 32, "right")

    reference = tmp_path / "reference"  # the model with the trained head copied in, saved by transformers
    loaded.model.load_state_dict(head.state_dict(), strict=False)
    loaded.model.config.problem_type = "single_label_classification"
    loaded.model.save_pretrained(reference)
    loaded.tokenizer.model_max_length = 32  # the run's length, as the checkpoint's tokenizer records it
    loaded.tokenizer.save_pretrained(reference)

    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in reference.iterdir())
    mine, theirs = load_file(ours / "model.safetensors"), load_file(reference / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for key in theirs:
        assert mine[key].dtype == theirs[key].dtype and torch.equal(mine[key], theirs[key]), key
    assert json.loads((ours / "config.json").read_text()) == json.loads((reference / "config.json").read_text())
    # the tokenizer's config as transformers writes it, byte for byte, with the run's length and either side
    assert (ours / "tokenizer_config.json").read_bytes() == (reference / "tokenizer_config.json").read_bytes()
    loaded.tokenizer.truncation_side = "left"
    loaded.tokenizer.save_pretrained(reference)
    left = tokenizer_config_of_run(body.tokenizer_files["tokenizer_config.json"], 32, "left")
    assert left == (reference / "tokenizer_config.json").read_bytes() != (ours / "tokenizer_config.json").read_bytes()

    model, info = AutoModelForSequenceClassification.from_pretrained(ours, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.id2label == dict(enumerate(LABELS))


def test_pooled_checkpoint_loads_with_no_missing_or_unexpected_weights(tiny_models, tmp_path):
    from headtune.pooled_model import HeadtunePooledForSequenceClassification

    loaded = load(tiny_models["bert"], pooling="mean")
    assert not loaded.reading.own_head
    body = loaded.body()
    save_checkpoint(tmp_path / "m", body, random_head(loaded), loaded.plan, LABELS, "single_label_classification",
                    32, "right")
    model, info = HeadtunePooledForSequenceClassification.from_pretrained(tmp_path / "m", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    written = load_file(tmp_path / "m" / "model.safetensors")
    assert not [k for k in written if "pooler" in k]  # the pooled model reads no pooler
    assert len(written) == len(body.tensors) - 2 + 2  # body without the pooler's 2 tensors, plus the classifier's


def test_body_counts_frozen_parameters_and_leaves_out_the_head(tiny_models):
    loaded = load(tiny_models["distilbert"])
    body = loaded.body()
    head = random_head(loaded)
    assert body.architecture == "DistilBertForSequenceClassification"
    assert body.parameters == sum(p.numel() for p in loaded.model.parameters()) - sum(p.numel() for p in head.parameters())
    assert not set(body.tensors) & set(head.state_dict())
    assert set(body.tensors) | set(head.state_dict()) == set(loaded.model.state_dict())


def test_body_cache_round_trip_and_damaged_body(tiny_models, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("headtune"), "propagate", True)
    loaded = load(tiny_models["bert"])
    cfg = FeatureConfig(cache_dir=str(tmp_path))
    cache = body_cache(cfg, loaded.identity)
    assert load_body(cache) is None  # nothing stored yet
    body = loaded.body()
    save_body(cache, body)
    again = load_body(body_cache(cfg, loaded.identity))
    assert (again.architecture, again.parameters) == (body.architecture, body.parameters)
    assert again.tensors.keys() == body.tensors.keys()
    assert all(torch.equal(again.tensors[k], body.tensors[k]) for k in body.tensors)
    assert body_cache(FeatureConfig(cache_dir=str(tmp_path), no_cache=True), loaded.identity) is None
    other = dict(loaded.identity, weights={"model.safetensors": "0" * 64})
    assert body_cache(cfg, other).folder != cache.folder  # other weights, other entry

    path = cache.folder / BODY_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # truncated
    with caplog.at_level(logging.WARNING):
        assert load_body(cache) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("headtune")]
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]
    assert not path.exists()  # deleted, so the next run that loads the model stores it again


def test_body_tensors_live_on_the_host_and_share_cpu_memory(tiny_models):
    loaded = load(tiny_models["distilbert"])
    body = loaded.body()
    assert all(t.device.type == "cpu" for t in body.tensors.values())
    weight = loaded.model.distilbert.embeddings.word_embeddings.weight
    # on CPU no copy is made: the body is a view of the loaded weights
    assert body.tensors["distilbert.embeddings.word_embeddings.weight"].data_ptr() == weight.data_ptr()
