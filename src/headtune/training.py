"""Training the head: AdamW (optim.py) on its parameters, linear or constant lr, over inputs that yield logits.

`CachedInputs` runs the standalone head on features from the one backbone pass; the
fallback `FullModelInputs` runs the whole frozen model on token batches (for
architectures without a head mapping), whose own head modules are what trains.
The loop is the same for both: it sees a head module and inputs that give logits.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .config import TrainConfig
from .features import collate, length_order
from .metrics import classification_metrics
from .optim import AdamW

log = logging.getLogger(__name__)


class Inputs(Protocol):
    def __len__(self) -> int: ...

    def logits(self, index: torch.Tensor) -> torch.Tensor: ...


class CachedInputs:
    """Head logits from cached backbone features."""

    def __init__(self, head: nn.Module, features: torch.Tensor):
        self.head = head
        self.features = features.to(next(head.parameters()).device)

    def __len__(self) -> int:
        return len(self.features)

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        return self.head(self.features[index.to(self.features.device)])


class FullModelInputs:
    """Logits from the whole (frozen) model on padded token batches: the slow fallback."""

    def __init__(self, model: nn.Module, ids: list[list[int]], pad_id: int):
        self.model, self.ids, self.pad_id = model, ids, pad_id

    def __len__(self) -> int:
        return len(self.ids)

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids, mask = collate([self.ids[i] for i in index.tolist()], self.pad_id)
        return self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits


@dataclass
class EpochResult:
    epoch: int  # 0 = before training
    train_loss: float | None
    accuracy: float
    f1: float
    seconds: float


@dataclass
class History:
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def before(self) -> EpochResult:
        return self.epochs[0]

    @property
    def after(self) -> EpochResult:
        return self.epochs[-1]


def predict_logits(head: nn.Module, inputs: Inputs, batch_size: int = 256) -> torch.Tensor:
    """Logits for every row, in order, with the head in eval mode (dropout off)."""
    head.eval()
    with torch.inference_mode():
        index = torch.arange(len(inputs))
        if isinstance(inputs, FullModelInputs):  # similar lengths together: less padding
            index = torch.as_tensor(length_order(np.array([len(x) for x in inputs.ids])))
        out = [inputs.logits(chunk).float().cpu() for chunk in index.split(batch_size)]
        logits = torch.cat(out)
    result = torch.empty_like(logits)
    result[index] = logits
    return result


def evaluate(head: nn.Module, inputs: Inputs, labels: np.ndarray, num_labels: int) -> dict:
    preds = predict_logits(head, inputs).argmax(-1).numpy()
    return classification_metrics(labels, preds, num_labels)


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each optimizer step (0-based).

    "linear" decays to 0 over all steps, as transformers' Trainer does by default: the last steps are
    small, so the head settles instead of ending wherever the final full-size step left it.
    """
    if schedule == "linear":
        return lambda step: 1 - step / total_steps
    return lambda step: 1.0


def train_head(head: nn.Module, train: Inputs, train_labels: np.ndarray, test: Inputs, test_labels: np.ndarray,
               num_labels: int, cfg: TrainConfig, on_epoch: Callable[[EpochResult], None] = lambda r: None) -> History:
    """Evaluate the untrained head (epoch 0), then train it for cfg.epochs, evaluating after each."""
    device = next(head.parameters()).device
    # Dropout draws from torch's global RNG: seed it for this loop only, restoring the caller's state after.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        return _train(head, train, train_labels, test, test_labels, num_labels, cfg, on_epoch, device)


def _train(head, train, train_labels, test, test_labels, num_labels, cfg, on_epoch, device) -> History:
    history = History()

    def record(epoch: int, loss: float | None, started: float) -> None:
        metrics = evaluate(head, test, test_labels, num_labels)
        result = EpochResult(epoch, loss, metrics["accuracy"], metrics["f1"], time.perf_counter() - started)
        history.epochs.append(result)
        on_epoch(result)

    record(0, None, time.perf_counter())
    optimizer = AdamW(head.parameters(), weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling independent of any other RNG use
    targets = torch.as_tensor(train_labels, dtype=torch.long, device=device)
    steps = -(-len(train) // cfg.batch_size) * cfg.epochs
    factor, step = lr_factor(cfg.lr_schedule, steps), 0
    bar = tqdm(total=steps, desc="training head", unit="step", disable=None, leave=False)
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        head.train()
        total = 0.0
        for index in torch.randperm(len(train), generator=generator).split(cfg.batch_size):
            loss = nn.functional.cross_entropy(train.logits(index), targets[index.to(device)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(cfg.lr * factor(step))
            step += 1
            total += loss.item() * len(index)
            bar.update(1)
        record(epoch, total / len(train), started)
    bar.close()
    head.eval()
    return history
