"""The saved model: the pretrained model's frozen body plus the trained head, written as one
ordinary transformers checkpoint (config.json, model.safetensors, tokenizer files) that
`AutoModelForSequenceClassification.from_pretrained` and `pipeline` load.

The body (every weight outside the head) is the same in every run on a model, so the run
that loads the model stores it in the cache beside the features. A later run whose
features and body are both cached writes its checkpoint from there, without loading the
model or even importing its modeling code: that import alone is ~4 s of torch machinery.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .cache import FeatureCache, cache_key
from .config import FeatureConfig
from .heads import HeadSpec, count_parameters, is_head_key

BODY_FILE = "body.safetensors"


@dataclass
class Body:
    tensors: dict[str, torch.Tensor]  # the classification model's state dict without the head's keys
    architecture: str  # the model class config.json names, e.g. "BertForSequenceClassification"
    parameters: int  # frozen parameters (buffers in the state dict are not parameters)


def body_of(model: nn.Module, spec: HeadSpec) -> Body:
    # on the host: the cache's checksum reads the bytes, and the checkpoint is written from host memory
    tensors = {k: v.cpu() for k, v in model.state_dict().items() if not is_head_key(spec, k)}
    return Body(tensors, type(model).__name__, count_parameters(model, spec)[1])


def body_cache(cfg: FeatureConfig, identity: dict) -> FeatureCache | None:
    """The cache entry of a model's body: keyed by the weights' identity alone (not the texts)."""
    if cfg.no_cache:
        return None
    parts = {**identity, "content": "checkpoint body"}
    return FeatureCache(cfg.cache_dir, cache_key(parts), parts)


def load_body(cache: FeatureCache | None) -> Body | None:
    found = cache.read(cache.folder / BODY_FILE) if cache else None
    if found is None:
        return None
    tensors, meta = found
    return Body(tensors, meta["architecture"], int(meta["parameters"]))


def save_body(cache: FeatureCache, body: Body) -> None:
    cache.write(cache.folder / BODY_FILE, body.tensors,
                {"architecture": body.architecture, "parameters": str(body.parameters)})


def classifier_config(config, label_names: list[str], body: Body):
    """The backbone's config as a classifier's: labels, architecture and dtype, as `save_pretrained` records them."""
    config = copy.deepcopy(config)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.architectures = [body.architecture]
    config.dtype = next((t.dtype for t in body.tensors.values() if t.is_floating_point()), torch.float32)
    return config


def save_checkpoint(folder: Path, config, body: Body, head: nn.Module, tokenizer) -> None:
    """Write body + trained head + config + tokenizer as a checkpoint folder."""
    folder.mkdir(parents=True, exist_ok=True)
    overlap = set(head.state_dict()) & set(body.tensors)
    if overlap:  # a head key in the body would be silently replaced; never expected
        raise ValueError(f"head keys also in the model body: {sorted(overlap)}")
    state = {**body.tensors, **{k: v.detach().cpu() for k, v in head.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save the tokenizer without the truncation and padding of its last call, which a fast tokenizer's
    tokenizer.json would otherwise record: the same tokenizer then saves the same files in every run."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(folder)
