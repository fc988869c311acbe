"""Scoring a head's logits on a labelled split: the full report a run and `headtune evaluate` write."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .architectures.parts import final_linear
from .metrics import (classification_report, expected_calibration_error, multilabel_report,
                      reliability_bins)


def probabilities(logits: torch.Tensor, multi_label: bool) -> np.ndarray:
    logits = logits.float()
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).numpy()


def score(probs: np.ndarray, labels: np.ndarray, task, label_names: list[str]) -> dict:
    """From predicted probabilities (softmax, or a sigmoid per label): accuracy, F1 (as metric_names says),
    per-class results, confusion, log loss; for single-label data also the expected calibration error
    (15 bins) and the reliability bins."""
    probs = np.asarray(probs, dtype=np.float64)
    clipped = np.clip(probs, 1e-12, 1 - 1e-12)
    if task.multi_label:
        report = multilabel_report(labels, probs >= task.threshold, label_names)
        truth = np.asarray(labels, dtype=np.float64)
        report["loss"] = float(-np.mean(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)))
        return report
    positive = task.positive if len(label_names) == 2 else None
    report = classification_report(labels, probs.argmax(-1), label_names, positive)
    report["loss"] = float(-np.mean(np.log(clipped[np.arange(len(labels)), labels])))
    report["ece"] = expected_calibration_error(probs, labels)
    report["reliability"] = reliability_bins(probs, labels)
    return report


def fold_temperature(head: nn.Module, temperature: float) -> None:
    """Divide the final layer's weights and bias by the temperature: the head then outputs logits / T, so the
    saved checkpoint gives the calibrated probabilities as an ordinary one (argmax unchanged)."""
    layer = final_linear(head)
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)


def majority_share(labels: np.ndarray, task) -> float:
    """The accuracy of always answering the most common label (set): the chance level of the charts."""
    if task.multi_label:
        _, counts = np.unique(np.asarray(labels).astype(np.uint8), axis=0, return_counts=True)
    else:
        counts = np.bincount(np.asarray(labels))
    return float(counts.max() / counts.sum())


def metric_names(label_names: list[str], task) -> dict[str, str]:
    if task.multi_label:
        return {"accuracy": "subset accuracy", "f1": "micro F1"}
    if len(label_names) == 2:
        return {"accuracy": "accuracy", "f1": f"F1 ({label_names[task.positive]})"}
    return {"accuracy": "accuracy", "f1": "macro F1"}
