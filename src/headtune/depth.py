"""--depth auto: which of the backbone's layers the head reads, chosen on the training sample from the one pass.

A frozen backbone computes every layer of every text anyway, and a layer below the last often holds more of a
task than the last (benchmarks/probe_layers.py: MiniLM reads IMDb sentiment 3 points better at layer 5 than at
its last, while its last layer reads BANKING77's intents best). With --depth auto, the pass over the training
texts keeps what the head would read at every depth (cached, keyed as the whole model's features), a ridge
classifier per depth is scored by 5-fold cross-validation on the training sample alone (closed form: a fraction
of a second, where training heads per depth would cost the head stage again per layer), and the run then goes on
exactly as a `--depth N` run: the chosen depth's vectors are written into that run's cache entry, so only the
test (and validation) texts still need the backbone, cut to N layers.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .architectures import Family, HeadPlan, Reading, layer_features
from .config import RunConfig
from .data import Splits
from .errors import flag
from .cache import FeatureCache
from .checkpoint import body_cache, body_of, save_body
from .features import (SHARD_TENSORS, cached_features, extract_features, feature_cache, features_identity, fill_cache,
                       missing_shards)
from .modeling import ModelSource, max_positions
from .sampling import assign_folds
from .training import one_thread

if TYPE_CHECKING:
    from .preparation import Filled

log = logging.getLogger(__name__)

FOLDS = 5
# ridge penalties, per training row: from nearly none to strong (features are standardised first)
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def score_depths(features: torch.Tensor, labels: np.ndarray, folds: np.ndarray, multi_label: bool) -> list[float]:
    """Out-of-fold accuracy (micro F1 for multi-label rows) of a ridge classifier on each depth's vectors, the
    best over PENALTIES: features (texts, depths, hidden); labels: ids, or an (n, K) 0/1 matrix; folds: each
    row's fold. A pure function of the training sample: no test row ever enters it."""
    if multi_label:
        targets = np.asarray(labels, dtype=np.float64)
    else:
        targets = np.eye(int(labels.max()) + 1)[labels]
    # rows grouped by fold (a score does not depend on the rows' order): each fold is then one slice, not a mask
    order = torch.as_tensor(np.argsort(folds, kind="stable"))
    sizes = np.unique(folds, return_counts=True)[1].tolist()
    y = torch.as_tensor(targets)[order]
    # one depth's rows at a time: a copy of every depth at once would cost the whole pass's memory again
    return [_ridge_score(features[order, d].double(), y, sizes, multi_label) for d in range(features.shape[1])]


def _ridge_score(x: torch.Tensor, y: torch.Tensor, sizes: list[int], multi_label: bool) -> float:
    # standardised on the whole sample (feature statistics only, no labels); the whole Gram matrix is the sum of
    # the folds' own and each fold's training Gram matrix is the whole one minus the fold's, so the cost is one
    # pass over the rows per depth, not one per fold
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # the intercept, penalised like the rest
    parts, targets = x.split(sizes), y.split(sizes)
    grams = [part.T @ part for part in parts]
    crosses = [part.T @ target for part, target in zip(parts, targets)]
    gram, cross = sum(grams), sum(crosses)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    outputs: dict[float, list[torch.Tensor]] = {p: [] for p in PENALTIES}
    with one_thread():  # small solves: more threads only wait on a busy CPU (0.44 s vs 0.015 s each here)
        for part, own_gram, own_cross in zip(parts, grams, crosses):
            g, c, rows = gram - own_gram, cross - own_cross, len(x) - len(part)
            for penalty in PENALTIES:  # positive definite: Cholesky, half the work of a general solve
                factor = torch.linalg.cholesky(g + penalty * rows * eye)
                outputs[penalty].append(part @ torch.cholesky_solve(c, factor))
    return max(_score(torch.cat(out), y, multi_label) for out in outputs.values())


def _score(out: torch.Tensor, y: torch.Tensor, multi_label: bool) -> float:
    if not multi_label:
        return float((out.argmax(1) == y.argmax(1)).double().mean())
    predicted, actual = out >= 0.5, y > 0.5
    hits = float((predicted & actual).sum())
    return 2 * hits / max(float(predicted.sum() + actual.sum()), 1.0)


def choose(scores: list[float]) -> int:
    """The depth (1-based) with the best score; a tie goes to the deeper layer, the nearer to every layer."""
    best = max(scores)
    return max(d for d, s in enumerate(scores, start=1) if s == best)


def applicable(cfg: RunConfig, registered: bool, model_type: str) -> RunConfig:
    """The config, with --depth all where auto cannot apply (said in one line)."""
    why = (f"model type '{model_type}' has no headtune entry" if not registered else
           f"{flag('no_cache')} leaves no cache to hand the chosen layer's features on through" if cfg.features.no_cache
           else None)
    if why is None:
        return cfg
    log.info("--depth auto: %s, so the last layer is read (--depth all)", why)
    return replace(cfg, model=replace(cfg.model, depth="all"))


@dataclass
class Choice:
    """What --depth auto decided, for the rest of the run."""

    cfg: RunConfig  # --depth N with the chosen N (all, for a model whose weights are partly random)
    source: ModelSource  # the model that run reads: the cut one
    report: dict | None  # metrics.json's "depth": each layer's score and the choice
    train_pass: dict | None  # the every-layer pass's statistics, when it computed shards (the train split's pass)
    model_loaded: bool


def at_depth(cfg: RunConfig, source: ModelSource, depth: int) -> tuple[RunConfig, ModelSource]:
    """The run that reads layer `depth`: its config (--depth N) and its model (the one cut to N layers)."""
    chosen = replace(cfg, model=replace(cfg.model, depth=depth))
    return chosen, source.with_config(chosen.model)


def fill_layers(cfg: RunConfig, splits: Splits, source: ModelSource, family: Family, reading: Reading,
                device: torch.device, dtype: torch.dtype | None, shards: Callable[[int], bool], store_body: bool
                ) -> Filled:
    """One process's part of the every-layer pass, when several share it: compute the shards `shards` selects
    that the cache lacks, and with `store_body` (the cache lacks it) the whole model's body. The model is loaded
    only for that. Afterwards, with every part done, `resolve` finds the whole pass in the cache."""
    from .preparation import Filled, _load_model, uncacheable

    plan = HeadPlan(family, reading, cfg.model.train_pretrained_head)
    point, texts = f"{plan.point}@layers", list(splits.train.texts)
    lookup = dict(max_length=cfg.model.max_length, cfg=cfg.features, dtype=dtype,
                  identity=features_identity(source.identity(), cfg.model.truncation_side))
    missing = missing_shards(point, texts, device=device, shards=shards, **lookup)
    tokenizer = reader = None
    if missing or store_body:
        tokenizer, loaded, lacking = _load_model(cfg, splits, source, family, reading, device)
        if lacking:
            raise uncacheable(cfg, lacking)
        model = loaded.model
        if store_body:
            save_body(body_cache(cfg.features, source.identity()),
                      body_of(model, family, tokenizer, max_positions(model, tokenizer)))
        frozen = plan.frozen(model.config, model.state_dict())
        reader = functools.partial(layer_features, model, plan, None if frozen is None else frozen.to(device))
    stats = fill_cache(reader, device, point, tokenizer, texts, split="train (every layer)", shards=shards, **lookup)
    return Filled({"train": stats}, reader is not None)


def resolve(cfg: RunConfig, splits: Splits, source: ModelSource, family: Family, reading: Reading,
            device: torch.device, dtype: torch.dtype | None, body_cached: bool) -> Choice:
    """The chosen depth, the run reading it, and what the choice was. Leaves the chosen depth's training features
    in the cache, where that `--depth N` run finds them. `body_cached`: the whole model's body is in the cache
    (else it is stored: see below). A model whose checkpoint lacks backbone weights (random, so never cached):
    --depth all, and no choice."""
    from .preparation import _load_model  # the one place that loads a model for a run

    plan = HeadPlan(family, reading, cfg.model.train_pretrained_head)
    point = f"{plan.point}@layers"
    texts = list(splits.train.texts)
    ident = features_identity(source.identity(), cfg.model.truncation_side)
    lookup = dict(max_length=cfg.model.max_length, cfg=cfg.features, dtype=dtype, identity=ident)
    found = cached_features(point, texts, device=device, **lookup)
    loaded_model = found is None or not body_cached
    if loaded_model:
        tokenizer, loaded, lacking = _load_model(cfg, splits, source, family, reading, device)
        if lacking:  # prepare_cached says so in a warning of its own
            return Choice(replace(cfg, model=replace(cfg.model, depth="all")), source, None, None, True)
        model = loaded.model
        # the whole model's body too: a later run finds this model's config and positions there without loading
        # transformers, before it knows which depth it will read (and a --depth all run finds it whole)
        save_body(body_cache(cfg.features, source.identity()),
                  body_of(model, family, tokenizer, max_positions(model, tokenizer)))
    if found is None:
        frozen = plan.frozen(model.config, model.state_dict())
        reader = functools.partial(layer_features, model, plan, None if frozen is None else frozen.to(device))
        found = extract_features(reader, device, point, tokenizer, texts, split="train (every layer)", **lookup)
    features, stats = found
    log.info("backbone pass train, every layer: %s texts, %.1fs (cache shards: %d read, %d computed)",
             f"{stats.texts:,}", stats.seconds, stats.cached_shards, stats.computed_shards)
    folds = splits.folds if splits.folds is not None else \
        assign_folds(splits.train.labels, FOLDS, cfg.data.sample_seed, splits.multi_label)
    scores = score_depths(features, splits.train.labels, folds, splits.multi_label)
    depth = choose(scores)
    chosen, cut = at_depth(cfg, source, depth)
    resolved = cfg.features.for_device(device.type)
    settings = dict(max_length=cfg.model.max_length, cfg=resolved, dtype=dtype)
    _hand_on(feature_cache(point, texts, identity=ident, **settings),
             feature_cache(plan.point, texts, identity=features_identity(cut.identity(), cfg.model.truncation_side),
                           **settings), -(-len(texts) // resolved.shard_size), depth)
    what = "micro F1" if splits.multi_label else "accuracy"
    log.info("--depth auto: layer %d of %d (out-of-fold %s of ridge classifiers on the training sample, by layer: "
             "%s)", depth, len(scores), what, ", ".join(f"{s:.4f}" for s in scores))
    report = {"mode": "auto", "chosen": depth, "layers": len(scores), "chosen_by": f"out-of-fold {what} of a ridge "
              f"classifier, {len(np.unique(folds))} folds of the training sample",
              "scores": [round(s, 6) for s in scores]}
    return Choice(chosen, cut, report, vars(stats) if stats.computed_shards else None, loaded_model)


def _hand_on(every: FeatureCache, target: FeatureCache, shards: int, depth: int) -> None:
    """Write the chosen depth's slice of each of the `shards` shards of every layer's features (`every`) as that
    shard of the `--depth N` run's training features (`target`): the same texts and rows, under that run's key
    (what that run computes is the same, from the cut model: tests/test_depth.py)."""
    for shard in range(shards):
        if target.has(shard):
            continue
        tensors = every.load(shard, SHARD_TENSORS)
        if tensors is None:  # damaged since it was read: the --depth N run computes this shard itself
            continue
        target.save(shard, {**tensors, "features": tensors["features"][:, depth - 1].contiguous()})
