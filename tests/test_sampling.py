"""sampling.py: stratified samples, the held-out validation rows, the smallest sample keeping every class.
(Property tests of sample_stratified: test_inference_fuzz.py; samples through load_splits: test_data*.py.)"""
from __future__ import annotations

import numpy as np

from headtune.sampling import allocate, hold_out, sample_stratified, smallest_sample_keeping_classes


def test_sample_proportions_of_unbalanced_classes():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    index = sample_stratified(labels, 30, seed=0, split="train")
    assert len(index) == 30 and len(set(index.tolist())) == 30
    assert np.all(np.diff(index) > 0)  # sorted: the sample keeps the split's order
    assert np.bincount(labels[index]).tolist() == [21, 6, 3]


def test_sample_of_the_whole_split_keeps_everything():
    labels = np.array([0, 1, 1, 0, 1])
    assert sample_stratified(labels, 5, seed=0, split="train").tolist() == [0, 1, 2, 3, 4]


def test_holdout_never_takes_a_class_last_example():
    labels = np.array([0] * 50 + [1] * 2 + [2])
    for seed in range(20):
        train, held = hold_out(labels, 0.4, seed, multi_label=False)
        assert np.bincount(labels[train], minlength=3).min() >= 1
        assert len(train) + len(held) == len(labels) and not set(train) & set(held)
        # 40% of 53 rows = 21: shares 19.8 / 0.8 / 0.4 round to 20 / 1 / 0; a 1-row class keeps its row
        assert np.bincount(labels[held], minlength=3).tolist() == [20, 1, 0]


def test_holdout_draws_from_its_own_random_stream():
    labels = np.array([0, 1] * 50)
    _, held = hold_out(labels, 0.5, seed=3, multi_label=False)
    # the sample's stream (default_rng(3)) would pick these rows for class 0 first
    first_draw = np.random.default_rng(3).choice(np.flatnonzero(labels == 0), size=25, replace=False)
    assert set(held[labels[held] == 0]) != set(first_draw)


def test_smallest_sample_searches_past_a_size_that_loses_a_class_again():
    counts = np.array([35, 41] + [130] * 75)
    smallest = smallest_sample_keeping_classes(counts)
    sizes = np.arange(1, counts.sum() + 1)
    keeps = (allocate(counts, sizes) > 0).all(axis=1)
    assert keeps[smallest - 1:].all() and not keeps[smallest - 2]


def test_allocation_matches_the_one_row_at_a_time_rounding():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(1, 60, size=rng.integers(1, 12))
        n = int(rng.integers(1, counts.sum() + 1))
        exact = counts * n / counts.sum()  # the rounding sample_stratified has always used
        take = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
            take[i] += 1
        assert allocate(counts, n).tolist() == take.tolist()
        assert allocate(counts, np.array([n, n]))[1].tolist() == take.tolist()
