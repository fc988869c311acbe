"""`headtune evaluate`: a saved sequence-classification folder scored on a labelled split.

Any such folder works (headtune's or another); it is read with the settings it was trained with (its
max length, pooling, threshold, its headtune.json) unless a flag overrides them, and the dataset's
labels are mapped through the model's own `label2id`. A headtune folder records where its features
came from, so while its weights are the ones the run wrote (their SHA-256 is recorded too), evaluate
reads the features from the cache, or computes them in one backbone pass and caches them, and runs
only the head: the scores are then exactly the run's own.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open

from .architectures import HeadPlan, backbone_features, family_of
from .calibration import DEFAULT_THRESHOLD
from .config import EvaluateRun
from .data import load_split
from .features import cached_features, extract_features, features_identity, resolve_device
from .inference import check_finite, is_multi_label, label_names, max_length_for, resolve_threshold, score_texts
from .digests import DigestMemo
from .errors import HeadtuneError, flag
from . import atomic
from .artifacts import check_output_dir
from .cache import check_cache_dir
from .report import draw_charts, evaluation_charts
from .saved import encoder_config, load_classifier
from .scoring import metric_names, probabilities, score
from .training import Task

log = logging.getLogger(__name__)


def default_output(folder: Path, split: str) -> Path:
    """Where an evaluation goes unless --output-dir says: beside headtune's model/ in its run folder
    (run/evaluate-test), else beside the model folder under its own name (models/a-evaluate-test), so that two
    models in one folder do not write over each other's evaluations."""
    name = f"evaluate-{split}" if folder.name == "model" else f"{folder.name}-evaluate-{split}"
    return folder.parent / name


def evaluate(run: EvaluateRun, given: frozenset[str] = frozenset()) -> dict:
    """Score the folder `run.evaluate.model` on a split; `given` names the settings the user passed (the
    others default to the folder's own). Returns the metrics, also written to <output>/metrics.json."""
    start = time.perf_counter()
    cfg = run.evaluate
    folder = Path(cfg.model).expanduser()
    out = Path(cfg.output_dir) if cfg.output_dir else default_output(folder, cfg.split)
    check_output_dir(out)  # before the slow work, as train checks its own
    held = "a training run (model/)" if (out / "model").is_dir() else "a model" if (out / "config.json").is_file() \
        else None
    if held:  # its metrics.json and images/ are a run's, or the folder is a model's: not evaluate's to replace
        raise HeadtuneError(f"{flag('output_dir')} {out} holds {held}; evaluate writes metrics.json and images/ "
                            f"there: choose another {flag('output_dir')} (by default it writes to "
                            f"{default_output(folder, cfg.split)})")
    if not run.features.no_cache:
        check_cache_dir(run.features.cache_dir)
    device = resolve_device(cfg.device)
    model, tokenizer, settings = load_classifier(folder, device, cfg.allow_pickle)
    source = _source(run, settings, given)
    names = label_names(model.config)
    multi_label = is_multi_label(model.config, settings)
    split = load_split(source, cfg.split, {name: i for i, name in enumerate(names)}, multi_label, cfg.size,
                       cfg.sample_seed)
    max_length = max_length_for(cfg.max_length, model, tokenizer, settings)

    probs, how = _probabilities_from_features(model, tokenizer, settings, folder, split.texts, max_length, run, device)
    if probs is None:
        probs = score_texts(model, tokenizer, split.texts, max_length, cfg.batch_size, multi_label).probs
        how = "full model"
    check_finite(probs, model, folder)
    positive = settings.get("positive_label")
    threshold = resolve_threshold(cfg.threshold, settings, multi_label)  # predict's rule: None for single-label
    task = Task(len(names), multi_label, names.index(positive) if positive in names else 1,
                threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    metrics = {"model": str(folder), "dataset": source.dataset, "split": cfg.split, "texts": len(split.texts),
               "labels": names, "metric_names": metric_names(names, task), "max_length": max_length,
               "pooling": settings.get("pooling"), "features": how,
               "positive_label": names[task.positive] if len(names) == 2 and not multi_label else None,
               "threshold": threshold,
               **score(probs, split.labels, task, names),
               "seconds": round(time.perf_counter() - start, 3)}
    _write(out, metrics, f"{folder.parent.name or folder.name} on {Path(source.dataset).name} ({cfg.split})")
    texts = f"{len(split.texts):,} text{'' if len(split.texts) == 1 else 's'}"
    log.info("%s on %s (%s, %s): %s %.4f, %s %.4f; features: %s; wrote %s", folder, source.dataset, cfg.split, texts,
             metrics["metric_names"]["accuracy"], metrics["accuracy"], metrics["metric_names"]["f1"], metrics["f1"],
             how, out)
    return metrics


def _source(run: EvaluateRun, settings: dict, given: frozenset[str]):
    """The data settings: what the user passed, else the columns the folder was trained with."""
    trained = settings.get("data") or {}
    defaults = {k: trained[k] for k in ("text_column", "label_column") if k in trained and k not in given}
    return replace(run.data, **defaults)


def _probabilities_from_features(model, tokenizer, settings: dict, folder: Path, texts: list[str], max_length: int,
                                 run: EvaluateRun, device) -> tuple[object, str]:
    """The head on the folder's features (from the cache, or one pass that fills it), or (None, why not)."""
    source = settings.get("features")
    if not source or run.features.no_cache:
        return None, None
    digest = DigestMemo(run.features.cache_dir)
    if settings.get("checkpoint_sha256") != digest(folder / "model.safetensors") \
            or settings.get("config_sha256") != digest(folder / "config.json"):
        log.info("the weights or config.json in %s changed since training: its cached features do not apply", folder)
        return None, None
    if source["dtype"] == str(torch.qint8):  # int8 features come from a quantized backbone, not this folder's fp32
        return None, None                    # model: cached or not, evaluate scores the model itself
    config = encoder_config(model.config)
    family = family_of(config.model_type)
    if family is None or max_length != settings.get("max_length"):
        return None, None
    reading = family.reading(model.config if settings.get("loading") == "ordinary" else config, settings["pooling"])
    plan = HeadPlan(family, reading, bool(settings.get("train_pretrained_head")))
    if plan.point != source["point"]:
        return None, None
    dtype = None if source["dtype"] == str(torch.float32) else getattr(torch, source["dtype"].split(".")[-1])
    features_cfg = replace(run.features, shard_size=source["shard_size"])
    # the side the folder's tokenizer cuts, as this pass will: its features are the training run's only if it agrees
    lookup = dict(max_length=max_length, cfg=features_cfg, dtype=dtype,
                  identity=features_identity(source["identity"], tokenizer.truncation_side))
    found = cached_features(plan.point, texts, device=device, **lookup)
    how = "cache"
    if found is None:
        frozen = plan.frozen(config, model.state_dict())
        reader = lambda ids, mask: backbone_features(model, plan, frozen, ids, mask)  # noqa: E731
        found = extract_features(reader, device, plan.point, tokenizer, texts, split="evaluate", **lookup)
        how = "one backbone pass (now cached)"
    head = _saved_head(folder, plan, config, model.config.num_labels).to(device)
    with torch.inference_mode():
        logits = head(found[0].to(device)).float().cpu()
    return probabilities(logits, is_multi_label(model.config, settings)), how


def _saved_head(folder: Path, plan: HeadPlan, config, num_labels: int):
    """The folder's trained head as headtune's standalone module, weights read from model.safetensors."""
    head = plan.new_head(config, num_labels, seed=0)
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        head.load_state_dict({key: weights.get_tensor(key) for key in head.state_dict()})
    return head.eval()


def _write(out: Path, metrics: dict, title: str) -> None:
    """metrics.json and the charts (the charts read the split's report where a run's metrics keep it)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    view = {**metrics, "test": metrics}
    if "reliability" in metrics:
        view["calibration"] = {"temperature": None, "ece_before": metrics["ece"],
                               "reliability_before": metrics["reliability"]}
    draw_charts(out, view, evaluation_charts(view), title)
