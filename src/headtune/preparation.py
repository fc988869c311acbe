"""Before training: what the head reads for each split, the untrained head, and how to save the result.

A registered architecture (`prepare_cached`) has its features read from the cache, or computed in one
backbone pass and cached; its head is headtune's standalone copy of the head (architectures.HeadPlan).
The model is loaded only if something it alone can give is missing from the cache. Any other
architecture (`prepare_full_model`) trains its own new head modules in place, the whole frozen model
running on token batches every epoch: slower, and one learning rate only.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .architectures import Family, HeadPlan, Reading, backbone_features
from .checkpoint import Body, body_cache, body_of, own_head_keys, save_body, save_checkpoint, save_tokenizer
from .config import RunConfig
from .data import Splits
from .features import cached_features, extract_features, tokenize
from .modeling import (ConfigView, ModelSource, fallback_head, load_for_training, max_positions,
                       quantize_backbone, unfreeze)
from .training import CachedInputs, FullModelInputs, Inputs

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    head: nn.Module  # the untrained head: what trains
    inputs: dict[str, Inputs]  # per split ("train", "validation", "test"): what yields the head's logits
    passes: dict[str, dict]  # per split: the backbone pass's statistics
    parameters: dict  # counts and head layout, for metrics.json and the model card
    stackable: bool  # several learning rates can train at once (a standalone head)
    save: Callable[[Path, nn.Module], None]  # writes the checkpoint of a trained head into a folder
    model_loaded: bool  # False when features and model body all came from the cache
    loading: str  # "ordinary", or "trust_remote_code" for headtune's pooled model
    features: dict | None  # where the features came from (cache key parts), for headtune.json


def split_texts(splits: Splits) -> dict[str, list[str]]:
    texts = {"train": splits.train.texts, "test": splits.test.texts}
    if splits.validation is not None:
        texts["validation"] = splits.validation.texts
    return texts


def problem_type(splits: Splits) -> str:
    return "multi_label_classification" if splits.multi_label else "single_label_classification"


def prepare_cached(cfg: RunConfig, splits: Splits, source: ModelSource, body: Body | None, config: ConfigView,
                   family: Family, reading: Reading, device: torch.device, dtype: torch.dtype | None,
                   clock: dict) -> Prepared:
    """`body`: the model's body from the cache, if it was there. The model (and transformers) is loaded only
    when the body or some features are missing."""
    plan = HeadPlan(family, reading, cfg.model.train_pretrained_head)
    ident = source.identity()
    texts = split_texts(splits)
    lookup = dict(device=device, max_length=cfg.model.max_length, cfg=cfg.features, identity=ident, dtype=dtype)
    found = {name: cached_features(plan.point, split, **lookup) for name, split in texts.items()}
    loaded, no_cache = None, cfg.features.no_cache
    if body is None or not all(found.values()):
        tokenizer, _ = source.checked()
        loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer, reading.class_config,
                                   problem_type(splits))
        loaded.model.to(device)
        if body is None:
            body = body_of(loaded.model, family, tokenizer, max_positions(loaded.model, tokenizer))
            lacking = sorted(loaded.new_keys - own_head_keys(family, loaded.model.config))
            if lacking:  # initialised at random from the seed: features would depend on it, so none is cached
                log.warning("'%s' lacks backbone weights (%s), initialised at random from --seed; its features are "
                            "not cached", cfg.model.model, ", ".join(lacking[:4]) + (", ..." if len(lacking) > 4 else ""))
                found, no_cache = dict.fromkeys(found), True
            elif not no_cache:
                save_body(body_cache(cfg.features, ident), body)
        if dtype is torch.qint8:  # after the body was taken: the saved model keeps its fp32 weights
            quantize_backbone(loaded.model)
    clock["model"] = time.perf_counter()

    features, passes = {}, {}
    for name, split in texts.items():
        if found[name] is None:
            model = loaded.model
            frozen = _on(plan.frozen(model.config, model.state_dict()), device)
            reader = functools.partial(backbone_features, model, plan, frozen)
            found[name] = extract_features(reader, device, plan.point, source.checked()[0], split,
                                           max_length=cfg.model.max_length, cfg=replace(cfg.features, no_cache=no_cache),
                                           identity=ident, dtype=dtype, split=name)
        features[name], stats = found[name]
        passes[name] = vars(stats)
        log.info("backbone pass %s: %d texts, %.1fs (%d shards from cache, %d computed)", name, stats.texts,
                 stats.seconds, stats.cached_shards, stats.computed_shards)

    # The head trains on the CPU, wherever the backbone ran: it is small, the features are host tensors anyway
    # (cached), a run from the cache then never starts CUDA (~1-2 s), and every run gets the same head.
    head = plan.new_head(config, len(splits.label_names), cfg.train.seed, pretrained_state=body.tensors)
    trainable = sum(p.numel() for p in head.parameters())
    frozen = body.parameters - plan.pretrained_left_out(config)
    log.info("model %s (%s, %s): %s trainable head parameters (%s), %s frozen%s", cfg.model.model, source.model_type,
             family.name, f"{trainable:,}", ", ".join(head.paths), f"{frozen:,}",
             "" if loaded else "; features and body from the cache")
    cache_key_parts = None if no_cache else {"identity": ident, "point": plan.point, "dtype": str(dtype or torch.float32),
                                             "shard_size": cfg.features.for_device(device.type).shard_size}
    return Prepared(
        head, {name: CachedInputs(f, torch.device("cpu")) for name, f in features.items()}, passes,
        {"trainable": trainable, "frozen": frozen, "head_modules": head.paths, "cached_features": True,
         "feature_point": plan.point, "family": family.name},
        True,
        lambda folder, trained: save_checkpoint(folder, body, trained, plan, splits.label_names, problem_type(splits)),
        loaded is not None, "ordinary" if reading.own_head else "trust_remote_code", cache_key_parts)


def _on(module: nn.Module | None, device: torch.device) -> nn.Module | None:
    return None if module is None else module.to(device)


def prepare_full_model(cfg: RunConfig, splits: Splits, source: ModelSource, device: torch.device, clock: dict
                       ) -> Prepared:
    tokenizer, config = source.checked()
    loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer, None, problem_type(splits))
    model = loaded.model.to(device)
    modules = fallback_head(model, loaded.new_keys)
    log.warning("no headtune entry for model type '%s' (see `headtune models`): the full frozen model runs every "
                "epoch (slower), one learning rate; head modules: %s", config.model_type, ", ".join(modules))
    clock["model"] = time.perf_counter()
    inputs, passes = {}, {}
    for name, split in split_texts(splits).items():
        tok = tokenize(tokenizer, split, cfg.model.max_length)
        inputs[name] = FullModelInputs(model, tok.ids, tokenizer.pad_token_id or 0)
        passes[name] = {"texts": len(tok.ids), "truncated": int(tok.truncated.sum())}
    trainable, frozen = unfreeze(model, modules)
    model.eval()  # dropout on in the head only: train() on the head container below switches just those

    def save(folder: Path, trained: nn.Module) -> None:  # `trained` is the model's own head, trained in place
        model.save_pretrained(folder, safe_serialization=True)
        save_tokenizer(tokenizer, folder)

    return Prepared(nn.ModuleDict({name: getattr(model, name) for name in modules}), inputs, passes,
                    {"trainable": trainable, "frozen": frozen, "head_modules": list(modules), "cached_features": False,
                     "feature_point": "full-model", "family": None},
                    False, save, True, "ordinary", None)
