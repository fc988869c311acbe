"""architectures: every registered family, tested from the registry itself (a new entry is tested without
editing this file): for every pooling, the head on cached features gives the saved checkpoint's logits, only
the head trains, and the saved folder loads in transformers' pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import save_pretrained_like
from headtune.architectures import FAMILIES, READABLE, HeadPlan, backbone_features, family_of
from headtune.architectures.parts import Chain, final_linear
from headtune.checkpoint import body_of, own_head_keys, save_checkpoint
from headtune.config import FeatureConfig, ModelConfig
from headtune.features import extract_features
from headtune.modeling import identity, load_for_training

MODEL_TYPES = [t for family in FAMILIES for t in family.model_types]
MAX_LENGTH = 40
TEXTS = ["great",
         "the movie was awful and the plot was a mess",
         "a wonderful film with a brilliant script , superb music and a moving ending , really quite delightful",
         "the director and the actor made a boring , dull and dreadful story " * 3,  # longer than MAX_LENGTH
         "the camera was very good"]
LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tokenizer):
    """{model_type: folder} of tiny pretrained-like checkpoints, built on first use."""
    root = tmp_path_factory.mktemp("pretrained")
    made = {}

    def get(model_type):
        if model_type not in made:
            made[model_type] = save_pretrained_like(model_type, root / model_type, tokenizer)
        return made[model_type]
    return get


def _load(folder, reading, train_pretrained=False):
    cfg = ModelConfig(model=str(folder), max_length=MAX_LENGTH, device="cpu", train_pretrained_head=train_pretrained)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    loaded = load_for_training(cfg, LABELS, 0, tokenizer, reading.class_config)
    return cfg, tokenizer, loaded


def _features(model, plan, tokenizer, cfg):
    reader = lambda ids, mask: backbone_features(model, plan, plan.frozen(model.config, model.state_dict()), ids, mask)
    features, _ = extract_features(reader, torch.device("cpu"), plan.point, tokenizer, TEXTS, max_length=MAX_LENGTH,
                                   cfg=FeatureConfig(no_cache=True, max_tokens_per_batch=60, shard_size=3),
                                   identity=identity(cfg, Path(cfg.model), model.config.model_type), dtype=None)
    return features


def _saved_model(folder, own_head: bool):
    if own_head:
        from transformers import AutoModelForSequenceClassification
        return AutoModelForSequenceClassification.from_pretrained(folder).eval()
    from headtune.pooled_model import HeadtunePooledForSequenceClassification
    return HeadtunePooledForSequenceClassification.from_pretrained(folder).eval()


@pytest.mark.parametrize("pooling", READABLE)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_cached_features_give_the_saved_checkpoints_logits(model_type, pooling, pretrained, tmp_path):
    family = family_of(model_type)
    folder = pretrained(model_type)
    from transformers import AutoConfig
    reading = family.reading(AutoConfig.from_pretrained(folder), pooling)
    cfg, tokenizer, loaded = _load(folder, reading)
    model = loaded.model
    plan = HeadPlan(family, reading, False)
    # loading left exactly the family's new head parts new: the checkpoint lacks the head, nothing else
    assert loaded.new_keys == own_head_keys(family, model.config)
    assert not any(p.requires_grad for p in model.parameters())

    features = _features(model, plan, tokenizer, cfg)
    body = body_of(model, family, tokenizer, 128)
    head = plan.new_head(model.config, len(LABELS), seed=0, pretrained_state=body.tensors)
    with torch.no_grad():  # a random head of realistic scale, so logits differ clearly between texts
        for p in head.parameters():
            p.normal_(0, 0.5)
    head.eval()
    assert set(head.state_dict()) == plan.head_keys(model.config, len(LABELS))
    save_checkpoint(tmp_path / "model", body, head, plan, LABELS, "single_label_classification", MAX_LENGTH, "right")

    saved = _saved_model(tmp_path / "model", reading.own_head)
    enc = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    assert enc["attention_mask"].sum(1).tolist()[3] == MAX_LENGTH  # the long text is cut as in the pass
    with torch.no_grad():
        full = saved(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        cached = head(features)
    assert cached.shape == full.shape == (len(TEXTS), len(LABELS))
    assert torch.allclose(cached, full, atol=1e-5, rtol=0), (cached - full).abs().max()
    assert (full.max(0).values - full.min(0).values).min() > 1e-3  # not a constant output

    # the saved weights outside the head are the pretrained ones, unchanged
    from safetensors.torch import load_file
    written = load_file(tmp_path / "model" / "model.safetensors")
    original = model.state_dict()
    if reading.own_head:
        assert set(written) == set(body.tensors) | set(head.state_dict())
        for key, tensor in body.tensors.items():
            assert torch.equal(written[key], original[key]), key
    else:  # headtune's pooled model: the backbone under backbone.*, no pretrained pooler
        config = json.loads((tmp_path / "model" / "config.json").read_text())
        assert config["model_type"] == "headtune_pooled" and config["pooling"] == reading.pooling
        assert "AutoModelForSequenceClassification" in config["auto_map"]
        assert (tmp_path / "model" / "modeling_headtune.py").read_bytes() == \
            (__import__("pathlib").Path(__import__("headtune").__file__).with_name("pooled_model.py")).read_bytes()
        backbone = {k[len(family.prefix) + 1:]: v for k, v in original.items() if k.startswith(family.prefix + ".")}
        for key, tensor in written.items():
            if key.startswith("backbone."):
                assert torch.equal(tensor, backbone[key[len("backbone."):]]), key


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_saved_folder_loads_in_pipeline_with_the_heads_probabilities(model_type, pretrained, tmp_path):
    """Every family, the native reading and one headtune's pooled model needs (mean, where the class has no mean)."""
    from transformers import AutoConfig, pipeline

    family = family_of(model_type)
    folder = pretrained(model_type)
    for pooling in ("native", "mean"):
        reading = family.reading(AutoConfig.from_pretrained(folder), pooling)
        cfg, tokenizer, loaded = _load(folder, reading)
        plan = HeadPlan(family, reading, False)
        body = body_of(loaded.model, family, tokenizer, 128)
        head = plan.new_head(loaded.model.config, len(LABELS), seed=1, pretrained_state=body.tensors)
        with torch.no_grad():
            final_linear(head).weight.normal_(0, 2.0)
        head.eval()
        out = tmp_path / pooling
        save_checkpoint(out, body, head, plan, LABELS, "single_label_classification", MAX_LENGTH, "right")
        expected = torch.softmax(head(_features(loaded.model, plan, tokenizer, cfg)), -1)
        classify = pipeline("text-classification", model=str(out), top_k=None, device="cpu",
                            trust_remote_code=not reading.own_head)
        rows = classify(TEXTS, truncation=True, max_length=MAX_LENGTH)
        got = torch.tensor([[next(r["score"] for r in row if r["label"] == name) for name in LABELS] for row in rows])
        assert torch.allclose(got, expected, atol=1e-5), (pooling, (got - expected).abs().max())


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.pretrained is not None], ids=lambda f: f.name)
def test_train_pretrained_head_starts_from_the_pretrained_weights(family, pretrained, tmp_path):
    """--train-pretrained-head: the pretrained head parts join the head (their pretrained values), the features
    stop before them, and the saved checkpoint still gives the head's logits."""
    from transformers import AutoConfig

    model_type = family.model_types[0]
    folder = pretrained(model_type)
    reading = family.reading(AutoConfig.from_pretrained(folder), "native")
    assert reading.through_pretrained and reading.own_head
    cfg, tokenizer, loaded = _load(folder, reading, train_pretrained=True)
    frozen_plan, plan = HeadPlan(family, reading, False), HeadPlan(family, reading, True)
    assert plan.point != frozen_plan.point  # other features: another cache entry
    body = body_of(loaded.model, family, tokenizer, 128)
    head = plan.new_head(loaded.model.config, len(LABELS), seed=0, pretrained_state=body.tensors)
    pretrained_keys = set(head.state_dict()) - set(frozen_plan.new_head(loaded.model.config, 3, 0).state_dict())
    assert pretrained_keys and all(torch.equal(head.state_dict()[k], body.tensors[k]) for k in pretrained_keys)
    with torch.no_grad():
        final_linear(head).weight.normal_(0, 1.0)
        head.get_submodule(plan.parts(loaded.model.config, 3)[0][0][0]).apply(
            lambda m: m.weight.add_(0.1) if isinstance(m, nn.Linear) else None)  # training moved it
    head.eval()
    save_checkpoint(tmp_path / "model", body, head, plan, LABELS, "single_label_classification", MAX_LENGTH, "right")
    saved = _saved_model(tmp_path / "model", True)
    enc = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        full = saved(**{k: enc[k] for k in ("input_ids", "attention_mask")}).logits
        cached = head(_features(loaded.model, plan, tokenizer, cfg))
    assert torch.allclose(cached, full, atol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_new_head_is_seeded_initialised_as_transformers_does_and_has_the_family_dropout(model_type):
    from conftest import tiny_config

    family, config = family_of(model_type), tiny_config(model_type)
    plan = HeadPlan(family, family.reading(config, "native"), False)
    first = plan.new_head(config, 3, seed=7).state_dict()
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(5)
    again = plan.new_head(config, 3, seed=7).state_dict()
    other = plan.new_head(config, 3, seed=8).state_dict()
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if k.endswith("weight"))
    for name, tensor in first.items():
        if name.endswith("bias"):
            assert torch.equal(tensor, torch.zeros_like(tensor)), name
        else:
            assert tensor.abs().max() < 1.0 and tensor.std() > 0, name
    dropouts = {m.p for m in plan.new_head(config, 3, seed=7).modules() if isinstance(m, nn.Dropout)}
    assert family.dropout(config) in dropouts


def test_chain_registers_parts_under_their_checkpoint_paths():
    chain = Chain([("bert.pooler", nn.Linear(4, 4)), (None, torch.tanh), ("dropout", nn.Dropout(0.1)),
                   ("classifier", nn.Linear(4, 2))])
    assert list(chain.state_dict()) == ["bert.pooler.weight", "bert.pooler.bias", "classifier.weight",
                                        "classifier.bias"]
    assert chain.paths == ["bert.pooler", "dropout", "classifier"]
    x = torch.randn(3, 4)
    chain.eval()
    expected = chain.classifier(torch.tanh(chain.bert.pooler(x)))
    assert torch.equal(chain(x), expected)
    assert final_linear(chain) is chain.classifier


def test_trimmed_last_layer_equals_the_full_forward_and_runs_the_feed_forward_for_one_position(pretrained):
    """The cls shortcut: a hook sees the last layer's feed-forward on one position only."""
    for family in (f for f in FAMILIES if f.trimmed):
        folder = pretrained(family.model_types[0])
        from transformers import AutoConfig
        reading = family.reading(AutoConfig.from_pretrained(folder), "cls")
        _, tokenizer, loaded = _load(folder, reading)
        model, plan = loaded.model, HeadPlan(family, reading, False)
        enc = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        layers = family.layers(model.base_model).layer
        seen = []
        last_ffn = [m for m in layers[-1].modules() if isinstance(m, nn.Linear)][-1]
        hook = last_ffn.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        with torch.no_grad():
            trimmed = backbone_features(model, plan, None, enc["input_ids"], enc["attention_mask"])
            hook.remove()
            full = backbone_features(model, plan, None, enc["input_ids"], enc["attention_mask"], trim=False)
        assert seen and seen[0][1] == 1, (family.name, seen)
        assert torch.allclose(trimmed, full, atol=1e-5), family.name
        assert len(family.layers(model.base_model).layer) == len(layers)  # restored


@pytest.mark.parametrize("pooling", READABLE)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_depth_cut_saves_the_cut_model_whose_logits_the_cached_features_give(model_type, pooling, pretrained,
                                                                              tmp_path):
    from dataclasses import replace

    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    family, folder = family_of(model_type), pretrained(model_type)
    config = AutoConfig.from_pretrained(folder)
    layers = config.num_hidden_layers
    assert layers >= 2
    reading = family.reading(config, pooling)
    plan = HeadPlan(family, reading, False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    whole = ModelConfig(model=str(folder), max_length=MAX_LENGTH, device="cpu")
    cut = replace(whole, depth=layers - 1)
    model = load_for_training(cut, LABELS, 0, tokenizer, {**reading.class_config,
                                                          **family.cut_config(config, layers - 1)}).model
    full = load_for_training(whole, LABELS, 0, tokenizer, reading.class_config).model
    assert model.config.num_hidden_layers == layers - 1

    features = _features(model, plan, tokenizer, cut)
    assert not torch.allclose(features, _features(full, plan, tokenizer, whole), atol=1e-3)  # another layer read
    body = body_of(model, family, tokenizer, 128)
    head = plan.new_head(model.config, len(LABELS), seed=0, pretrained_state=body.tensors)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.5)
    head.eval()
    save_checkpoint(tmp_path / "model", body, head, plan, LABELS, "single_label_classification", MAX_LENGTH, "right")

    saved = _saved_model(tmp_path / "model", reading.own_head)
    enc = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = saved(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.allclose(head(features), logits, atol=1e-5, rtol=0)
    # the file holds the cut model: no more weights than the whole one's body (fewer, but for ALBERT, whose layers
    # share theirs), and a config of layers - 1 layers
    written = load_file(tmp_path / "model" / "model.safetensors")
    kept = sum(t.numel() for k, t in written.items() if k not in head.state_dict())
    assert kept == body.parameters - plan.pretrained_left_out(model.config) <= \
        body_of(full, family).parameters - plan.pretrained_left_out(full.config)
    saved_config = json.loads((tmp_path / "model" / "config.json").read_text())
    encoder = saved_config.get("encoder", saved_config)  # headtune's pooled model nests the encoder's config
    assert AutoConfig.for_model(**{**encoder, "model_type": model_type}).num_hidden_layers == layers - 1


@pytest.mark.parametrize("pooling", READABLE)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_layers_features_are_what_the_model_cut_to_that_layer_reads(model_type, pooling, pretrained):
    # --depth auto scores every depth from one forward of the whole model, then trains on the chosen depth's
    # vectors as the features of the model cut to it: they must be the cut model's own
    from dataclasses import replace

    from transformers import AutoConfig, AutoTokenizer

    from headtune.architectures import layer_features

    family, folder = family_of(model_type), pretrained(model_type)
    config = AutoConfig.from_pretrained(folder)
    reading = family.reading(config, pooling)
    plan = HeadPlan(family, reading, False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    whole = ModelConfig(model=str(folder), max_length=MAX_LENGTH, device="cpu")
    model = load_for_training(whole, LABELS, 0, tokenizer, reading.class_config).model
    enc = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        every = layer_features(model, plan, plan.frozen(model.config, model.state_dict()), enc["input_ids"],
                               enc["attention_mask"])
    assert every.shape == (len(TEXTS), config.num_hidden_layers, config.hidden_size)
    for depth in range(1, config.num_hidden_layers + 1):
        cut = load_for_training(replace(whole, depth=depth), LABELS, 0, tokenizer,
                                {**reading.class_config, **family.cut_config(config, depth)}).model
        with torch.no_grad():
            own = backbone_features(cut, plan, plan.frozen(cut.config, cut.state_dict()), enc["input_ids"],
                                    enc["attention_mask"])
        assert torch.allclose(every[:, depth - 1], own, atol=1e-5, rtol=0), (depth, (every[:, depth - 1] - own).abs().max())
    assert not torch.allclose(every[:, 0], every[:, -1], atol=1e-3)
