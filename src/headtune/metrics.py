"""Accuracy and F1 from labels and predictions: pure functions, scikit-learn underneath.

(The `evaluate` library downloads its metric scripts from the Hub at run time, which
fails offline; scikit-learn computes the same numbers locally.)
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, and F1: of the positive class (id 1) for two labels, macro-averaged for more.

    The macro average runs over the classes that occur in the labels or the predictions, as
    scikit-learn's default does: a class absent from both says nothing about this test set.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if num_labels == 2:
        f1 = f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0)
    else:
        f1 = f1_score(labels, predictions, average="macro", zero_division=0.0)
    return {"accuracy": float(accuracy_score(labels, predictions)), "f1": float(f1)}

