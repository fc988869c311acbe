"""Training the head: the backbone never changes, the head learns, the history is complete."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, DistilBertConfig

import headtune
from headtune.config import FeatureConfig, ModelConfig, TrainConfig
from headtune.features import extract_features, tokenize
from headtune.heads import HEADS, model_head, new_head
from headtune.modeling import load_for_training
from headtune.training import CachedInputs, FullModelInputs, lr_factor, predict_logits, train_head

MAX_LENGTH = 40
HEAD = ("pre_classifier", "classifier")
EPOCHS = 20
LR = 3e-3


@pytest.fixture(scope="module")
def learnable_distilbert(tmp_path_factory, tokenizer):
    """A tiny DistilBERT whose [CLS] features carry the sentiment words clearly enough for a head to learn.

    With the default init (std 0.02) a 2-layer random model's [CLS] barely depends on the other tokens;
    std 0.1 and dim 64 let a linear probe reach ~0.9 on the sentiment task.
    """
    folder = tmp_path_factory.mktemp("learnable") / "distilbert"
    torch.manual_seed(0)
    config = DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128, vocab_size=30522,
                              max_position_embeddings=128, initializer_range=0.1)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained(learnable_distilbert, sentiment_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    metrics = headtune.train(dataset=str(sentiment_dir), model=str(learnable_distilbert), output_dir=str(out),
                             max_length=MAX_LENGTH, device="cpu", epochs=EPOCHS, lr=LR, seed=0,
                             cache_dir=str(out / "cache"))
    return metrics, out


def test_backbone_is_bit_identical_and_head_changed(trained, learnable_distilbert):
    metrics, out = trained
    saved = load_file(out / "model" / "model.safetensors")
    backbone = load_file(learnable_distilbert / "model.safetensors")
    assert set(saved) == {f"distilbert.{k}" for k in backbone} | {f"{m}.{p}" for m in HEAD for p in ("weight", "bias")}
    for key, tensor in backbone.items():
        assert torch.equal(saved[f"distilbert.{key}"], tensor), key

    # the head it started from: the same seeded init that training began with
    initial = new_head(HEADS["distilbert"], AutoConfig.from_pretrained(learnable_distilbert), 2, seed=0).state_dict()
    assert set(initial) == {f"{m}.{p}" for m in HEAD for p in ("weight", "bias")}
    for key, tensor in initial.items():
        assert not torch.equal(saved[key], tensor), f"{key} did not train"
    assert metrics["parameters"]["trainable"] == (64 * 64 + 64) + (64 * 2 + 2)


def test_accuracy_clearly_improves(trained):
    metrics, _ = trained
    before, after = metrics["before"]["accuracy"], metrics["after"]["accuracy"]
    assert after >= before + 0.2, (before, after)
    assert after >= 0.75
    assert metrics["after"]["f1"] >= 0.7


def test_history_covers_epoch_0_to_E(trained):
    metrics, _ = trained
    history = metrics["history"]
    assert [h["epoch"] for h in history] == list(range(EPOCHS + 1))
    assert history[0]["train_loss"] is None
    losses = [h["train_loss"] for h in history[1:]]
    assert all(isinstance(x, float) and x > 0 for x in losses)
    assert losses[-1] < losses[0]
    assert {k: history[0][k] for k in ("accuracy", "f1")} == metrics["before"]
    assert {k: history[-1][k] for k in ("accuracy", "f1")} == metrics["after"]
    assert all(set(h) == {"epoch", "train_loss", "accuracy", "f1", "seconds"} for h in history)


def test_train_head_in_memory_touches_only_the_head(tiny_models, sentiment_dir):
    import pandas as pd

    train = pd.read_parquet(sentiment_dir / "train.parquet").head(64)
    test = pd.read_parquet(sentiment_dir / "test.parquet").head(32)
    loaded = load_for_training(ModelConfig(model=str(tiny_models["distilbert"]), max_length=MAX_LENGTH,
                                           device="cpu"), ["neg", "pos"], seed=0)
    model, spec = loaded.model, loaded.spec
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = new_head(spec, model.config, 2, seed=0)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    rng_before = torch.get_rng_state()

    def features(texts):
        return extract_features(model, spec, loaded.tokenizer, texts, max_length=MAX_LENGTH,
                                cfg=FeatureConfig(no_cache=True), identity=loaded.identity, dtype=None)[0]

    history = train_head(head, CachedInputs(head, features(train.text.tolist())), train.label.to_numpy().copy(),
                         CachedInputs(head, features(test.text.tolist())), test.label.to_numpy().copy(), 2,
                         TrainConfig(epochs=2, batch_size=16, seed=0))
    assert [r.epoch for r in history.epochs] == [0, 1, 2]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is untouched
    assert all(p.grad is None for p in model.parameters())  # no gradient reached the backbone
    changed = {k for k, v in head.state_dict().items() if not torch.equal(v, head_before[k])}
    assert changed == {f"{m}.{p}" for m in HEAD for p in ("weight", "bias")}
    assert not any(m.training for m in head.modules())  # left in eval mode
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout's seeding did not leak into the caller


def test_full_model_inputs_predict_in_original_order(tiny_models):
    loaded = load_for_training(ModelConfig(model=str(tiny_models["distilbert"]), max_length=MAX_LENGTH,
                                           device="cpu"), ["neg", "pos"], seed=0)
    model, spec = loaded.model, loaded.spec
    texts = ["great", "the plot was a mess and the actor was awful", "dull film", "a superb and moving story",
             "boring"]
    ids = tokenize(loaded.tokenizer, texts, MAX_LENGTH).ids
    logits = predict_logits(model_head(model, spec), FullModelInputs(model, ids, 0), batch_size=2)
    with torch.no_grad():
        one_by_one = torch.cat([model(input_ids=torch.tensor([x])).logits for x in ids])
    assert torch.allclose(logits, one_by_one, atol=1e-5, rtol=0)
    assert len(np.unique(logits[:, 0].numpy().round(6))) == len(texts)


def test_lr_factor_linear_decays_to_zero_and_constant_stays():
    linear = lr_factor("linear", 4)
    assert [linear(step) for step in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    constant = lr_factor("constant", 4)
    assert [constant(step) for step in range(5)] == [1.0] * 5


def test_lr_schedule_is_applied_per_step(tiny_models):
    """One step: both schedules take the full lr, so they agree; over several steps linear moves the head less."""
    loaded = load_for_training(ModelConfig(model=str(tiny_models["distilbert"]), max_length=MAX_LENGTH,
                                           device="cpu"), ["neg", "pos"], seed=0)
    model, spec = loaded.model, loaded.spec
    start = new_head(spec, model.config, 2, seed=0).state_dict()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(32, model.config.dim, generator=generator)
    labels = (features[:, 0] > 0).long().numpy()

    def head_after(schedule: str, epochs: int) -> dict[str, torch.Tensor]:
        head = new_head(spec, model.config, 2, seed=0)
        inputs = CachedInputs(head, features)
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=1e-2, lr_schedule=schedule, seed=0)
        train_head(head, inputs, labels, inputs, labels, 2, cfg)
        return head.state_dict()

    def distance(head):
        return sum((head[k] - start[k]).norm() ** 2 for k in head) ** 0.5

    # one batch per epoch. One epoch: a single step at factor 1.0 in both schedules.
    linear, constant = head_after("linear", 1), head_after("constant", 1)
    assert all(torch.equal(linear[k], constant[k]) for k in linear)
    # Two epochs: linear steps at 1.0 then 0.5, constant at 1.0 then 1.0.
    linear, constant = head_after("linear", 2), head_after("constant", 2)
    assert not all(torch.equal(linear[k], constant[k]) for k in linear)
    assert distance(linear) < distance(constant)
