"""calibration: the temperature fit finds the NLL minimum (and a known temperature); the threshold is the best
micro F1 of the grid, ties going to the one closest to 0.5."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headtune.calibration import THRESHOLDS, fit_temperature, micro_f1, nll, tune_threshold


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sampled(temperature: float, n: int = 20_000, k: int = 4, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): that temperature is the true one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, k))
    p = softmax(logits / temperature)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)  # inverse-CDF draw per row
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(true_t):
    logits, labels = sampled(true_t)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.06)
    best = nll(logits, labels, t)
    for other in (1.0, t * 1.01, t / 1.01, true_t):
        assert best <= nll(logits, labels, other) + 1e-12
    # T > 0 divides every logit alike: the predictions are the same
    assert np.array_equal((logits / t).argmax(axis=1), logits.argmax(axis=1))


def test_fit_is_the_minimum_of_a_fine_grid():
    logits, labels = sampled(1.7, n=3000, k=6, seed=3)
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    losses = [nll(logits, labels, g) for g in grid]
    assert nll(logits, labels, t) <= min(losses) + 1e-12
    assert abs(np.log(t) - np.log(grid[int(np.argmin(losses))])) < 2 * (grid[1] / grid[0] - 1)


def test_nll_equals_scikit_learn_log_loss():
    from sklearn.metrics import log_loss

    logits, labels = sampled(1.0, n=500, k=5, seed=1)
    for t in (0.3, 1.0, 4.0):
        expected = log_loss(labels, softmax(logits / t), labels=range(5))
        assert nll(logits, labels, t) == pytest.approx(expected, rel=1e-9)


def test_fit_stops_at_the_edges_of_its_range():
    labels = np.array([0, 1, 2, 1])
    separable = np.eye(3)[labels] * 5.0  # always right: sharper is always better
    assert fit_temperature(separable, labels) == pytest.approx(0.05, rel=1e-5)
    wrong = np.eye(3)[[1, 2, 0, 0]] * 5.0  # always wrong: flatter is always better
    assert fit_temperature(wrong, labels) == pytest.approx(20.0, rel=1e-5)
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_scaled_logits_scale_the_temperature_and_large_ones_do_not_overflow():
    logits, labels = sampled(1.0, n=1000, k=3, seed=2)
    assert fit_temperature(logits * 10, labels) == pytest.approx(10 * fit_temperature(logits, labels), rel=1e-5)
    labels = np.array([0, 1, 2, 1])
    huge = np.eye(3)[labels] * 1e4  # exp(1e4 / 0.05) overflows without the max shift
    assert fit_temperature(huge, labels) == pytest.approx(0.05, rel=1e-5)
    assert nll(huge, labels, 0.05) == 0.0 and nll(huge, [1, 1, 1, 1], 0.05) == pytest.approx(1e4 / 0.05 / 2)


# --- threshold ---------------------------------------------------------------------------------------------------

def test_threshold_grid():
    assert [float(t) for t in THRESHOLDS] == [round(0.05 * i, 2) for i in range(1, 20)]


def test_threshold_ties_go_to_the_one_closest_to_half():
    targets = np.array([[1, 0], [0, 1]])
    # perfect for every threshold in [0.3, 0.7): 0.5 itself
    assert tune_threshold(np.array([[0.7, 0.2], [0.3, 0.8]]), targets) == 0.5
    # perfect only for 0.15 .. 0.4 (a label is predicted at or above the threshold): 0.4
    assert tune_threshold(np.array([[0.4, 0.1]]), np.array([[1, 0]])) == 0.4
    # perfect only for 0.65 .. 0.9
    assert tune_threshold(np.array([[0.95, 0.62]]), np.array([[1, 0]])) == 0.65
    # 0.6 itself predicts a probability of 0.6: perfect from 0.65 on
    assert tune_threshold(np.array([[0.95, 0.6]]), np.array([[1, 0]])) == 0.65


def test_threshold_finds_a_low_optimum():
    # positives score 0.2, negatives 0.1: only 0.1 < t <= 0.2 separates them (0.15 and 0.2 of the grid)
    probabilities = np.array([[0.2, 0.1, 0.1], [0.1, 0.2, 0.2], [0.1, 0.1, 0.1]])
    targets = (probabilities > 0.15).astype(int)
    assert tune_threshold(probabilities, targets) == 0.2
    assert micro_f1(targets, probabilities >= 0.2) == 1.0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(1, 40))
def test_threshold_is_the_best_of_the_grid_by_scikit_learn(seed, k, n):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    targets = (rng.random((n, k)) < 0.3).astype(int)
    probabilities = np.clip(0.6 * targets + rng.normal(0.2, 0.25, (n, k)), 0, 1)
    t = tune_threshold(probabilities, targets)
    assert t in {float(x) for x in THRESHOLDS} and type(t) is float
    scores = {float(x): f1_score(targets, (probabilities >= x).astype(int), average="micro", zero_division=0.0)
              for x in THRESHOLDS}
    assert scores[t] == pytest.approx(max(scores.values()), abs=1e-12)
    closer = [x for x in scores if abs(x - 0.5) < abs(t - 0.5) - 1e-9]
    assert all(scores[x] < scores[t] - 1e-12 for x in closer)
