"""crossval.py: folds x rates copies trained together, choices on out-of-fold scores, the final head on every row."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from headtune.config import TrainConfig
from headtune.crossval import cross_validate, train_on_folds
from headtune.sampling import assign_folds
from headtune.training import LR_GRID, CachedInputs, Task, logits_of, train_head
from test_training import _blobs, _head, _split

CPU = torch.device("cpu")


def test_folds_share_out_every_class_evenly():
    labels = np.array([0] * 53 + [1] * 31 + [2] * 7 + [3])
    for seed in range(5):
        folds = assign_folds(labels, 5, seed, multi_label=False)
        sizes = np.bincount(folds, minlength=5)
        assert sizes.sum() == len(labels) and sizes.max() - sizes.min() <= 1
        per_class = np.stack([np.bincount(folds[labels == c], minlength=5) for c in range(4)])
        assert (per_class.max(axis=1) - per_class.min(axis=1) <= 1).all()
    a, b, c = (assign_folds(labels, 5, s, multi_label=False) for s in (1, 1, 2))
    assert (a == b).all() and (a != c).any()  # seeded: the same folds on every machine, others for another seed


def test_multi_label_folds_are_random_and_even():
    labels = np.zeros((23, 4))
    folds = assign_folds(labels, 4, 0, multi_label=True)
    assert sorted(np.bincount(folds).tolist()) == [5, 6, 6, 6]


def test_a_fold_copy_trains_exactly_as_a_head_alone_on_the_other_folds():
    """One epoch (the first shuffle is the same draw), no dropout, folds of equal size: the out-of-fold logits of
    fold 0's rows are those of a head trained alone, at the chosen rate, on the rows of folds 1-3."""
    x, y = _blobs(96, 4)
    folds = assign_folds(y, 4, 0, multi_label=False)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=3)
    lrs = [1e-3, 1e-2, 1e-1]
    cv = cross_validate(_head(two_layers=True), x, y, folds, Task(2), cfg, lrs)
    outside, inside = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    alone = train_head(_head(two_layers=True), _split(x[outside], y[outside]), None, _split(x[inside], y[inside]),
                       Task(2), cfg, [lrs[cv.chosen]])
    assert torch.allclose(cv.logits[inside], logits_of(alone.head, CachedInputs(x[inside], CPU), False)[0], atol=1e-5)


def test_out_of_fold_scores_come_from_heads_that_never_saw_the_row():
    """Random labels on random wide features: every head can memorise its training rows, so a row scored by a
    head that trained on it would be right; out of fold, the rows are at chance."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 256, generator=g)
    y = torch.randint(0, 2, (160,), generator=g).numpy()
    folds = assign_folds(y, 4, 0, multi_label=False)
    cfg = TrainConfig(epochs=30, batch_size=16, seed=0, keep="last")
    result = train_on_folds(_head(hidden=256), _split(x, y), folds, _split(x[:8], y[:8]), Task(2), cfg, [0.1])
    out_of_fold = (result.out_of_fold.argmax(-1).numpy() == y).mean()
    seen = (logits_of(result.head, CachedInputs(x, CPU), False)[0].argmax(-1).numpy() == y).mean()
    assert seen > 0.95 and out_of_fold < 0.65


@pytest.fixture(scope="module")
def blobs():
    x, y = _blobs(300, 1)
    return x, y, assign_folds(y, 5, 0, multi_label=False), _split(*_blobs(128, 3))


def test_the_best_out_of_fold_rate_and_epoch_are_kept_and_the_final_head_follows_them(blobs):
    x, y, folds, test = blobs
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0)
    cv = cross_validate(_head(), x, y, folds, Task(2), cfg, list(LR_GRID))
    best = max(max(row["validation_accuracy"]) for row in cv.sweep)
    assert cv.sweep[cv.chosen]["best_validation_accuracy"] == best == cv.scores[cv.kept_epoch]["accuracy"]
    assert cv.scores[cv.kept_epoch]["accuracy"] == pytest.approx((cv.logits.argmax(-1).numpy() == y).mean())
    assert min(row["best_validation_accuracy"] for row in cv.sweep) < best  # the rates really differ
    result = train_on_folds(_head(), _split(x, y), folds, test, Task(2), cfg, list(LR_GRID))
    assert (result.lrs, result.chosen, result.kept_epoch, result.folds) == (cv.lrs, cv.chosen, cv.kept_epoch, 5)
    assert torch.equal(result.out_of_fold, cv.logits)
    assert [h["validation"] for h in result.history] == cv.scores
    # the final head: every row, the chosen rate, the full schedule, the chosen epoch's weights
    alone = train_head(_head(), _split(x, y), None, test, Task(2), cfg, [cv.lrs[cv.chosen]], keep_epoch=cv.kept_epoch)
    for key, tensor in alone.head.state_dict().items():
        assert torch.equal(tensor, result.head.state_dict()[key]), key


def test_keeping_an_epoch_stops_nothing_early_and_changes_no_trajectory(blobs):
    x, y, _, test = blobs
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0)
    kept = train_head(_head(), _split(x, y), None, test, Task(2), cfg, [0.1], keep_epoch=2)
    stopped = train_head(_head(), _split(x, y), None, test, Task(2), cfg, [0.1], last_epoch=2)
    whole = train_head(_head(), _split(x, y), None, test, Task(2), cfg, [0.1])
    assert kept.kept_epoch == 2 and len(kept.history) == 4 and len(stopped.history) == 3
    for key, tensor in kept.head.state_dict().items():
        assert torch.equal(tensor, stopped.head.state_dict()[key])
        assert not torch.equal(tensor, whole.head.state_dict()[key])  # epoch 3 moved on
    assert kept.history[:3] == [{**h, "seconds": k["seconds"]} for h, k in zip(stopped.history, kept.history)]


def test_patience_stops_every_fold_together(blobs):
    x, y, folds, _ = blobs
    cfg = TrainConfig(epochs=40, batch_size=32, seed=0, patience=2, lr_schedule="constant")
    cv = cross_validate(_head(), x, y, folds, Task(2), cfg, [0.3])
    assert cv.stopped_after == cv.epochs_run < 40 and len(cv.scores) == cv.epochs_run + 1
    accuracy = [s["accuracy"] for s in cv.scores]
    assert cv.epochs_run == accuracy.index(max(accuracy)) + 2  # two epochs without a better out-of-fold accuracy


def test_balanced_weights_raise_minority_recall_out_of_fold():
    x, y = _blobs(400, 5, shift=0.4, shares=[0.9, 0.1])
    folds = assign_folds(y, 5, 0, multi_label=False)
    cfg = TrainConfig(epochs=3, batch_size=16, seed=0)
    recall = {}
    for name, weights in (("none", None), ("balanced", torch.tensor([400 / (2 * (y == 0).sum()),
                                                                    400 / (2 * (y == 1).sum())]).float())):
        cv = cross_validate(_head(), x, y, folds, Task(2, class_weights=weights), cfg, [0.03])
        predicted = cv.logits.argmax(-1).numpy()
        recall[name] = (predicted[y == 1] == 1).mean()
    assert recall["balanced"] > recall["none"] + 0.1


def test_multi_label_choices_use_micro_f1_out_of_fold():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x[:, :3] > 0.3).float().numpy()
    folds = assign_folds(y, 4, 0, multi_label=True)
    cv = cross_validate(_head(labels=3), x, y, folds, Task(3, multi_label=True), TrainConfig(epochs=3, seed=0),
                        [1e-3, 1e-1])
    assert cv.lrs[cv.chosen] == 1e-1 and cv.scores[cv.kept_epoch]["f1"] > 0.7
    assert cv.sweep[cv.chosen]["best_validation_accuracy"] == cv.scores[cv.kept_epoch]["f1"]
    assert cv.logits.shape == (200, 3)



def test_the_temperature_is_fitted_on_the_out_of_fold_logits_and_folded_into_the_final_head():
    from types import SimpleNamespace

    from headtune.config import RunConfig
    from headtune.workflow import _finish

    x, y = _blobs(300, 7, shift=0.4)  # overlapping classes: no head is right everywhere
    folds, test = assign_folds(y, 5, 0, multi_label=False), _split(*_blobs(64, 8, shift=0.4))
    cfg = RunConfig.from_flat(epochs=3, lr=0.3, batch_size=32, seed=0)  # a high rate: an overconfident head
    result = train_on_folds(_head(), _split(x, y), folds, test, Task(2), cfg.train, [0.3])
    before = logits_of(result.head, CachedInputs(x, CPU), False)[0]
    out = _finish(cfg, result, {"train": _split(x, y), "test": test}, Task(2), SimpleNamespace(label_names=["a", "b"]))
    t = out["calibration"]["temperature"]
    assert out["calibration"]["fitted_on"] == "out-of-fold" and t != pytest.approx(1.0, abs=0.01)
    assert torch.allclose(logits_of(result.head, CachedInputs(x, CPU), False)[0], before / t, atol=1e-5)

    def log_loss(temperature: float) -> float:
        return torch.nn.functional.cross_entropy(result.out_of_fold / temperature, torch.as_tensor(y)).item()

    assert log_loss(t) < min(log_loss(t * 1.05), log_loss(t / 1.05))  # the out-of-fold log loss's minimum
    held = out["scores"]["validation"]  # the out-of-fold rows, scored as the calibrated head would score them
    assert held["accuracy"] == pytest.approx((result.out_of_fold.argmax(-1).numpy() == y).mean())
