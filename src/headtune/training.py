"""Training the head: several learning rates at once, the best epoch by the validation split.

The head is small and its inputs are cached, so trying learning rates costs little: with `--lr auto`
the head is copied once per rate of `LR_GRID` and the copies are stacked into one module whose
Linear layers hold every copy's weights (`stack`), trained together, each copy at its own rate
(optim.AdamW takes a rate per copy). Every copy sees the same batches in the same order, so copy k is
the head a run with rate k alone would train (up to its dropout masks). After each epoch every copy
is scored on the validation split; each keeps its best epoch's weights, and the copy with the best
validation accuracy (micro F1 for multi-label data, where subset accuracy moves in coarse steps) is the
one returned. The test split is scored for the report only: it chooses
nothing (tests/test_training.py changes every test label and gets the same head).

When the choices are cross-validated instead (--folds; crossval.py stacks folds x rates copies with the
pieces here), `train_head` then trains the final head on every row without a validation split, keeping
the epoch the folds chose (`keep_epoch`).

Inputs are cached backbone features (`CachedInputs`), or, for an architecture headtune has no entry
for, token batches through the whole frozen model (`FullModelInputs`: one learning rate only). Cached features
are centred on the training rows' mean while the head trains (--centre; centring.py says why), and the kept head
is handed back reading the raw ones.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from .calibration import DEFAULT_THRESHOLD
from .centring import can_centre, shifted, training_mean
from .config import TrainConfig
from .features import collate, length_order, progress
from .metrics import classification_metrics
from .optim import AdamW

log = logging.getLogger(__name__)

LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)  # --lr auto: half-decade steps around what heads need
EVAL_ROWS = 4096  # rows per evaluation batch


# --------------------------------------------------------------------------- stacked copies of a head


class StackedLinear(nn.Module):
    """K copies of a Linear layer: weight (K, out, in), bias (K, out). Input (B, in) is shared by every
    copy (the head's first layer); input (K, B, in) gives each copy its own rows; input (G, B, in), G dividing
    K, gives each group of K / G consecutive copies its rows (crossval.py: a fold's rows, one copy per rate)."""

    def __init__(self, linear: nn.Linear, k: int):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().expand(k, *linear.weight.shape).clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().expand(k, -1).clone())
        self.grad_memory: torch.Tensor | None = None  # _GroupProduct writes the weight's gradient here, step after step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one group: every copy reads the same rows
            x = x[None]
        out = _GroupProduct.apply(x, self.weight, self)
        return out if self.bias is None else out + self.bias[:, None, :]


class _GroupProduct(torch.autograd.Function):
    """(K, B, out): each group's copies' weights, side by side, times its rows x (G, B, in), as one batched
    weight @ x^T (no copy of the input per copy). Written out because of what a wide head costs on a CPU: 35 copies
    of DistilBERT's 768 x 768 make an 83 MB weight gradient each step, and autograd hands every step's gradient over
    in new memory, whose first touch cost more than the product itself. Here the backward pass writes it into
    memory the layer keeps (`grad_memory`), given as the weight's .grad (the optimizer's zero_grad only lets go of
    it), or adds it to a .grad that is already there, as autograd would."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, layer: StackedLinear) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.layer = layer
        k, o, i = weight.shape
        g, b = x.shape[:2]
        return torch.bmm(weight.view(g, k // g * o, i), x.transpose(1, 2)).view(k, o, b).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        k, o, i = weight.shape
        g, b = x.shape[:2]
        grad_t = grad_out.transpose(1, 2).reshape(g, k // g * o, b)  # (G, copies x out, B)
        grad_x = torch.bmm(grad_t.transpose(1, 2), weight.view(g, -1, i)) if ctx.needs_input_grad[0] else None
        if ctx.needs_input_grad[1]:
            layer = ctx.layer
            if layer.weight.grad is not None:  # a gradient not yet cleared: add to it, in place
                layer.weight.grad.view(g, -1, i).baddbmm_(grad_t, x)
            else:
                if layer.grad_memory is None or layer.grad_memory.shape != weight.shape \
                        or layer.grad_memory.device != weight.device:
                    layer.grad_memory = torch.empty_like(weight)
                torch.bmm(grad_t, x, out=layer.grad_memory.view(g, -1, i))
                layer.weight.grad = layer.grad_memory
        return grad_x, None, None


class StackedLayerNorm(nn.Module):
    def __init__(self, norm: nn.LayerNorm, k: int):
        super().__init__()
        self.shape, self.eps = norm.normalized_shape, norm.eps
        self.weight = nn.Parameter(norm.weight.detach().expand(k, -1).clone())
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.detach().expand(k, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and x.shape[0] != len(self.weight):  # grouped input (StackedLinear): one copy each
            x = x.repeat_interleave(len(self.weight) // x.shape[0], dim=0)
        out = nn.functional.layer_norm(x, self.shape, None, None, self.eps) * self.weight[:, None, :]
        return out if self.bias is None else out + self.bias[:, None, :]


STACKED = {nn.Linear: StackedLinear, nn.LayerNorm: StackedLayerNorm}


def stack(head: nn.Module, k: int) -> nn.Module:
    """K copies of `head` (same initial weights) as one module whose output is (K, B, labels).

    Heads are chains of Linear, LayerNorm, dropout and elementwise activations (architectures.parts):
    the Linear and LayerNorm layers get a leading copy dimension; the rest works on (K, B, H) as is.
    """
    stacked = copy.deepcopy(head)
    for name, module in list(stacked.named_modules()):
        if type(module) in STACKED:
            owner_name, _, attr = name.rpartition(".")
            setattr(stacked.get_submodule(owner_name) if owner_name else stacked, attr,
                    STACKED[type(module)](module, k))
        elif len(list(module.children())) == 0 and list(module.parameters(recurse=False)):
            raise TypeError(f"cannot stack head layer {name} ({type(module).__name__})")
    return stacked


def member_state(stacked_state: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Copy k's weights, under the plain head's names."""
    return {name: tensor[k].detach().clone() for name, tensor in stacked_state.items()}


# --------------------------------------------------------------------------- inputs


class Inputs(Protocol):
    def __len__(self) -> int: ...

    def logits(self, head: nn.Module, index: torch.Tensor) -> torch.Tensor: ...


class CachedInputs:
    """The head's logits from cached backbone features, minus `centre` when given (centring.py): subtracted per
    batch, so a centred view of a split costs no copy of its features."""

    def __init__(self, features: torch.Tensor, device: torch.device, centre: torch.Tensor | None = None):
        self.features = features.to(device)
        self.centre = None if centre is None else centre.to(device)

    def __len__(self) -> int:
        return len(self.features)

    def logits(self, head: nn.Module, index: torch.Tensor) -> torch.Tensor:
        rows = self.features[index.to(self.features.device)]
        return head(rows if self.centre is None else rows - self.centre)


class FullModelInputs:
    """Logits from the whole (frozen) model on padded token batches: the slow fallback, whose head
    modules train in place inside the model (the `head` argument is that model's head container)."""

    def __init__(self, model: nn.Module, ids: list[list[int]], pad_id: int):
        self.model, self.ids, self.pad_id = model, ids, pad_id

    def __len__(self) -> int:
        return len(self.ids)

    def logits(self, head: nn.Module, index: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids, mask = collate([self.ids[i] for i in index.tolist()], self.pad_id)
        return self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits


@dataclass
class Labelled:
    inputs: Inputs
    labels: np.ndarray  # ids (n,), or a 0/1 matrix (n, labels) for multi-label data


@dataclass
class Task:
    """What the labels mean and how errors are weighed."""

    num_labels: int
    multi_label: bool = False
    positive: int = 1  # two labels: the class whose F1 is reported
    class_weights: torch.Tensor | None = None  # cross-entropy weights, or BCE pos_weight for multi-label
    threshold: float = DEFAULT_THRESHOLD  # multi-label: lowest probability at which a label is predicted

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights,
                                                                  reduction=reduction)
        return nn.functional.cross_entropy(logits, targets, weight=weights, reduction=reduction)

    def metrics(self, logits: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
        """accuracy (subset accuracy for multi-label), F1 (of the positive class, macro, or micro for
        multi-label) and the unweighted mean loss."""
        targets = torch.as_tensor(labels)
        if self.multi_label:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets.float()).item()
            predicted = (torch.sigmoid(logits) >= self.threshold).numpy()
            truth = labels.astype(bool)
            tp = int((predicted & truth).sum())
            denominator = 2 * tp + int((predicted & ~truth).sum()) + int((~predicted & truth).sum())
            return {"accuracy": float(np.mean(np.all(predicted == truth, axis=1))),
                    "f1": 2 * tp / denominator if denominator else 0.0, "loss": loss}
        loss = nn.functional.cross_entropy(logits, targets).item()
        scores = classification_metrics(labels, logits.argmax(-1).numpy(), self.num_labels, self.positive)
        return {**scores, "loss": loss}


def balanced_weights(labels: np.ndarray, num_labels: int, multi_label: bool) -> torch.Tensor:
    """n / (classes x count) per class, as scikit-learn's class_weight="balanced"; for multi-label data
    the BCE pos_weight negatives / positives per label."""
    if multi_label:
        positives = labels.sum(axis=0)
        return torch.as_tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float32)
    counts = np.bincount(labels, minlength=num_labels)
    return torch.as_tensor(len(labels) / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    head: nn.Module  # the kept head (eval mode): the chosen rate's copy at its kept epoch
    lrs: list[float]
    chosen: int  # index into lrs
    kept_epoch: int
    stopped_after: int | None  # early stopping ended training after this epoch
    history: list[dict] = field(default_factory=list)  # per epoch (0 = before training), the chosen copy
    sweep: list[dict] = field(default_factory=list)  # per rate: validation accuracy per epoch, best epoch
    out_of_fold: torch.Tensor | None = None  # cross-validation: the logits the choices were made on (crossval.py)
    folds: int | None = None
    centred: bool = False  # trained on centred features, the mean folded into the kept head (centring.py)


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each optimizer step (0-based).

    "linear" decays to 0 over all steps, as transformers' Trainer does by default: the last steps are
    small, so the head settles instead of ending wherever the final full-size step left it.
    """
    if schedule == "linear":
        return lambda step: 1 - step / total_steps
    return lambda step: 1.0


def logits_of(head: nn.Module, inputs: Inputs, stacked: bool) -> torch.Tensor:
    """(copies, rows, labels) logits for every row, in order, with dropout off."""
    head.eval()
    index = torch.arange(len(inputs))
    if isinstance(inputs, FullModelInputs):  # similar lengths together: less padding
        index = torch.as_tensor(length_order(np.array([len(x) for x in inputs.ids])))
    with torch.inference_mode():
        chunks = [inputs.logits(head, chunk).float().cpu() for chunk in index.split(EVAL_ROWS)]
        logits = torch.cat(chunks, dim=-2)
    if not stacked:
        logits = logits[None]
    out = torch.empty_like(logits)
    out[:, index] = logits
    return out


def train_head(head: nn.Module, train: Labelled, validation: Labelled | None, test: Labelled, task: Task,
               cfg: TrainConfig, lrs: list[float], stackable: bool = True,
               on_epoch: Callable[[dict], None] = lambda record: None, keep_epoch: int | None = None,
               last_epoch: int | None = None) -> TrainResult:
    """Train copies of `head` at the rates `lrs` (several only if `stackable`) for cfg.epochs, and return the
    kept copy. Without a validation split there is one rate, and the last epoch is kept, or `keep_epoch` (an
    epoch chosen elsewhere: crossval.py). `last_epoch`: stop after it, the schedule still spanning cfg.epochs."""
    if len(lrs) > 1 and (validation is None or not stackable):
        raise ValueError("several learning rates need a validation split and a stackable head")
    if keep_epoch is not None and (validation is not None or not 1 <= keep_epoch <= (last_epoch or cfg.epochs)):
        raise ValueError("keep_epoch is for a run without a validation split, and must be an epoch it trains")
    device = next(head.parameters()).device
    mean = None
    if cfg.centre and isinstance(train.inputs, CachedInputs) and can_centre(head):  # centring.py: why
        mean = training_mean(train.inputs.features)
        head = shifted(head, mean)
        train, validation, test = (None if split is None else centred(split, mean) for split in (train, validation, test))
    # Dropout draws from torch's global RNG: seed it for this loop only, restoring the caller's state after.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), threads_for(head, cfg, len(lrs)), \
            no_denormals():
        torch.manual_seed(cfg.seed)
        result = _train(head, train, validation, test, task, cfg, lrs, stackable, on_epoch, device, keep_epoch,
                        last_epoch or cfg.epochs)
    if mean is not None:  # the kept head reads the raw features again
        result.head, result.centred = shifted(result.head, -mean), True
    return result


def centred(split: Labelled, mean: torch.Tensor) -> Labelled:
    """The split as the head reads it while it trains: its cached features minus `mean`."""
    features = split.inputs.features
    return Labelled(CachedInputs(features, features.device, centre=mean), split.labels)


SMALL_STEP_FLOPS = 5e7  # below this per step, one CPU thread: see threads_for


@contextlib.contextmanager
def no_denormals():
    """Flush denormal floats to zero while heads train on the CPU. A head whose logits grow far apart (a high
    rate of the sweep) gets softmax gradients below 1e-38, and CPU arithmetic on such numbers is slow: the
    BANKING77 sweep on 5 folds took 7x longer with them. Zero instead changes no weight in any digit that counts."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # torch's default; it offers no way to read the setting back


@contextlib.contextmanager
def threads_for(head: nn.Module, cfg: TrainConfig, copies: int):
    """One intra-op thread for small heads on the CPU. Their steps are many tiny operations, which gain nothing
    from more threads, and on a busy machine OpenMP's waiting threads made them 30x slower (BANKING77's sweep:
    119 s with 2 threads, 4 s with 1). Heads with big layers (DistilBERT's 768 x 768) keep torch's threads."""
    flops = 6 * cfg.batch_size * copies * sum(p.numel() for p in head.parameters())
    with one_thread(next(head.parameters()).device.type == "cpu" and flops < SMALL_STEP_FLOPS):
        yield


@contextlib.contextmanager
def one_thread(when: bool = True):
    """torch's intra-op threads at one inside (when `when`), as they were after: for small CPU work, which more
    threads do not speed up and a busy machine's waiting threads slow down many times over."""
    before = torch.get_num_threads()
    if when:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if when:
            torch.set_num_threads(before)


def better(accuracy: float, loss: float, best_accuracy: float, best_loss: float) -> bool:
    """Higher validation accuracy wins; at equal accuracy, lower validation loss."""
    return accuracy > best_accuracy or (accuracy == best_accuracy and loss < best_loss)


def selection_metric(task: Task) -> str:
    """What chooses the rate and the epoch: accuracy, or micro F1 for multi-label data."""
    return "f1" if task.multi_label else "accuracy"


def selection_name(task: Task) -> str:
    """selection_metric's name in a log line."""
    return "micro F1" if task.multi_label else "accuracy"


def _train(head, train, validation, test, task, cfg, lrs, stackable, on_epoch, device, keep_epoch, last_epoch
           ) -> TrainResult:
    k = len(lrs)
    chosen_by = selection_metric(task)
    model = stack(head, k) if stackable else head
    rates = torch.tensor(lrs, dtype=torch.float32, device=device)
    keep_best = cfg.keep == "best" and validation is not None

    def evaluate() -> tuple[list[dict] | None, list[dict]]:
        scores = []
        for split in (validation, test):
            if split is None:
                scores.append(None)
                continue
            logits = logits_of(model, split.inputs, stackable)
            scores.append([task.metrics(logits[i], split.labels) for i in range(k)])
        return scores[0], scores[1]

    records = []  # per epoch: train loss per copy, validation and test scores per copy, seconds

    def record(epoch: int, losses: list[float] | None, started: float) -> None:
        val, tst = evaluate()
        records.append({"epoch": epoch, "train_loss": losses, "validation": val, "test": tst,
                        "seconds": time.perf_counter() - started})
        # the copy leading on the validation split this epoch, with its own train loss: one coherent line
        lead = 0 if val is None else leading(val, chosen_by)
        on_epoch({"epoch": epoch, "train_loss": None if losses is None else losses[lead], "chosen_by": chosen_by,
                  "validation": None if val is None else val[lead], "lr": float(lrs[lead]), "rates": k,
                  "test": tst[0] if k == 1 or epoch == 0 else None})  # epoch 0: every copy is the same head

    record(0, None, time.perf_counter())
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling independent of any other RNG use
    targets = torch.as_tensor(train.labels, device=device)
    targets = targets.float() if task.multi_label else targets.long()
    steps = -(-len(train.inputs) // cfg.batch_size) * cfg.epochs
    factor, step = lr_factor(cfg.lr_schedule, steps), 0
    best = [(-1.0, float("inf"), 0)] * k  # per copy: (validation accuracy, validation loss, epoch)
    best_state = copy.deepcopy(model.state_dict())
    patience, stopped = Patience(cfg), None
    bar = progress(total=steps, desc="training head", unit="step")
    batch_size = min(cfg.batch_size, len(train.inputs))  # a batch beyond the rows: all of them (torch takes int64)
    for epoch in range(1, last_epoch + 1):
        started = time.perf_counter()
        model.train()
        totals = torch.zeros(k, device=device)
        for index in torch.randperm(len(train.inputs), generator=generator).split(batch_size):
            logits = train.inputs.logits(model, index)
            if not stackable:
                logits = logits[None]
            batch = targets[index.to(device)]
            # summed over copies, each copy's mean over the batch: every copy gets its own mean-loss gradient
            per_copy = copy_losses(task, logits, batch.expand(k, *batch.shape))
            optimizer.zero_grad()
            per_copy.sum().backward()
            optimizer.step(rates * factor(step) if stackable else float(rates[0]) * factor(step))
            step += 1
            totals += per_copy.detach() * len(index)
            bar.update(1)
        record(epoch, (totals / len(train.inputs)).tolist(), started)
        if epoch == keep_epoch:
            best, best_state = [(-1.0, float("inf"), epoch)], copy.deepcopy(model.state_dict())
        if validation is None:
            continue
        scores = records[-1]["validation"]
        state = model.state_dict()
        for i, m in enumerate(scores):
            if better(m[chosen_by], m["loss"], *best[i][:2]):
                best[i] = (m[chosen_by], m["loss"], epoch)
                for name, tensor in state.items():
                    if stackable:
                        best_state[name][i] = tensor[i]
                    else:
                        best_state[name] = tensor.detach().clone()
        if patience.stops(max(b[0] for b in best), epoch, "validation accuracy"):
            stopped = epoch
            break
    bar.close()
    keep_best = keep_best or keep_epoch is not None
    return _result(head, model, records, best, best_state, lrs, keep_best, stackable, stopped, validation, chosen_by)


class Patience:
    """--patience: stop once the best validation score of all copies has not risen for that many epochs."""

    def __init__(self, cfg: TrainConfig):
        self.limit, self.epochs, self.best, self.since = cfg.patience, cfg.epochs, -1.0, 0

    def stops(self, best: float, epoch: int, what: str) -> bool:
        """After `epoch`, whose best score so far is `best`: whether to stop (logged, naming `what`)."""
        self.best, self.since = (best, 0) if best > self.best else (self.best, self.since + 1)
        if self.limit is None or self.since < self.limit or epoch >= self.epochs:
            return False
        log.info("early stopping after epoch %d: no better %s for %d epochs", epoch, what, self.since)
        return True


def best_copy(best: list[tuple[float, float, int]]) -> int:
    """The copy whose best epoch scored highest, per copy (score, loss, epoch); at equal scores the lower loss."""
    return max(range(len(best)), key=lambda i: (best[i][0], -best[i][1]))


def leading(scores: list[dict], chosen_by: str) -> int:
    """The copy with the best validation score, at equal scores the lower validation loss (as `better`)."""
    return max(range(len(scores)), key=lambda i: (scores[i][chosen_by], -scores[i]["loss"]))


def copy_losses(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each stacked copy's batch loss, (K,), as the loss reduces a batch alone: logits (K, B, labels), targets
    (K, B), or (K, B, labels) for multi-label data. With class weights, cross_entropy(weight=)'s mean: divided by
    the summed weights of the rows, not by their number."""
    k, b = logits.shape[:2]
    losses = task.loss(logits.flatten(0, 1), targets.flatten(0, 1), "none").view(k, b, -1)
    if task.multi_label or task.class_weights is None:
        return losses.mean(dim=(1, 2))
    return losses.sum(dim=(1, 2)) / task.class_weights.to(logits.device)[targets].sum(dim=1)


def _result(head, model, records, best, best_state, lrs, keep_best, stackable, stopped, validation,
            chosen_by) -> TrainResult:
    last = records[-1]
    if validation is None:
        chosen, kept = 0, best[0][2] if keep_best else last["epoch"]
    elif keep_best:
        chosen = best_copy(best)
        kept = best[chosen][2]
    else:
        chosen = leading(last["validation"], chosen_by)
        kept = last["epoch"]
    state = best_state if keep_best else model.state_dict()
    if stackable:
        kept_head = copy.deepcopy(head)
        kept_head.load_state_dict(member_state(state, chosen))
    else:  # in place: the full-model fallback's head modules live inside the model that scores and is saved
        kept_head = head
        kept_head.load_state_dict(state)
    kept_head.eval()
    history = [{"epoch": r["epoch"], "train_loss": None if r["train_loss"] is None else r["train_loss"][chosen],
                "validation": None if r["validation"] is None else r["validation"][chosen],
                "test": r["test"][chosen], "seconds": round(r["seconds"], 4)} for r in records]
    sweep = [] if validation is None else [
        {"lr": lr, "validation_accuracy": [r["validation"][i][chosen_by] for r in records[1:]],
         "best_epoch": best[i][2], "best_validation_accuracy": best[i][0]} for i, lr in enumerate(lrs)]
    return TrainResult(kept_head, list(lrs), chosen, kept, stopped, history, sweep)
