"""Choosing on K folds: the learning rate and the epoch from out-of-fold scores, then one head on every row.

A single held-out split of a small sample makes noisy choices: on the IMDb small run, 400 validation rows
put one standard error of an accuracy near 0.78 at about 2 points, more than the rates and epochs differ
by. Cross-validation scores every training row once, held out, so the choices rest on the whole sample,
and the saved head then trains on all of it instead of 90 %. Because the features are cached, this costs
about what one search does: for every fold and every rate of the grid the head is copied, and all
folds x rates copies are stacked into one module (training.stack) and trained together, each fold's
copies on the rows outside that fold, each copy at its own rate. After each epoch every copy scores its
own fold; the out-of-fold logits of a rate are its folds' logits put together, and they choose the rate
and the epoch (as training.py does on a validation split: accuracy, or micro F1 for multi-label data,
then the loss). They are also what calibration and the multi-label threshold are fitted on
(workflow._finish), since they are predictions on rows the predicting head never trained on.

With --centre, each fold's copies read the features centred on the mean of their own training rows (the
other folds'), as a head trained alone on those rows would (centring.py).

The final head is trained by `training.train_head` on every row at the chosen rate, with the learning-rate
schedule of the full --epochs, and its weights at the chosen epoch are kept: the same trajectory the folds
scored, on 1/K more data.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .centring import can_centre, centre_copies, training_mean
from .config import TrainConfig
from .features import progress
from .optim import AdamW
from .training import (Labelled, Patience, Task, TrainResult, best_copy, better, copy_losses, leading, lr_factor,
                       no_denormals, selection_metric, selection_name, stack, threads_for, train_head)

log = logging.getLogger(__name__)

EVAL_COPY_ROWS = 2**16  # copies x rows per scoring chunk: bounds the memory of the held-out logits


@dataclass
class CrossValidation:
    lrs: list[float]
    folds: int
    chosen: int  # index into lrs
    kept_epoch: int
    epochs_run: int  # less than --epochs when --patience stopped the folds
    stopped_after: int | None
    logits: torch.Tensor  # (rows, labels): out-of-fold logits of the chosen rate at the kept epoch
    scores: list[dict]  # per epoch (0 = untrained): the chosen rate's out-of-fold scores
    sweep: list[dict]  # per rate: out-of-fold score per epoch, best epoch


def cross_validate(head: torch.nn.Module, features: torch.Tensor, labels: np.ndarray, folds: np.ndarray, task: Task,
                   cfg: TrainConfig, lrs: list[float], on_epoch: Callable[[dict], None] = lambda record: None
                   ) -> CrossValidation:
    """Train folds x rates copies of `head` on the cached `features` of the training rows (fold of each row in
    `folds`) and choose a rate and an epoch on their out-of-fold scores."""
    device = features.device
    k, r = int(folds.max()) + 1, len(lrs)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), threads_for(head, cfg, k * r), \
            no_denormals():
        torch.manual_seed(cfg.seed)  # dropout; restored for the caller afterwards
        return _cross_validate(head, features, labels, folds, task, cfg, lrs, on_epoch, k, r)


def _cross_validate(head, features, labels, folds, task, cfg, lrs, on_epoch, k, r) -> CrossValidation:
    device = features.device
    chosen_by = selection_metric(task)
    model = stack(head, k * r)  # copy f * r + j: fold f, rate lrs[j]
    rates = torch.tensor(lrs, dtype=torch.float32, device=device).repeat(k)
    outside = [torch.as_tensor(np.flatnonzero(folds != f), device=device) for f in range(k)]
    inside = [np.flatnonzero(folds == f) for f in range(k)]
    # fold sizes differ by at most one row: every fold trains on the same number of rows per epoch (a different
    # random row of the larger ones sits out each epoch), so the copies step in lockstep on equal batches
    rows_per_epoch = min(len(o) for o in outside)
    targets = torch.as_tensor(labels, device=device)
    targets = targets.float() if task.multi_label else targets.long()
    longest = max(len(i) for i in inside)  # each fold's rows, the shorter ones padded by repeating theirs
    padded = torch.as_tensor(np.stack([np.resize(i, longest) for i in inside]), device=device)  # (k, longest)
    # each fold's copies read the features centred on the mean of the rows they train on (centring.py), as a
    # head trained alone on those rows would: the held-out fold's rows count in nothing its copies do
    means = None
    if cfg.centre and can_centre(head):
        means = torch.stack([training_mean(features[o]) for o in outside])  # (k, in)
        centre_copies(model, head, means.repeat_interleave(r, dim=0))

    def read(index: torch.Tensor) -> torch.Tensor:
        """(k, b, in): fold f's rows index[f], as fold f's copies read them."""
        rows = features[index]
        return rows if means is None else rows - means[:, None, :]

    def held_out_logits() -> torch.Tensor:
        """(rates, rows, labels): every row's logits from the copies of its own fold, dropout off."""
        model.eval()
        out = torch.empty(r, len(labels), task.num_labels)
        chunk = max(1, EVAL_COPY_ROWS // (k * r))
        with torch.inference_mode():
            parts = [model(read(padded[:, s:s + chunk])).float().cpu() for s in range(0, longest, chunk)]
        logits = torch.cat(parts, dim=1).view(k, r, longest, -1)
        for f, rows in enumerate(inside):
            out[:, torch.as_tensor(rows)] = logits[f, :, :len(rows)]
        return out

    def scored() -> tuple[torch.Tensor, list[dict]]:
        logits = held_out_logits()
        return logits, [task.metrics(logits[j], labels) for j in range(r)]

    started = time.perf_counter()
    logits, scores = scored()
    per_epoch = [scores]  # per epoch: each rate's out-of-fold scores
    on_epoch({"epoch": 0, "chosen_by": chosen_by, "validation": scores[0], "folds": k})
    best = [(-1.0, float("inf"), 0)] * r
    best_logits = logits.clone()
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps = -(-rows_per_epoch // cfg.batch_size) * cfg.epochs
    factor, step = lr_factor(cfg.lr_schedule, steps), 0
    patience, stopped = Patience(cfg), None
    bar = progress(total=steps, desc=f"cross-validating head ({k} folds)", unit="step")
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.stack([o[torch.randperm(len(o), generator=generator)[:rows_per_epoch].to(device)]
                             for o in outside])  # (k, rows_per_epoch): each fold's rows for this epoch
        totals = torch.zeros(k * r, device=device)
        for index in order.split(min(cfg.batch_size, rows_per_epoch), dim=1):  # a batch beyond the rows: all of them
            batch = targets[index].repeat_interleave(r, dim=0)  # (k * r, b): each copy its fold's rows
            out = model(read(index))  # (k, b, in) in: fold f's rows go to its r copies (StackedLinear groups)
            per_copy = copy_losses(task, out, batch)
            optimizer.zero_grad()
            per_copy.sum().backward()
            optimizer.step(rates * factor(step))
            step += 1
            totals += per_copy.detach() * index.shape[1]
            bar.update(1)
        logits, scores = scored()
        per_epoch.append(scores)
        train_loss = (totals / rows_per_epoch).view(k, r).mean(dim=0).tolist()  # per rate, over its folds
        for j, m in enumerate(scores):
            if better(m[chosen_by], m["loss"], *best[j][:2]):
                best[j] = (m[chosen_by], m["loss"], epoch)
                best_logits[j] = logits[j]
        lead = leading(scores, chosen_by)
        on_epoch({"epoch": epoch, "train_loss": train_loss[lead], "chosen_by": chosen_by, "validation": scores[lead],
                  "lr": float(lrs[lead]), "rates": r, "folds": k, "seconds": time.perf_counter() - started})
        started = time.perf_counter()
        if patience.stops(max(b[0] for b in best), epoch, "out-of-fold " + selection_name(task)):
            stopped = epoch
            break
    bar.close()
    epochs_run = len(per_epoch) - 1
    if cfg.keep == "best":
        chosen = best_copy(best)
        kept, kept_logits = best[chosen][2], best_logits[chosen]
    else:
        chosen = leading(per_epoch[-1], chosen_by)
        kept, kept_logits = epochs_run, logits[chosen]
    sweep = [{"lr": lr, "validation_accuracy": [s[j][chosen_by] for s in per_epoch[1:]], "best_epoch": best[j][2],
              "best_validation_accuracy": best[j][0]} for j, lr in enumerate(lrs)]
    return CrossValidation(list(lrs), k, chosen, kept, epochs_run, stopped, copy.deepcopy(kept_logits),
                           [s[chosen] for s in per_epoch], sweep)


def train_on_folds(head: torch.nn.Module, train: Labelled, folds: np.ndarray, test: Labelled, task: Task,
                   cfg: TrainConfig, lrs: list[float], on_fold_epoch: Callable[[dict], None] = lambda record: None,
                   on_epoch: Callable[[dict], None] = lambda record: None) -> TrainResult:
    """Choose on the folds (`cross_validate`), then train the saved head on every training row at the chosen rate
    and keep its weights at the chosen epoch. The result's history holds, per epoch, the final head's train loss
    and test scores beside the chosen rate's out-of-fold scores; `out_of_fold` holds the logits to calibrate on."""
    cv = cross_validate(head, train.inputs.features, train.labels, folds, task, cfg, list(lrs),
                        on_fold_epoch)
    log.info("chosen on %d folds: lr %g, epoch %d (out-of-fold %s %.4f); training the head on all %s rows",
             cv.folds, cv.lrs[cv.chosen], cv.kept_epoch, selection_name(task),
             cv.scores[cv.kept_epoch][selection_metric(task)], f"{len(train.labels):,}")
    final = train_head(head, train, None, test, task, cfg, [cv.lrs[cv.chosen]], True, on_epoch,
                       keep_epoch=cv.kept_epoch, last_epoch=cv.epochs_run)
    history = [{**record, "validation": cv.scores[record["epoch"]]} for record in final.history]
    return TrainResult(final.head, cv.lrs, cv.chosen, cv.kept_epoch, cv.stopped_after, history, cv.sweep,
                       out_of_fold=cv.logits, folds=cv.folds, centred=final.centred)
