"""The saved model: the pretrained model's frozen body plus the trained head, as a checkpoint folder
that transformers loads.

Two kinds of folder, chosen by what the head reads (architectures.Reading):
- ordinary: the architecture's own `...ForSequenceClassification` expresses the reading, so the folder is
  what `save_pretrained` writes (config.json, model.safetensors, tokenizer files), tensor for tensor;
- pooled: a reading the class cannot express (mean pooling on BERT, say). The folder then holds
  headtune's small modeling file (pooled_model.py, copied as modeling_headtune.py) and names it in
  config.json's `auto_map`: transformers loads it with `trust_remote_code=True`; headtune loads it with
  its own copy of that file and runs no code from the folder.

The body (every weight outside the new head) is the same in every run on a model, so the run that
loads the model stores it in the cache beside the features; a later run whose features and body are
both cached writes its checkpoint from there, without loading the model.
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .architectures import Family, HeadPlan
from .architectures.parts import Chain
from .cache import FeatureCache, cache_key
from .config import FeatureConfig

BODY_FILE = "body.safetensors"
MODELING_FILE = "modeling_headtune.py"
POOLED_CLASS = "HeadtunePooledForSequenceClassification"
AUTO_MAP = {"AutoConfig": "modeling_headtune.HeadtunePooledConfig",
            "AutoModelForSequenceClassification": f"modeling_headtune.{POOLED_CLASS}"}


@dataclass
class Body:
    tensors: dict[str, torch.Tensor]  # the classification model's state dict without its new head's keys
    architecture: str  # the model class config.json names, e.g. "BertForSequenceClassification"
    parameters: int  # frozen parameters (buffers in the state dict are not parameters)


def own_head_keys(family: Family, config) -> set[str]:
    """The keys of the new head parts of the family's own class (built on the meta device: no memory)."""
    with torch.device("meta"):
        return set(Chain(family.new_head(config, config.num_labels)).state_dict())


def body_of(model: nn.Module, family: Family) -> Body:
    new = own_head_keys(family, model.config)
    # on the host: the cache's checksum reads the bytes, and the checkpoint is written from host memory
    tensors = {k: v.cpu() for k, v in model.state_dict().items() if k not in new}
    frozen = sum(p.numel() for name, p in model.named_parameters() if name not in new)
    return Body(tensors, type(model).__name__, frozen)


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


def _dtype(body: Body) -> torch.dtype:
    return next((t.dtype for t in body.tensors.values() if t.is_floating_point()), torch.float32)


def _labelled(config, label_names: list[str], problem_type: str):
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.problem_type = problem_type
    return config


def ordinary_config(config, plan: HeadPlan, label_names: list[str], body: Body, problem_type: str):
    """The backbone's config as its classifier's: labels, problem type, architecture, dtype and the settings
    the class needs for the reading, as `save_pretrained` records them."""
    config = _labelled(copy.deepcopy(config), label_names, problem_type)
    for key, value in plan.reading.class_config.items():
        setattr(config, key, value)
    config.architectures = [body.architecture]
    config.dtype = _dtype(body)
    return config


def pooled_config(config, plan: HeadPlan, label_names: list[str], body: Body, problem_type: str):
    from .pooled_model import HeadtunePooledConfig

    encoder = {k: v for k, v in config.to_dict().items()
               if k not in ("id2label", "label2id", "problem_type", "architectures", "auto_map", "_name_or_path")}
    pooled = HeadtunePooledConfig(encoder=encoder, pooling=plan.reading.pooling,
                                  classifier_dropout=plan.family.dropout(config))
    pooled = _labelled(pooled, label_names, problem_type)
    pooled.architectures = [POOLED_CLASS]
    pooled.auto_map = dict(AUTO_MAP)
    pooled.dtype = _dtype(body)
    return pooled


def pooled_state(body: Body, plan: HeadPlan, config) -> dict[str, torch.Tensor]:
    """The body under headtune's pooled model's names: the backbone's weights as `backbone.*`; the family's
    pretrained head parts (BERT's pooler, ...) are left out, since the pooled model reads no pooler."""
    family = plan.family
    dropped = set()
    if family.pretrained is not None:
        with torch.device("meta"):
            dropped = set(Chain(family.pretrained(config)).state_dict())
    prefix = family.prefix + "."
    state = {}
    for key, tensor in body.tensors.items():
        if key in dropped:
            continue
        if not key.startswith(prefix):  # never expected: a family whose body has weights outside its backbone
            raise ValueError(f"weight {key} is outside the {family.name} backbone '{family.prefix}'")
        state["backbone." + key[len(prefix):]] = tensor
    return state


def save_checkpoint(folder: Path, config, body: Body, head: nn.Module, plan: HeadPlan, label_names: list[str],
                    problem_type: str, tokenizer) -> None:
    """Write body + trained head + config + tokenizer as a checkpoint folder (ordinary or pooled)."""
    folder.mkdir(parents=True, exist_ok=True)
    head_state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    if plan.reading.own_head:
        # pretrained head parts that trained (--train-pretrained-head) replace their frozen copies in the body
        state = {k: v for k, v in body.tensors.items() if k not in head_state}
        out_config = ordinary_config(config, plan, label_names, body, problem_type)
    else:
        state = pooled_state(body, plan, config)
        out_config = pooled_config(config, plan, label_names, body, problem_type)
        shutil.copyfile(Path(__file__).with_name("pooled_model.py"), folder / MODELING_FILE)
    overlap = set(head_state) & set(state)
    if overlap:  # a head key in the body would be silently replaced; never expected
        raise ValueError(f"head keys also in the model body: {sorted(overlap)}")
    save_file({k: v.contiguous() for k, v in {**state, **head_state}.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    out_config.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save the tokenizer without the truncation and padding of its last call, which a fast tokenizer's
    tokenizer.json would otherwise record: the same tokenizer then saves the same files in every run."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(folder)
