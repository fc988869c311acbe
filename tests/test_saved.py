"""saved.py: headtune.json, and loading ordinary and pooled classifier folders without running their code."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import headtune
from headtune.errors import HeadtuneError
from headtune.pooled_model import HeadtunePooledForSequenceClassification
from headtune.saved import load_classifier, read_settings

from saved_models import expected_probs, save_ordinary, save_pooled

CPU = torch.device("cpu")
TEXTS = ["a great film with a moving story", "dull mess", "the plot was quite boring and the actor awful"]
RAISING_MODULE = "raise RuntimeError('code from the model folder ran')\n"


def one_line(err: HeadtuneError) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- read_settings


def test_settings_of_a_folder_without_headtune_json(tmp_path):
    assert read_settings(tmp_path) == {}


def test_settings_are_headtune_json(tmp_path):
    settings = {"headtune_version": "0.1.0", "base_model": "x", "max_length": 64, "threshold": None,
                "problem_type": "single_label_classification", "data": {"rows": 3}}
    (tmp_path / "headtune.json").write_text(json.dumps(settings))
    assert read_settings(str(tmp_path)) == settings


@pytest.mark.parametrize("content, needles", [
    ("{not json", ("headtune.json is not valid JSON", "delete it")),
    ("[1, 2]", ("must hold a JSON object", "list")),
    ('{"max_length": 0}', ("'max_length' must be an integer above 0", "got 0")),
    ('{"max_length": "256"}', ("'max_length' must be an integer above 0",)),
    ('{"threshold": 1.5}', ("'threshold' must be a number from 0 to 1", "1.5")),
    ('{"problem_type": "regression"}', ("'problem_type' must be", "regression")),
])
def test_a_damaged_headtune_json_is_one_line(tmp_path, content, needles):
    (tmp_path / "headtune.json").write_text(content)
    with pytest.raises(HeadtuneError) as info:
        read_settings(tmp_path)
    message = one_line(info.value)
    assert str(tmp_path / "headtune.json") in message
    for needle in needles:
        assert needle in message, message


# --------------------------------------------------------------------------- ordinary checkpoints


def test_ordinary_checkpoint_loads_with_its_settings(tmp_path, tokenizer):
    folder = tmp_path / "model"
    saved = save_ordinary(folder, tokenizer, ["neg", "pos"], settings={"max_length": 64})
    model, tok, settings = load_classifier(folder, CPU)
    assert type(model).__name__ == "BertForSequenceClassification" and not model.training
    assert settings == {"max_length": 64}
    assert tok("great film")["input_ids"] == tokenizer("great film")["input_ids"]
    np.testing.assert_allclose(expected_probs(model, tok, TEXTS), expected_probs(saved, tokenizer, TEXTS), atol=1e-6)


def test_a_backbone_is_not_a_classifier(tiny_models):
    with pytest.raises(HeadtuneError) as info:
        load_classifier(tiny_models["bert"], CPU)
    assert "not a text-classification checkpoint (its architecture is BertModel)" in one_line(info.value)


def test_a_model_type_that_needs_the_folders_code_is_refused(tmp_path, tokenizer):
    folder = tmp_path / "model"
    save_ordinary(folder, tokenizer, ["neg", "pos"])
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="somebody_elses", auto_map={"AutoConfig": "modeling_x.XConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_x.py").write_text(RAISING_MODULE)
    with pytest.raises(HeadtuneError) as info:
        load_classifier(folder, CPU)
    message = one_line(info.value)
    assert "model type 'somebody_elses' is not one of transformers' own" in message
    assert "runs no code from a model folder" in message


# --------------------------------------------------------------------------- pooled checkpoints


@pytest.fixture
def no_folder_code(monkeypatch):
    """Fail the test if anything resolves the folder's config through AutoConfig (which asks whether to run
    the folder's code) or imports a module from the folder."""
    import transformers
    import transformers.dynamic_module_utils as dynamic

    def refuse(*args, **kwargs):
        raise AssertionError("tried to resolve the folder's custom code")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(dynamic, "get_class_from_dynamic_module", refuse)
    monkeypatch.setattr(dynamic, "get_class_in_module", refuse)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooled_checkpoint_loads_with_headtunes_own_class(tmp_path, tokenizer, no_folder_code, pooling):
    folder = tmp_path / "model"
    saved = save_pooled(folder, tokenizer, ["a", "b", "c"], pooling=pooling, modeling_file=RAISING_MODULE)
    model, tok, settings = load_classifier(folder, CPU)
    assert type(model) is HeadtunePooledForSequenceClassification  # the installed class, not the folder's
    assert model.config.pooling == pooling and not model.training and settings == {}
    assert type(tok).__name__ == type(tokenizer).__name__
    assert tok("a great film")["input_ids"] == tokenizer("a great film")["input_ids"]
    np.testing.assert_allclose(expected_probs(model, tok, TEXTS), expected_probs(saved, tokenizer, TEXTS), atol=1e-6)


def test_pooled_checkpoint_predicts_though_its_modeling_file_raises(tmp_path, tokenizer):
    folder = tmp_path / "model"
    saved = save_pooled(folder, tokenizer, ["neg", "pos"], modeling_file=RAISING_MODULE,
                        settings={"max_length": 64, "pooling": "mean", "loading": "trust_remote_code"})
    rows = headtune.predict(TEXTS, model=folder, device="cpu")
    assert [list(r) for r in rows] == [["text", "neg_prob", "pos_prob", "label"]] * len(TEXTS)
    for row, probs in zip(rows, expected_probs(saved, tokenizer, TEXTS, max_length=64)):
        assert [row["neg_prob"], row["pos_prob"]] == pytest.approx(probs, abs=1e-5)
        assert row["label"] == ["neg", "pos"][int(np.argmax(probs))]


def test_pooled_checkpoint_max_length_is_the_encoders_limit(tmp_path, tokenizer):
    folder = tmp_path / "model"
    save_pooled(folder, tokenizer, ["neg", "pos"])
    with pytest.raises(HeadtuneError) as info:
        headtune.predict(["hi"], model=folder, device="cpu", max_length=129)
    assert "limit of 128 tokens" in one_line(info.value)  # the encoder's max_position_embeddings


def test_pooled_checkpoint_with_pickle_weights(tmp_path, tokenizer):
    from safetensors.torch import load_file

    folder = tmp_path / "model"
    saved = save_pooled(folder, tokenizer, ["neg", "pos"])
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(HeadtuneError) as info:
        load_classifier(folder, CPU)
    assert "--allow-pickle" in one_line(info.value)
    model, tok, _ = load_classifier(folder, CPU, allow_pickle=True)
    np.testing.assert_allclose(expected_probs(model, tok, TEXTS), expected_probs(saved, tokenizer, TEXTS), atol=1e-6)


def test_pooled_checkpoint_with_a_broken_encoder_entry(tmp_path, tokenizer):
    folder = tmp_path / "model"
    save_pooled(folder, tokenizer, ["neg", "pos"])
    config = json.loads((folder / "config.json").read_text())
    config["encoder"] = {"hidden_size": 32}  # no model_type
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadtuneError) as info:
        load_classifier(folder, CPU)
    assert "no usable 'encoder' entry" in one_line(info.value)
