"""metrics: accuracy and F1, single- and multi-label reports, calibration error; exact values by hand and
equality with scikit-learn (or an independent reference loop) on random cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headtune.metrics import (classification_metrics, classification_report, expected_calibration_error,
                              multilabel_report, reliability_bins)


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


def label_pairs(max_classes: int, max_rows: int):
    """(k, [(true label, predicted label), ...]) with 2..max_classes classes."""
    return st.integers(min_value=2, max_value=max_classes).flatmap(
        lambda k: st.tuples(st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)),
                                                 min_size=1, max_size=max_rows)))


@settings(max_examples=200, deadline=None)
@given(label_pairs(max_classes=5, max_rows=40))
def test_equal_to_scikit_learn(case):
    from sklearn.metrics import accuracy_score, f1_score

    k, pairs = case
    labels, preds = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    m = classification_metrics(labels, preds, num_labels=k)
    average = dict(pos_label=1, average="binary") if k == 2 else dict(average="macro")
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(labels, preds, zero_division=0.0, **average), abs=1e-12)


def test_positive_picks_the_reported_class_and_none_means_macro():
    labels = np.array([1, 1, 0, 0, 1])
    preds = np.array([1, 0, 0, 1, 1])
    # class 0: TP=1, FP=1, FN=1 -> 1/2; class 1: 2/3 (as above)
    assert classification_metrics(labels, preds, 2, positive=0)["f1"] == pytest.approx(1 / 2, abs=1e-12)
    assert classification_metrics(labels, preds, 2, positive=None)["f1"] == pytest.approx(7 / 12, abs=1e-12)


# --- classification_report ---------------------------------------------------------------------------------------

def test_classification_report_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    r = classification_report(labels, preds, ["a", "b", "c", "d"], positive=None)
    assert r["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]  # rows true
    assert r["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    # never predicted and never true: zero division counts as 0, and it stays out of the macro average
    assert r["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, abs=1e-12)
    assert r["f1"] == r["macro_f1"] and r["accuracy"] == pytest.approx(4 / 6)
    assert list(r["per_class"]) == ["a", "b", "c", "d"]  # label order kept


def test_classification_report_binary_f1_is_the_positive_class():
    labels, preds = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    r = classification_report(labels, preds, ["neg", "pos"], positive=1)
    assert r["f1"] == pytest.approx(2 / 3) == r["per_class"]["pos"]["f1"]
    assert r["macro_f1"] == pytest.approx(7 / 12)
    assert r["confusion_matrix"] == [[1, 1], [1, 2]]
    assert classification_report(labels, preds, ["neg", "pos"], positive=0)["f1"] == pytest.approx(1 / 2)


def _json_types_only(value):
    """Every leaf a plain int, float, str or None: what json.dump writes without numpy's help."""
    if isinstance(value, dict):
        return all(type(k) is str and _json_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_types_only(v) for v in value)
    return value is None or type(value) in (int, float, str)


def test_reports_are_plain_json():
    r = classification_report(np.array([0, 1, 2]), np.array([0, 2, 2]), ["a", "b", "c"], None)
    m = multilabel_report(np.array([[1, 0], [0, 1]]), np.array([[True, False], [True, True]]), ["x", "y"])
    for report in (r, m):
        assert _json_types_only(report) and json.loads(json.dumps(report)) == report


@settings(max_examples=150, deadline=None)
@given(label_pairs(max_classes=6, max_rows=50))
def test_classification_report_equals_scikit_learn(case):
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    k, pairs = case
    labels, preds = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    names = [f"c{i}" for i in range(k)]
    r = classification_report(labels, preds, names, positive=None)
    assert r["confusion_matrix"] == confusion_matrix(labels, preds, labels=range(k)).tolist()
    p, rc, f, s = precision_recall_fscore_support(labels, preds, labels=range(k), zero_division=0.0)
    for i, name in enumerate(names):
        assert r["per_class"][name] == pytest.approx(
            {"precision": p[i], "recall": rc[i], "f1": f[i], "support": s[i]}, abs=1e-12)
    assert r["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0.0), abs=1e-12)


# --- multilabel_report -------------------------------------------------------------------------------------------

def test_multilabel_report_by_hand():
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    r = multilabel_report(targets, predicted, ["x", "y", "z"])
    # rows right in every label: 0 and 3
    assert r["subset_accuracy"] == r["accuracy"] == 0.5
    assert r["confusion"] == {"x": {"tp": 2, "fp": 1, "fn": 0, "tn": 1},
                              "y": {"tp": 1, "fp": 0, "fn": 1, "tn": 2},
                              "z": {"tp": 1, "fp": 0, "fn": 0, "tn": 3}}
    # micro: TP 4, FP 1, FN 1 -> 8 / 10
    assert r["micro_f1"] == r["f1"] == pytest.approx(0.8)
    assert r["per_label"]["x"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_label"]["y"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["per_label"]["z"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: st.lists(  # (n, 1) is one binary column to scikit-learn
    st.tuples(st.lists(st.booleans(), min_size=k, max_size=k), st.lists(st.booleans(), min_size=k, max_size=k)),
    min_size=1, max_size=30)))
def test_multilabel_report_equals_scikit_learn(rows):
    from sklearn.metrics import accuracy_score, f1_score, multilabel_confusion_matrix, precision_recall_fscore_support

    targets = np.array([t for t, _ in rows], dtype=int)
    predicted = np.array([p for _, p in rows], dtype=bool)
    names = [f"l{i}" for i in range(targets.shape[1])]
    r = multilabel_report(targets, predicted, names)
    y_pred = predicted.astype(int)
    assert r["subset_accuracy"] == pytest.approx(accuracy_score(targets, y_pred), abs=1e-12)
    for average in ("micro", "macro"):
        expected = f1_score(targets, y_pred, average=average, zero_division=0.0)
        assert r[f"{average}_f1"] == pytest.approx(expected, abs=1e-12)
    p, rc, f, s = precision_recall_fscore_support(targets, y_pred, zero_division=0.0)
    for i, (name, m) in enumerate(zip(names, multilabel_confusion_matrix(targets, y_pred))):
        assert r["per_label"][name] == pytest.approx(
            {"precision": p[i], "recall": rc[i], "f1": f[i], "support": s[i]}, abs=1e-12)
        (tn, fp), (fn, tp) = m
        assert r["confusion"][name] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


# --- calibration error -------------------------------------------------------------------------------------------

def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.7 (right), three different bins of 1/15:
    # |0.5 - 0.9| * 2/4 + |1 - 0.6| * 1/4 + |1 - 0.7| * 1/4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.2 + 0.1 + 0.075, abs=1e-12)
    bins = reliability_bins(probabilities, labels)
    full = [b for b in bins if b["count"]]
    assert [b["count"] for b in full] == [1, 1, 2]
    assert [b["accuracy"] for b in full] == [1.0, 1.0, 0.5]
    assert [b["confidence"] for b in full] == pytest.approx([0.6, 0.7, 0.9])


def test_reliability_bins_cover_zero_to_one_and_close_on_the_right():
    # 4 bins: edges 0, .25, .5, .75, 1 are exact in binary, so the boundaries are tested exactly
    probabilities = np.array([[0.5, 0.5], [0.75, 0.25], [0.76, 0.24], [1.0, 0.0]])
    bins = reliability_bins(probabilities, np.array([0, 0, 1, 0]), bins=4)
    assert [(b["low"], b["high"]) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b["count"] for b in bins] == [0, 1, 1, 2]  # 0.5 in (.25, .5], 0.75 in (.5, .75]
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None  # empty: nothing to average
    assert bins[3] == {"low": 0.75, "high": 1.0, "count": 2, "confidence": pytest.approx(0.88), "accuracy": 0.5}


def test_perfectly_calibrated_and_fully_confident():
    # ten rows at confidence 0.8, eight of them right: no gap
    probabilities = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)
    one_hot = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(one_hot, np.array([0, 1, 2, 0])) == pytest.approx(0.25)


def _reference_ece(probabilities, labels, bins):
    """Guo et al.'s loop, written independently: bins (lower, upper], gap weighted by the bin's share."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    total = 0.0
    for lower, upper in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 60), st.sampled_from([5, 10, 15]))
def test_expected_calibration_error_equals_a_reference_loop(seed, k, n, bins):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, k))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    ece = expected_calibration_error(probabilities, labels, bins)
    assert ece == pytest.approx(_reference_ece(probabilities, labels, bins), abs=1e-12)
    table = reliability_bins(probabilities, labels, bins)
    assert len(table) == bins and sum(b["count"] for b in table) == n
    for b in table:
        if b["count"]:
            assert b["low"] <= b["confidence"] <= b["high"] and 0.0 <= b["accuracy"] <= 1.0
