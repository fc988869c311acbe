"""classification_metrics: accuracy, positive-class F1 for two labels, macro F1 for more; exact values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headtune.metrics import classification_metrics


def test_binary_f1_is_the_positive_class_f1():
    labels = np.array([1, 1, 0, 0, 1])
    preds = np.array([1, 0, 0, 1, 1])
    # positive class: TP=2, FP=1, FN=1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3
    # (the negative class would give 1/2, their macro average 7/12: neither is what binary F1 means)
    m = classification_metrics(labels, preds, num_labels=2)
    assert m == {"accuracy": pytest.approx(3 / 5, abs=1e-12), "f1": pytest.approx(2 / 3, abs=1e-12)}


def test_binary_f1_ignores_how_well_negatives_are_found():
    labels = np.array([0, 0, 0, 0, 1, 1])
    all_negative = classification_metrics(labels, np.zeros(6, dtype=int), 2)
    assert all_negative["accuracy"] == pytest.approx(4 / 6)
    assert all_negative["f1"] == 0.0  # no positive predicted: precision undefined -> 0, not an error
    all_positive = classification_metrics(labels, np.ones(6, dtype=int), 2)
    # TP=2, FP=4, FN=0 -> 2*2 / (4 + 4) = 1/2
    assert all_positive == {"accuracy": pytest.approx(2 / 6), "f1": pytest.approx(1 / 2)}


def test_multiclass_f1_is_macro_averaged():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    # class 0: TP1 FP1 FN1 -> 1/2; class 1: TP2 FP1 FN0 -> 4/5; class 2: TP1 FP0 FN1 -> 2/3
    expected_macro = (1 / 2 + 4 / 5 + 2 / 3) / 3
    m = classification_metrics(labels, preds, num_labels=3)
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-12)
    assert m["f1"] == pytest.approx(expected_macro, abs=1e-12)
    assert m["f1"] != pytest.approx(4 / 6)  # not micro (= accuracy here)


def test_perfect_predictions_and_plain_float_results():
    labels = [2, 0, 1, 3, 3]
    m = classification_metrics(labels, list(labels), num_labels=4)
    assert m == {"accuracy": 1.0, "f1": 1.0}
    assert all(type(v) is float for v in m.values())  # JSON-serialisable, not numpy scalars


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=5).flatmap(
    lambda k: st.tuples(st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)),
                                             min_size=1, max_size=40))))
def test_equal_to_scikit_learn(case):
    from sklearn.metrics import accuracy_score, f1_score

    k, pairs = case
    labels, preds = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    m = classification_metrics(labels, preds, num_labels=k)
    average = dict(pos_label=1, average="binary") if k == 2 else dict(average="macro")
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(labels, preds, zero_division=0.0, **average), abs=1e-12)
