"""Before training: what the head reads for each split, the untrained head, and how to save the result.

A registered architecture (`prepare_cached`) has its features read from the cache, or computed in one
backbone pass and cached; its head is headtune's standalone copy of the head (architectures.HeadPlan).
The model is loaded only if something it alone can give is missing from the cache. The pass can also run
in parts beforehand (`fill_cache_part`: the shards a predicate selects, stored in the cache), after which
`prepare_cached` finds everything there. Any other
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
from .errors import HeadtuneError
from .features import PassStats, cached_features, extract_features, features_identity, fill_cache, missing_shards, \
    tokenize
from .modeling import (ConfigView, LoadedModel, ModelSource, fallback_head, load_for_training, max_positions,
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


@dataclass
class Filled:
    """What fill_cache_part did: the statistics of its part of each split's pass, and whether it loaded the model."""

    passes: dict[str, PassStats]
    model_loaded: bool

    @classmethod
    def combine(cls, parts: list[Filled]) -> Filled:
        """The parts, over disjoint sets of shards, as one pass."""
        return cls({name: PassStats.combine([part.passes[name] for part in parts]) for name in parts[0].passes},
                   any(part.model_loaded for part in parts))


def split_texts(splits: Splits) -> dict[str, list[str]]:
    texts = {"train": splits.train.texts, "test": splits.test.texts}
    if splits.validation is not None:
        texts["validation"] = splits.validation.texts
    return texts


def problem_type(splits: Splits) -> str:
    return "multi_label_classification" if splits.multi_label else "single_label_classification"


def _load_model(cfg: RunConfig, splits: Splits, source: ModelSource, family: Family, reading: Reading,
                device: torch.device) -> tuple[object, LoadedModel, list[str]]:
    """(tokenizer, the loaded model on `device`, the backbone weights its checkpoint lacks)."""
    tokenizer, config = source.checked()
    depth = cfg.model.depth  # auto loads the whole model: depth.py reads every layer of it
    cut = family.cut_config(config, depth) if isinstance(depth, int) else {}
    loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer,
                               {**reading.class_config, **cut}, problem_type(splits))
    loaded.model.to(device)
    # initialised at random from the seed: features would depend on it, so none may be cached
    lacking = sorted(loaded.new_keys - own_head_keys(family, loaded.model.config))
    return tokenizer, loaded, lacking


def _lacking(cfg: RunConfig, lacking: list[str]) -> str:
    names = ", ".join(lacking[:4]) + (", ..." if len(lacking) > 4 else "")
    return f"'{cfg.model.model}' lacks backbone weights ({names})"


def uncacheable(cfg: RunConfig, lacking: list[str]) -> HeadtuneError:
    """Why several processes cannot share the features of a model whose backbone is partly random."""
    return HeadtuneError(f"{_lacking(cfg, lacking)}, initialised at random from --seed, so its features are never "
                         f"cached, and several processes share features through the cache: run it in one process")


def _reader(loaded: LoadedModel, plan: HeadPlan, device: torch.device):
    model = loaded.model
    frozen = _on(plan.frozen(model.config, model.state_dict()), device)
    return functools.partial(backbone_features, model, plan, frozen)


def fill_cache_part(cfg: RunConfig, splits: Splits, source: ModelSource, body: Body | None, family: Family,
                    reading: Reading, device: torch.device, dtype: torch.dtype | None, shards: Callable[[int], bool],
                    store_body: bool) -> Filled:
    """Compute the cache shards `shards` selects, of every split, that the cache lacks, and store them; with
    `store_body`, store the model's body too when `body` (the cached one) is None. The model is loaded only
    if something is missing. Needs the cache: the features are left there, for prepare_cached to read."""
    plan = HeadPlan(family, reading, cfg.model.train_pretrained_head)
    texts = split_texts(splits)
    lookup = dict(max_length=cfg.model.max_length, cfg=cfg.features, dtype=dtype,
                  identity=features_identity(source.identity(), cfg.model.truncation_side))
    missing = {name: missing_shards(plan.point, split, device=device, shards=shards, **lookup)
               for name, split in texts.items()}
    tokenizer = reader = loaded = None
    if any(missing.values()) or (store_body and body is None):
        tokenizer, loaded, lacking = _load_model(cfg, splits, source, family, reading, device)
        if lacking:
            raise uncacheable(cfg, lacking)
        if store_body and body is None:
            save_body(body_cache(cfg.features, source.identity()),
                      body_of(loaded.model, family, tokenizer, max_positions(loaded.model, tokenizer)))
        reader = _reader(loaded, plan, device)  # before quantizing: frozen head parts come from fp32 weights
        if dtype is torch.qint8:  # after the body was taken: the saved model keeps its fp32 weights
            quantize_backbone(loaded.model)
    passes = {name: fill_cache(reader, device, plan.point, tokenizer, split, split=name, shards=shards, **lookup)
              for name, split in texts.items()}
    return Filled(passes, loaded is not None)


def prepare_cached(cfg: RunConfig, splits: Splits, source: ModelSource, body: Body | None, config: ConfigView,
                   family: Family, reading: Reading, device: torch.device, dtype: torch.dtype | None,
                   clock: dict, filled: Filled | None = None) -> Prepared:
    """`body`: the model's body from the cache, if it was there. The model (and transformers) is loaded only
    when the body or some features are missing. `filled`: what fill_cache_part did beforehand (its parts
    combined), reported as the backbone pass."""
    plan = HeadPlan(family, reading, cfg.model.train_pretrained_head)
    ident = features_identity(source.identity(), cfg.model.truncation_side)
    texts = split_texts(splits)
    lookup = dict(device=device, max_length=cfg.model.max_length, cfg=cfg.features, identity=ident, dtype=dtype)
    found = {name: cached_features(plan.point, split, **lookup) for name, split in texts.items()}
    loaded, reader, no_cache = None, None, cfg.features.no_cache
    if body is None or not all(found.values()):
        tokenizer, loaded, lacking = _load_model(cfg, splits, source, family, reading, device)
        if body is None:
            body = body_of(loaded.model, family, tokenizer, max_positions(loaded.model, tokenizer))
            if lacking:
                log.warning("%s, initialised at random from --seed; its features are not cached",
                            _lacking(cfg, lacking))
                found, no_cache = dict.fromkeys(found), True
            elif not no_cache:
                save_body(body_cache(cfg.features, source.identity()), body)
        reader = _reader(loaded, plan, device)  # before quantizing: frozen head parts (BERT's pooler) are read
        if dtype is torch.qint8:               # from the fp32 state dict; quantized, it has no such keys
            quantize_backbone(loaded.model)  # after the body was taken: the saved model keeps its fp32 weights
    clock["model"] = time.perf_counter()

    features, passes = {}, {}
    for name, split in texts.items():
        if found[name] is None:
            found[name] = extract_features(reader, device, plan.point, source.checked()[0],
                                           split, max_length=cfg.model.max_length,
                                           cfg=replace(cfg.features, no_cache=no_cache), identity=ident, dtype=dtype,
                                           split=name)
        features[name], stats = found[name]
        if filled is not None and stats.computed_shards == 0:  # the pass ran before, in parts: report it
            stats = filled.passes[name]
        passes[name] = vars(stats)
        log.info("backbone pass %s: %s texts, %.1fs (cache shards: %d read, %d computed)", name, f"{stats.texts:,}",
                 stats.seconds, stats.cached_shards, stats.computed_shards)

    model_loaded = loaded is not None or (filled is not None and filled.model_loaded)
    # The head trains where the backbone runs. (On the CPU of a GPU machine, DistilBERT's head for 7 rates took
    # 86 s for full IMDb against seconds on the GPU: benchmarks/README.md.)
    head = plan.new_head(config, len(splits.label_names), cfg.train.seed, pretrained_state=body.tensors).to(device)
    trainable = sum(p.numel() for p in head.parameters())
    frozen = body.parameters - plan.pretrained_left_out(config)
    log.info("model %s (%s, %s): %s trainable head parameters (%s), %s frozen%s", cfg.model.model, source.model_type,
             family.name, f"{trainable:,}", ", ".join(head.paths), f"{frozen:,}",
             "" if model_loaded else "; features and body from the cache")
    cache_key_parts = None if no_cache else {"identity": ident, "point": plan.point, "dtype": str(dtype or torch.float32),
                                             "shard_size": cfg.features.for_device(device.type).shard_size}
    return Prepared(
        head, {name: CachedInputs(f, device) for name, f in features.items()}, passes,
        {"trainable": trainable, "frozen": frozen, "head_modules": head.paths, "cached_features": True,
         "feature_point": plan.point, "family": family.name},
        True,
        lambda folder, trained: save_checkpoint(folder, body, trained, plan, splits.label_names, problem_type(splits),
                                                cfg.model.max_length, cfg.model.truncation_side),
        model_loaded, "ordinary" if reading.own_head else "trust_remote_code", cache_key_parts)


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
        tokenizer.model_max_length = cfg.model.max_length  # as save_checkpoint records it; the training is done
        save_tokenizer(tokenizer, folder)

    return Prepared(nn.ModuleDict({name: getattr(model, name) for name in modules}), inputs, passes,
                    {"trainable": trainable, "frozen": frozen, "head_modules": list(modules), "cached_features": False,
                     "feature_point": "full-model", "family": None},
                    False, save, True, "ordinary", None)
