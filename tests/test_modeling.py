"""modeling: safe loading, and a frozen backbone with exactly the head left trainable."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from headtune.config import ModelConfig
from headtune.errors import HeadtuneError
from headtune.architectures import HeadPlan, family_of
from headtune.checkpoint import body_of
from headtune.modeling import (ModelSource, check_model, fallback_head, identity, load_for_training, max_positions,
                               stored_parameters)

LABELS = ["neg", "pos"]


class Loaded:
    def __init__(self, model, tokenizer, cfg):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.identity = identity(cfg, Path(cfg.model), model.config.model_type)
        self.max_positions = max_positions(model, tokenizer)


def load(path, labels=LABELS, **cfg):
    """check_model, then load_for_training: as a run does."""
    cfg.setdefault("max_length", 64)
    model_cfg = ModelConfig(model=str(path), device="cpu", **cfg)
    tokenizer, _ = check_model(model_cfg)
    return Loaded(load_for_training(model_cfg, list(labels), 0, tokenizer).model, tokenizer, model_cfg)


def head_parameters(path, labels=LABELS) -> dict[str, int]:
    """The parameters of the head a run trains on this model (native reading), by checkpoint key."""
    config = AutoConfig.from_pretrained(path)
    family = family_of(config.model_type)
    plan = HeadPlan(family, family.reading(config, "native"), False)
    return {k: v.numel() for k, v in plan.new_head(config, len(labels), seed=0).state_dict().items()}


@pytest.mark.parametrize("num_labels", [2, 3])
def test_distilbert_head_is_exactly_pre_classifier_and_classifier(tiny_models, num_labels):
    labels = ["a", "b", "c"][:num_labels] if num_labels == 3 else LABELS
    loaded = load(tiny_models["distilbert"], labels)
    dim = AutoConfig.from_pretrained(tiny_models["distilbert"]).dim
    head = head_parameters(tiny_models["distilbert"], labels)
    assert set(head) == {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
    assert sum(head.values()) == (dim * dim + dim) + (dim * num_labels + num_labels)
    assert not any(p.requires_grad for p in loaded.model.parameters())  # the loaded model is frozen whole
    assert loaded.model.config.id2label == dict(enumerate(labels))
    assert loaded.model.config.label2id == {name: i for i, name in enumerate(labels)}


def test_bert_head_is_the_classifier_and_the_pretrained_pooler_stays_in_the_body(tiny_models):
    loaded = load(tiny_models["bert"])
    hidden = AutoConfig.from_pretrained(tiny_models["bert"]).hidden_size
    head = head_parameters(tiny_models["bert"])
    assert set(head) == {"classifier.weight", "classifier.bias"} and sum(head.values()) == hidden * 2 + 2
    body = body_of(loaded.model, family_of("bert"), loaded.tokenizer, loaded.max_positions)
    saved = load_file(tiny_models["bert"] / "model.safetensors")
    key = next(k for k in saved if k.endswith("pooler.dense.weight"))
    assert torch.equal(body.tensors["bert.pooler.dense.weight"], saved[key])  # pretrained, not a fresh init


def test_roberta_head_is_its_classification_head(tiny_models):
    hidden = AutoConfig.from_pretrained(tiny_models["roberta"]).hidden_size
    head = head_parameters(tiny_models["roberta"])
    assert {k.split(".")[0] for k in head} == {"classifier"}
    assert sum(head.values()) == (hidden * hidden + hidden) + (hidden * 2 + 2)


def test_max_length_above_the_model_limit_is_refused(tiny_models):
    # position embeddings: 128 (distilbert), 130 - 2 (roberta: positions start after the padding index)
    for arch in ("distilbert", "roberta"):
        assert load(tiny_models[arch], max_length=128).max_positions == 128
        with pytest.raises(HeadtuneError, match=r"--max-length 129 is above this model's limit of 128 tokens"):
            load(tiny_models[arch], max_length=129)


def _copy_config_and_tokenizer(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, dst / f.name)
    return dst


def test_pickle_only_folder_is_refused_naming_allow_pickle(tiny_models, tmp_path):
    folder = _copy_config_and_tokenizer(tiny_models["distilbert"], tmp_path / "pickled")
    torch.save(load_file(tiny_models["distilbert"] / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(HeadtuneError, match="--allow-pickle") as err:
        load(folder)
    assert "pytorch_model.bin" in str(err.value) and "\n" not in str(err.value)


def test_folder_without_config_json_is_refused(tiny_models, tmp_path):
    folder = tmp_path / "no-config"
    shutil.copytree(tiny_models["distilbert"], folder)
    (folder / "config.json").unlink()
    with pytest.raises(HeadtuneError, match="no config.json"):
        load(folder)


def test_folder_without_weights_or_missing_is_refused(tiny_models, tmp_path):
    folder = _copy_config_and_tokenizer(tiny_models["distilbert"], tmp_path / "no-weights")
    with pytest.raises(HeadtuneError, match="no model weights"):
        load(folder)
    with pytest.raises(HeadtuneError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_identity_hashes_weights_and_tokenizer_files_by_content_not_by_path(tiny_models, tmp_path):
    loaded = load(tiny_models["distilbert"])
    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["distilbert"], copy)
    cfg_copy = ModelConfig(model=str(copy), max_length=64, device="cpu")
    assert identity(cfg_copy, copy, "distilbert") == loaded.identity
    assert set(loaded.identity["tokenizer"]) >= {"tokenizer.json", "tokenizer_config.json"}

    tensors = load_file(copy / "model.safetensors")
    name = next(iter(sorted(tensors)))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    from safetensors.torch import save_file

    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    changed = identity(cfg_copy, copy, "distilbert")
    assert changed["weights"] != loaded.identity["weights"]
    assert {k: v for k, v in changed.items() if k != "weights"} == \
           {k: v for k, v in loaded.identity.items() if k != "weights"}

    tokenizer = type(loaded.tokenizer).from_pretrained(copy)  # a real change of the tokenizer changes it
    tokenizer.add_tokens(["zzzyqx"])
    tokenizer.save_pretrained(copy)
    assert identity(cfg_copy, copy, "distilbert")["tokenizer"] != loaded.identity["tokenizer"]


def test_hub_models_are_identified_by_repository_and_commit(tmp_path):
    snapshot = tmp_path / "models--org--name" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    ident = identity(ModelConfig(model="org/name", revision="v1"), snapshot, "bert")
    assert ident == {"model_type": "bert", "weights": {"repo": "org/name", "revision": "v1", "commit": "a" * 40}}


def test_model_source_checks_a_folder_without_loading_anything(tiny_models, tmp_path, monkeypatch):
    source = ModelSource(ModelConfig(model=str(tiny_models["bert"])))
    assert source.model_type == "bert" and source.folder == tiny_models["bert"]
    assert source.identity() == identity(ModelConfig(model=str(tiny_models["bert"])), tiny_models["bert"], "bert")
    assert source._checked is None  # nothing loaded yet
    with pytest.raises(HeadtuneError, match="no config.json"):
        ModelSource(ModelConfig(model=str(tmp_path)))


def test_fallback_head_never_takes_the_backbone(tiny_models):
    """A checkpoint lacking a few backbone weights (here BERT's pooler) leaves them new: the head is still only
    the classifier, not the whole backbone."""
    model = load_for_training(ModelConfig(model=str(tiny_models["bert"]), max_length=32), ["a", "b"], 0,
                              None).model
    assert fallback_head(model, {"bert.pooler.dense.weight", "classifier.weight", "classifier.bias"}) == \
        ("classifier",)


def test_stored_parameters_counts_every_number_in_the_weights(tiny_models):
    weights = load_file(tiny_models["distilbert"] / "model.safetensors")
    assert stored_parameters(tiny_models["distilbert"]) == sum(t.numel() for t in weights.values()) > 0


def test_a_model_without_a_position_limit_takes_the_tokenizers():
    """XLNet's config says max_position_embeddings = -1 (relative positions, no limit): the limit was -1 and
    every --max-length was refused ('pass --max-length -1 or less')."""
    from types import SimpleNamespace

    xlnet = SimpleNamespace(max_position_embeddings=-1, model_type="xlnet")
    assert max_positions(xlnet, SimpleNamespace(model_max_length=1000)) == 1000
    assert max_positions(xlnet, None) == 512  # nothing says: the usual encoder length


def test_identity_holds_the_config_so_an_edited_config_misses_the_cache(tiny_models, tmp_path):
    """The same weights with 1 attention head instead of 2 give other features: they shared a cache entry."""
    import json

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["bert"], copy)
    cfg = ModelConfig(model=str(copy), max_length=64, device="cpu")
    before = identity(cfg, copy, "bert")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "num_attention_heads": 1}))
    after = identity(cfg, copy, "bert")
    assert after["config"] != before["config"]
    assert {k: v for k, v in after.items() if k != "config"} == {k: v for k, v in before.items() if k != "config"}
