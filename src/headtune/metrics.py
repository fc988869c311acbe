"""Scores of a head's predictions: pure functions on numpy arrays.

Written out rather than imported from scikit-learn, whose import alone (~2 s) would be a
large share of a warm-cache run; the results equal scikit-learn's (tests compare them).
(The `evaluate` library is no option either: it downloads its metric scripts from the Hub.)
Every number returned is a plain int or float, so the dicts go into metrics.json as they are.
"""
from __future__ import annotations

import numpy as np

BINS = 15  # the usual count for expected calibration error (Guo et al., 2017)


def _ratio(numerator: float, denominator: float) -> float:
    # scikit-learn's zero_division=0: an undefined precision, recall or F1 counts as 0, not as an error
    return float(numerator / denominator) if denominator else 0.0


def _scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def f1_of_class(labels: np.ndarray, predictions: np.ndarray, cls: int) -> float:
    """F1 of one class: 2 TP / (2 TP + FP + FN); 0.0 when the class is neither predicted nor present."""
    predicted, actual = predictions == cls, labels == cls
    return _scores(int(np.sum(predicted & actual)), int(np.sum(predicted & ~actual)),
                   int(np.sum(~predicted & actual)))["f1"]


def _macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    # Over the classes that occur in the labels or the predictions, as scikit-learn's default does:
    # a class absent from both says nothing about this test set.
    return float(np.mean([f1_of_class(labels, predictions, c) for c in np.union1d(labels, predictions)]))


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int,
                           positive: int | None = 1) -> dict[str, float]:
    """Accuracy, and F1: of class `positive` for two labels, macro-averaged for more (or when positive is None)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if num_labels == 2 and positive is not None:
        f1 = f1_of_class(labels, predictions, positive)
    else:
        f1 = _macro_f1(labels, predictions)
    return {"accuracy": float(np.mean(labels == predictions)), "f1": float(f1)}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label, both in label-id order."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def classification_report(labels: np.ndarray, predictions: np.ndarray, label_names: list[str],
                          positive: int | None) -> dict:
    """Single-label scores: accuracy and F1 as classification_metrics, per-class precision, recall, F1
    and support, the macro F1 and the confusion matrix (rows true, columns predicted)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    matrix = confusion_matrix(labels, predictions, len(label_names))
    tp = np.diag(matrix)
    fp, fn = matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp
    return {
        **classification_metrics(labels, predictions, len(label_names), positive),
        "per_class": {name: {**_scores(int(tp[i]), int(fp[i]), int(fn[i])), "support": int(matrix[i].sum())}
                      for i, name in enumerate(label_names)},
        "macro_f1": _macro_f1(labels, predictions),
        "confusion_matrix": matrix.tolist(),
    }


def multilabel_report(targets: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> dict:
    """Multi-label scores: subset accuracy (every label of a row right), micro and macro F1, per-label
    precision, recall, F1 and support, and each label's tp/fp/fn/tn.

    "accuracy" and "f1" repeat subset accuracy and micro F1, so that charts and summaries read both
    tasks alike. The macro F1 averages over every label, as scikit-learn's does for indicator matrices.
    """
    actual, predicted = np.asarray(targets).astype(bool), np.asarray(predicted).astype(bool)
    tp = np.sum(actual & predicted, axis=0)
    fp = np.sum(~actual & predicted, axis=0)
    fn = np.sum(actual & ~predicted, axis=0)
    tn = np.sum(~actual & ~predicted, axis=0)
    per_label = {name: {**_scores(int(tp[i]), int(fp[i]), int(fn[i])), "support": int(tp[i] + fn[i])}
                 for i, name in enumerate(label_names)}
    subset = float(np.mean(np.all(actual == predicted, axis=1)))
    micro = _scores(int(tp.sum()), int(fp.sum()), int(fn.sum()))["f1"]
    return {
        "accuracy": subset, "f1": micro,
        "subset_accuracy": subset, "micro_f1": micro,
        "macro_f1": float(np.mean([s["f1"] for s in per_label.values()])),
        "per_label": per_label,
        "confusion": {name: {"tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i]), "tn": int(tn[i])}
                      for i, name in enumerate(label_names)},
    }


def _top_label(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (the top probability) and whether the top label is right, per row."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == np.asarray(labels)


def _bin_index(confidence: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    # Bins are (low, high], as in Guo et al.; digitize against the same edges that are reported,
    # so a confidence of exactly 2/15 lands in the bin that says it ends at 2/15.
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(confidence, edges, right=True) - 1, 0, bins - 1), edges


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width confidence bin over [0, 1]: its edges, how many rows fall in it, their mean
    confidence and their accuracy (None for an empty bin: there is nothing to average)."""
    confidence, correct = _top_label(probabilities, labels)
    index, edges = _bin_index(confidence, bins)
    result = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        result.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                       "confidence": float(confidence[inside].mean()) if count else None,
                       "accuracy": float(correct[inside].mean()) if count else None})
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Top-label ECE: the gap |accuracy - mean confidence| per confidence bin, weighted by the bin's share of rows."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(b["count"] for b in table)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))
