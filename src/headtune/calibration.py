"""Fitting what the validation split decides after training: a softmax temperature and a multi-label threshold.

Pure numpy: torch.optim's import (~2 s) would cost more than these fits, which are a
1-D search over at most a few thousand validation rows.
"""
from __future__ import annotations

import math

import numpy as np

LOG_T_RANGE = (math.log(0.05), math.log(20.0))
THRESHOLDS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95
DEFAULT_THRESHOLD = 0.5  # multi-label: the threshold when none is set or tuned
_GOLDEN = (math.sqrt(5) - 1) / 2


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature) at the true labels."""
    logits = np.asarray(logits, dtype=np.float64)
    log_p = _log_softmax(logits / temperature)
    return float(-log_p[np.arange(len(logits)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tol: float = 1e-6) -> float:
    """The temperature T in [0.05, 20] minimising nll(logits, labels, T).

    The NLL is convex in 1/T (log-sum-exp of a linear function minus a linear function),
    hence unimodal in log T, so a golden-section search finds the minimum; log T treats
    "twice as hot" and "twice as cold" alike. A minimum outside the range ends at its edge.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(logits) == 0:
        raise ValueError("fit_temperature needs at least one row")

    def loss(log_t: float) -> float:
        return nll(logits, labels, math.exp(log_t))

    a, b = LOG_T_RANGE
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc <= fd:  # the minimum lies in [a, d]
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = loss(c)
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def micro_f1(targets: np.ndarray, predicted: np.ndarray) -> float:
    """2 TP / (2 TP + FP + FN) over every (row, label) cell; 0.0 when nothing is positive or predicted."""
    actual, predicted = np.asarray(targets).astype(bool), np.asarray(predicted).astype(bool)
    tp = int(np.sum(actual & predicted))
    denominator = 2 * tp + int(np.sum(actual ^ predicted))
    return 2 * tp / denominator if denominator else 0.0


def tune_threshold(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The one threshold of 0.05, 0.10, ..., 0.95 with the best micro F1 when a label is predicted for
    probability >= threshold (as scoring and predict apply it); of equal scores the one closest to 0.5, the
    untuned default, so a tie never moves the threshold for nothing."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    scores = [micro_f1(targets, probabilities >= t) for t in THRESHOLDS]
    best = max(scores)
    tied = [t for t, s in zip(THRESHOLDS, scores) if s == best]
    return float(min(tied, key=lambda t: (round(abs(t - DEFAULT_THRESHOLD), 9), t)))
