"""Accuracy and F1 from labels and predictions: pure functions on numpy arrays.

Written out rather than imported from scikit-learn, whose import alone (~2 s) would be a
large share of a warm-cache run; the results equal scikit-learn's (tests compare them).
(The `evaluate` library is no option either: it downloads its metric scripts from the Hub.)
"""
from __future__ import annotations

import numpy as np


def f1_of_class(labels: np.ndarray, predictions: np.ndarray, cls: int) -> float:
    """F1 of one class: 2 TP / (2 TP + FP + FN); 0.0 when the class is neither predicted nor present."""
    predicted, actual = predictions == cls, labels == cls
    tp = int(np.sum(predicted & actual))
    denominator = 2 * tp + int(np.sum(predicted & ~actual)) + int(np.sum(~predicted & actual))
    return 2 * tp / denominator if denominator else 0.0


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int,
                           positive: int = 1) -> dict[str, float]:
    """Accuracy, and F1: of the positive class (id 1) for two labels, macro-averaged for more.

    The macro average runs over the classes that occur in the labels or the predictions, as
    scikit-learn's default does: a class absent from both says nothing about this test set.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if num_labels == 2:
        f1 = f1_of_class(labels, predictions, positive)
    else:
        f1 = float(np.mean([f1_of_class(labels, predictions, c) for c in np.union1d(labels, predictions)]))
    return {"accuracy": float(np.mean(labels == predictions)), "f1": float(f1)}
