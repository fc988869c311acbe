"""Seeded samples of labelled rows: stratified by label, the held-out validation rows, and the smallest
sample that keeps every class. Pure functions of the labels and a seed, so a sample is the same rows on
every machine and in every process; the only I/O is the one-line error a size no split can give.
"""
from __future__ import annotations

import logging

import numpy as np

from .errors import HeadtuneError, flag

log = logging.getLogger(__name__)


def allocate(counts: np.ndarray, n) -> np.ndarray:
    """Rows per class in a stratified sample of `n` (an int, or an array of sizes: one row each).

    Shares proportional to `counts`, rounded down; the rows left over go to the largest remainders
    (ties: the lower class), so a sample has exactly n rows.
    """
    sizes = np.atleast_1d(n)
    exact = counts[None, :] * sizes[:, None] / counts.sum()
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(counts.size), order.shape), axis=1)
    take += rank < (sizes - take.sum(axis=1))[:, None]
    return take if np.ndim(n) else take[0]


def _check_size(n: int, total: int, split: str, option: str | None = None) -> None:
    option = option or flag(split + "_size")
    if n > total:
        raise HeadtuneError(f"{option} {n:,} is larger than the {split} split, which has "
                            f"{total:,} rows; pass {option} {total} or less")


def sample_stratified(labels: np.ndarray, n: int, seed: int, split: str, option: str | None = None) -> np.ndarray:
    """Indices (sorted) of a seeded sample of `n` rows whose label shares match the split's."""
    total = len(labels)
    _check_size(n, total, split, option)
    if n == total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, allocate(counts, n))]
    return np.sort(np.concatenate(chosen))


def smallest_sample_keeping_classes(counts: np.ndarray) -> int:
    """The smallest size from which on every stratified sample has every class.

    Searches down from a size where every class's exact share is at least one row, since with
    largest remainders a class can lose its only row again as the sample grows.
    """
    low = -(-int(counts.sum()) // int(counts.min()))
    step = max(1, 2**20 // counts.size)  # candidate sizes evaluated at once, about 8 MB of shares
    while low > counts.size:
        sizes = np.arange(max(counts.size, low - step), low)
        failing = np.flatnonzero((allocate(counts, sizes) == 0).any(axis=1))
        if len(failing):
            return int(sizes[failing[-1]]) + 1
        low = int(sizes[0])
    return low


def draw(labels: np.ndarray, size: int, seed: int, split: str, multi_label: bool, option: str | None = None
         ) -> np.ndarray:
    """Sorted rows of a seeded sample: stratified by label, or at random for multi-label rows (no
    stratification over label sets). `headtune evaluate --size` draws the same rows as a run's --test-size."""
    if not multi_label:
        return sample_stratified(labels, size, seed, split, option)
    total = len(labels)
    _check_size(size, total, split, option)
    return np.arange(total) if size == total else np.sort(
        np.random.default_rng(seed).choice(total, size=size, replace=False))


def hold_out(labels: np.ndarray, fraction: float, seed: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions in the training sample: a stratified `fraction` (at least one row) held out.

    Drawn from a random stream of its own, so the sample is the same rows whatever --val-fraction is.
    A class's last example always stays in train. Multi-label rows are held out at random (not stratified).
    """
    n = len(labels)
    want = max(1, round(fraction * n))
    rng = np.random.default_rng([seed, 1])
    if multi_label:
        chosen = rng.choice(n, size=min(want, n - 1), replace=False)
    else:
        classes, counts = np.unique(labels, return_counts=True)
        take = np.minimum(allocate(counts, want), counts - 1)
        chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
                                 for c, k in zip(classes, take)])
    held = np.zeros(n, dtype=bool)
    held[chosen] = True
    if not held.any():
        log.warning("no validation rows: every class has a single training example")
    return np.flatnonzero(~held), np.flatnonzero(held)


def assign_folds(labels: np.ndarray, folds: int, seed: int, multi_label: bool) -> np.ndarray:
    """The fold (0..folds-1) of each row of the training sample, for cross-validation.

    Rows are ordered by class, at random within a class (multi-label rows: at random overall), and dealt out
    in turn, so every fold has a share of every class that differs from another fold's by at most one row
    and the folds' sizes differ by at most one. Drawn from a random stream of its own, like `hold_out`.
    """
    rng = np.random.default_rng([seed, 2])
    order = rng.permutation(len(labels))
    if not multi_label:
        order = order[np.argsort(labels[order], kind="stable")]
    fold = np.empty(len(labels), dtype=np.int64)
    fold[order] = np.arange(len(labels)) % folds
    return fold
