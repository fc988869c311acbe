"""modeling: safe loading, and a frozen backbone with exactly the head left trainable."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from headtune.config import ModelConfig
from headtune.errors import HeadtuneError
from headtune.modeling import identity, load_for_training

LABELS = ["neg", "pos"]


def load(path, labels=LABELS, **cfg):
    cfg.setdefault("max_length", 64)
    return load_for_training(ModelConfig(model=str(path), device="cpu", **cfg), list(labels), seed=0)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("num_labels", [2, 3])
def test_distilbert_trains_exactly_pre_classifier_and_classifier(tiny_models, num_labels):
    labels = ["a", "b", "c"][:num_labels] if num_labels == 3 else LABELS
    model = load(tiny_models["distilbert"], labels).model
    dim = AutoConfig.from_pretrained(tiny_models["distilbert"]).dim
    expected = (dim * dim + dim) + (dim * num_labels + num_labels)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert trainable_names(model) == {"pre_classifier.weight", "pre_classifier.bias",
                                      "classifier.weight", "classifier.bias"}
    assert model.config.id2label == dict(enumerate(labels))
    assert model.config.label2id == {name: i for i, name in enumerate(labels)}


def test_bert_trains_only_classifier_and_keeps_pooler_frozen(tiny_models):
    model = load(tiny_models["bert"]).model
    hidden = AutoConfig.from_pretrained(tiny_models["bert"]).hidden_size
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == hidden * 2 + 2
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}
    pooler = list(model.bert.pooler.parameters())
    assert pooler and not any(p.requires_grad for p in pooler)
    # the pooler is pretrained (loaded from the checkpoint), not a fresh init
    saved = load_file(tiny_models["bert"] / "model.safetensors")
    key = next(k for k in saved if k.endswith("pooler.dense.weight"))
    assert torch.equal(model.bert.pooler.dense.weight, saved[key])


def test_roberta_trains_only_its_classification_head(tiny_models):
    model = load(tiny_models["roberta"]).model
    hidden = AutoConfig.from_pretrained(tiny_models["roberta"]).hidden_size
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == (hidden * hidden + hidden) + (hidden * 2 + 2)
    assert {n.split(".")[0] for n in trainable_names(model)} == {"classifier"}


def test_head_init_is_seeded(tiny_models):
    a = load(tiny_models["distilbert"]).model
    b = load(tiny_models["distilbert"]).model
    other = load_for_training(ModelConfig(model=str(tiny_models["distilbert"]), max_length=64, device="cpu"),
                              LABELS, seed=1).model
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, other.classifier.weight)


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


def test_identity_hashes_weights_by_content_not_by_path(tiny_models, tmp_path):
    loaded = load(tiny_models["distilbert"])
    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["distilbert"], copy)
    cfg_copy = ModelConfig(model=str(copy), max_length=64, device="cpu")
    assert identity(cfg_copy, loaded.model, loaded.tokenizer) == loaded.identity

    tensors = load_file(copy / "model.safetensors")
    name = next(iter(sorted(tensors)))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    from safetensors.torch import save_file

    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    changed = identity(cfg_copy, loaded.model, loaded.tokenizer)
    assert changed["weights"] != loaded.identity["weights"]
    assert {k: v for k, v in changed.items() if k != "weights"} == \
           {k: v for k, v in loaded.identity.items() if k != "weights"}


def test_identity_does_not_depend_on_the_last_tokenizer_call(tiny_models):
    loaded = load(tiny_models["distilbert"])
    cfg = ModelConfig(model=str(tiny_models["distilbert"]))
    loaded.tokenizer(["a text to cut short"] * 2, truncation=True, max_length=3, padding=True)
    assert identity(cfg, loaded.model, loaded.tokenizer) == loaded.identity
    loaded.tokenizer.add_tokens(["zzzyqx"])  # a real change of the tokenizer does change it
    assert identity(cfg, loaded.model, loaded.tokenizer)["tokenizer"] != loaded.identity["tokenizer"]
