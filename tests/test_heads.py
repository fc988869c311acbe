"""heads: the head-only path (cached features + a standalone head) equals the full model's forward."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from headtune import heads
from headtune.config import FeatureConfig, ModelConfig
from headtune.features import extract_features
from headtune.heads import HEADS, head_parameters, head_spec, model_head, new_head
from headtune.modeling import load_for_training

MAX_LENGTH = 40
TEXTS = [
    "great",
    "the movie was awful and the plot was a mess",
    "a wonderful film with a brilliant script , superb music and a moving ending , really quite delightful",
    "the director and the actor made a boring , dull and dreadful story " * 3,  # longer than MAX_LENGTH
    "the camera was very good",
    "mess",
]


def load(path, labels=("neg", "pos"), seed=0):
    return load_for_training(ModelConfig(model=str(path), max_length=MAX_LENGTH, device="cpu"), list(labels), seed)


@pytest.mark.parametrize("arch", ["distilbert", "bert", "roberta"])
def test_standalone_head_on_cached_features_equals_full_model_logits(arch, tiny_models):
    loaded = load(tiny_models[arch], labels=("a", "b", "c"))
    model, spec = loaded.model, loaded.spec
    assert spec is HEADS[arch] and spec.cached
    head = new_head(spec, model.config, 3, seed=0)
    with torch.no_grad():  # a random head of realistic scale, so logits differ clearly between texts
        for p in head.parameters():
            p.normal_(0, 0.5)
    # the standalone head holds exactly the model's head keys: load it into the model
    model_head_keys = {k for k in model.state_dict() if k.split(".")[0] in spec.modules}
    assert set(head.state_dict()) == model_head_keys
    model.load_state_dict(head.state_dict(), strict=False)

    features, _ = extract_features(model, spec, loaded.tokenizer, TEXTS, max_length=MAX_LENGTH,
                                   cfg=FeatureConfig(no_cache=True, max_tokens_per_batch=50, shard_size=4),
                                   identity=loaded.identity, dtype=None)
    head.eval()
    with torch.no_grad():
        head_logits = head(features)

        model.eval()
        enc = loaded.tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        assert enc["attention_mask"].sum(1).tolist()[3] == MAX_LENGTH  # the long text is cut like in the pass
        full_logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits

    assert head_logits.dtype == full_logits.dtype == torch.float32
    assert head_logits.shape == full_logits.shape == (len(TEXTS), 3)
    assert torch.allclose(head_logits, full_logits, atol=1e-5, rtol=0)
    assert (full_logits.max(0).values - full_logits.min(0).values).min() > 1e-3  # not a constant output


@pytest.mark.parametrize("arch", ["distilbert", "bert", "roberta"])
def test_standalone_head_has_the_models_dropout_and_init_scale(arch, tiny_models):
    config = load(tiny_models[arch]).model.config
    head = new_head(HEADS[arch], config, 2, seed=0)
    rates = {m.p for m in head.modules() if isinstance(m, nn.Dropout)}
    assert rates == {config.seq_classif_dropout if arch == "distilbert" else config.hidden_dropout_prob}
    for name, tensor in head.state_dict().items():
        if name.endswith("bias"):
            assert torch.equal(tensor, torch.zeros_like(tensor)), name
        elif tensor.numel() > 500:  # N(0, initializer_range): the sample's spread is near it
            assert abs(tensor.std().item() - config.initializer_range) < 0.2 * config.initializer_range, name


def test_new_head_depends_on_the_seed_only(tiny_models):
    config = load(tiny_models["distilbert"]).model.config
    spec = HEADS["distilbert"]
    first = new_head(spec, config, 2, seed=7).state_dict()
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(5)
    again = new_head(spec, config, 2, seed=7).state_dict()
    other = new_head(spec, config, 2, seed=8).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["classifier.weight"], other["classifier.weight"])


def test_model_head_trains_only_the_head_modules_and_keeps_backbone_in_eval(tiny_models):
    loaded = load(tiny_models["distilbert"])
    model, spec = loaded.model, loaded.spec
    head = model_head(model, spec)
    assert [id(p) for p in head.parameters()] == [id(p) for p in head_parameters(model, spec)]
    head.train()
    in_head = {m for name in spec.modules for m in getattr(model, name).modules()}
    for module in model.modules():
        if module is not model:
            assert module.training == (module in in_head), module
    assert model.dropout.training and not model.distilbert.training
    head.eval()
    assert not any(m.training for m in model.modules())


def test_registered_spec_ignores_new_keys():
    model = SimpleNamespace(config=SimpleNamespace(model_type="bert"))
    assert head_spec(model, {"something.weight"}) is HEADS["bert"]
    assert HEADS["bert"].point == "pooler_output" and HEADS["bert"].modules == ("dropout", "classifier")


def test_unregistered_type_falls_back_to_modules_from_new_keys():
    model = SimpleNamespace(config=SimpleNamespace(model_type="no-such-arch"))
    spec = head_spec(model, {"score.weight", "score.bias", "pre_score.dense.weight", "pre_score.dense.bias"})
    assert spec.cached is False
    assert spec.features is None and spec.head is None
    assert spec.point == "full-model"
    assert spec.modules == ("pre_score", "score")
    assert head_spec(model, set()).modules == ()


def test_fallback_for_a_real_model_trains_the_new_modules(tiny_models, monkeypatch, caplog):
    monkeypatch.setattr(heads, "HEADS", {k: v for k, v in HEADS.items() if k != "distilbert"})
    monkeypatch.setattr(__import__("logging").getLogger("headtune"), "propagate", True)
    with caplog.at_level("WARNING", logger="headtune"):
        loaded = load(tiny_models["distilbert"])
    spec = loaded.spec
    assert spec.cached is False
    assert spec.modules == ("classifier", "pre_classifier")  # what loading left newly initialised
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable == {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("headtune")]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "\n" not in message and "'distilbert'" in message and "classifier, pre_classifier" in message


def test_head_parameters_are_exactly_the_head_modules():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 3)
            self.dropout = nn.Dropout(0.1)
            self.classifier = nn.Linear(3, 2)

    toy = Toy()
    spec = heads.HeadSpec("x", ("dropout", "classifier"), None, None)
    assert [id(p) for p in head_parameters(toy, spec)] == [id(toy.classifier.weight), id(toy.classifier.bias)]


def _ffn_input(model, arch):
    """The last layer's first feed-forward linear, whose input shape shows how many positions ran."""
    base = model.base_model
    return base.transformer.layer[-1].ffn.lin1 if arch == "distilbert" else base.encoder.layer[-1].intermediate.dense


@pytest.mark.parametrize("arch", ["distilbert", "bert", "roberta"])
def test_fast_pass_equals_full_forward_and_runs_the_last_layer_for_one_position(arch, tiny_models):
    loaded = load(tiny_models[arch])
    model, spec = loaded.model.eval(), loaded.spec
    batch = loaded.tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any()  # padding present: the mask must keep padded keys out of the trimmed attention
    modules = list(model.base_model.modules())  # every module, in order

    seen = []
    hook = _ffn_input(model, arch).register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    with torch.inference_mode():
        fast = spec.features(model, ids, mask)
        full = spec.reference(model, ids, mask)
    hook.remove()
    width = _ffn_input(model, arch).in_features
    assert seen == [(len(TEXTS), 1, width), (len(TEXTS), ids.shape[1], width)]  # fast: one position; full: all
    assert fast.shape == full.shape == (len(TEXTS), model.config.hidden_size)
    assert torch.allclose(fast, full, atol=1e-5, rtol=0)
    assert list(model.base_model.modules()) == modules  # the last layer is back in place


def test_fast_pass_restores_the_last_layer_after_an_error(tiny_models):
    loaded = load(tiny_models["bert"])
    encoder = loaded.model.base_model.encoder
    layers = encoder.layer
    with pytest.raises(Exception):
        loaded.spec.features(loaded.model, torch.tensor([[10**6]]), torch.tensor([[1]]))  # id beyond the vocab
    assert encoder.layer is layers and len(layers) == loaded.model.config.num_hidden_layers
