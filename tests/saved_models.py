"""Tiny saved classifiers, as `<run>/model/` folders look: an ordinary transformers checkpoint, or a
headtune "pooled" one (model_type headtune_pooled, modeling_headtune.py, auto_map). Random weights; the
tests compare against the model object that was saved, so its probabilities are the expected ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

import headtune.pooled_model
from conftest import tiny_config

AUTO_MAP = {"AutoConfig": "modeling_headtune.HeadtunePooledConfig",
            "AutoModelForSequenceClassification": "modeling_headtune.HeadtunePooledForSequenceClassification"}


def _labels(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def save_ordinary(folder: Path, tokenizer, names: list[str], problem_type: str | None = None,
                  settings: dict | None = None, arch: str = "bert", seed: int = 0):
    """A `...ForSequenceClassification` checkpoint; returns the saved model (eval mode)."""
    from transformers import AutoModelForSequenceClassification

    config = tiny_config(arch)
    config.num_labels = len(names)
    config.id2label, config.label2id = _labels(names).values()
    config.problem_type = problem_type
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    _spread_head(model)
    model.save_pretrained(folder)
    return _finish(folder, tokenizer, model, settings)


def save_pooled(folder: Path, tokenizer, names: list[str], pooling: str = "mean", problem_type: str | None = None,
                settings: dict | None = None, seed: int = 0, modeling_file: str | None = None):
    """A headtune pooled checkpoint; `modeling_file` replaces the copy of pooled_model.py in the folder."""
    from headtune.pooled_model import HeadtunePooledConfig, HeadtunePooledForSequenceClassification

    config = HeadtunePooledConfig(encoder=tiny_config("bert").to_dict(), pooling=pooling, problem_type=problem_type,
                                  **_labels(names))
    config.auto_map = AUTO_MAP
    torch.manual_seed(seed)
    model = HeadtunePooledForSequenceClassification(config).eval()
    _spread_head(model)
    model.save_pretrained(folder)
    source = Path(headtune.pooled_model.__file__)
    if modeling_file is None:
        shutil.copy(source, folder / "modeling_headtune.py")
    else:
        (folder / "modeling_headtune.py").write_text(modeling_file)
    return _finish(folder, tokenizer, model, settings)


def _spread_head(model) -> None:
    # a random tiny head gives near-uniform probabilities; larger weights make the order of labels clear-cut
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last_linear.weight.mul_(20)


def _finish(folder: Path, tokenizer, model, settings: dict | None):
    tokenizer.save_pretrained(folder)
    if settings is not None:
        (folder / "headtune.json").write_text(json.dumps(settings))
    return model


def expected_probs(model, tokenizer, texts: list[str], max_length: int = 128, multi_label: bool = False):
    """The saved model's probabilities, one text at a time, without headtune's batching."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0]
            rows.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).tolist())
    return rows
