"""centring.py: the head trains on centred features, and the kept head reads the raw ones exactly as trained."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from headtune.architectures import FAMILIES, READABLE, HeadPlan
from headtune.architectures.parts import Chain, first_linear, linear_head
from headtune.centring import can_centre, centre_copies, shifted, training_mean
from headtune.config import TrainConfig
from headtune.crossval import cross_validate
from headtune.sampling import assign_folds
from headtune.training import LR_GRID, CachedInputs, Task, logits_of, stack, train_head
from test_training import _blobs, _head, _split

CPU = torch.device("cpu")
OFFSET = 20.0  # a common component far larger than the classes' separation, as in a sentence encoder's vectors


def _perturbed(head: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight and bias random (new heads start with zero biases, which would hide a wrong fold)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return head.eval()


@pytest.mark.parametrize("train_pretrained", [False, True])
@pytest.mark.parametrize("pooling", READABLE)
@pytest.mark.parametrize("model_type", [f.model_types[0] for f in FAMILIES])
def test_every_heads_shift_moves_its_input_and_nothing_else(model_type, pooling, train_pretrained):
    """For every family's head: the shifted head on x - m gives the head's logits on x. Only dropout may come
    before the first Linear; a head whose first Linear has no bias is trained on the raw features instead."""
    config = tiny_config(model_type)
    family = next(f for f in FAMILIES if model_type in f.model_types)
    head = _perturbed(HeadPlan(family, family.reading(config, pooling), train_pretrained).new_head(config, 3, 0), 1)
    layer = first_linear(head)
    if not can_centre(head):
        assert layer.bias is None
        return
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, layer.in_features, generator=g) + 3.0
    mean = torch.randn(layer.in_features, generator=g)
    with torch.no_grad():
        moved = shifted(head, mean)
        assert torch.allclose(moved(x - mean), head(x), atol=1e-5)
        assert not torch.allclose(moved(x), head(x), atol=1e-3)  # the shift reaches the output: it is not a no-op
        assert torch.allclose(shifted(moved, -mean)(x), head(x), atol=1e-5)
    assert head.state_dict().keys() == moved.state_dict().keys()  # the same checkpoint keys: nothing added


def test_each_stacked_copy_reads_its_own_centre():
    head = _perturbed(_head(two_layers=True), 0)
    means = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    stacked = stack(head, 3)
    centre_copies(stacked, head, means)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = stacked.eval()(x[None] - means[:, None, :])  # (3, 5, in): copy k's rows minus its mean
        for k in range(3):
            assert torch.allclose(out[k], head(x), atol=1e-5)


def _offset(n, seed):
    x, y = _blobs(n, seed, shift=0.5)
    return _split(x + OFFSET, y)


def _recording_head(seen: list):
    """A head whose first step records the rows it is given in training (a stateless step: stacking keeps it)."""
    def record(x):
        if torch.is_grad_enabled():
            seen.append(x.detach().clone())
        return x
    head = Chain([(None, record)] + linear_head(16, 2, 0.0))
    head.load_state_dict(_head().state_dict())
    return head


@pytest.mark.parametrize("centre", [True, False])
def test_the_head_trains_on_centred_rows_and_keeps_reading_raw_ones(centre):
    train, validation, test = _offset(300, 1), _offset(100, 2), _offset(200, 3)
    seen = []
    head = _recording_head(seen)
    untrained = logits_of(head, test.inputs, False)[0]
    cfg = TrainConfig(epochs=2, batch_size=32, seed=0, centre=centre)
    result = train_head(head, train, validation, test, Task(2), cfg, list(LR_GRID))
    rows = torch.cat([s.reshape(-1, 16) for s in seen])
    expected = torch.zeros(16) if centre else train.inputs.features.mean(dim=0)
    assert torch.allclose(rows.mean(dim=0), expected, atol=0.05)  # every epoch visits every training row once
    # the kept head reads the raw features: its test scores are the ones the run reported for the kept epoch,
    # and the untrained head's ("before") are what the untrained head gives on the raw features
    kept = result.history[result.kept_epoch]["test"]
    logits = logits_of(result.head, test.inputs, False)[0]
    assert (logits.argmax(-1).numpy() == test.labels).mean() == kept["accuracy"]
    assert torch.nn.functional.cross_entropy(logits, torch.as_tensor(test.labels)).item() == pytest.approx(
        kept["loss"], abs=1e-5)
    before = result.history[0]["test"]
    assert before["accuracy"] == (untrained.argmax(-1).numpy() == test.labels).mean()
    assert before["loss"] == pytest.approx(torch.nn.functional.cross_entropy(
        untrained, torch.as_tensor(test.labels)).item(), abs=1e-5)


def test_centring_makes_the_first_epoch_count_on_offset_features():
    """The same head and rate, one epoch, on features with a large common component: raw, every step on the
    weights also moves every logit by W x offset, and the head is still near chance; centred it has learned."""
    train, test = _offset(400, 1), _offset(400, 3)
    accuracy = {}
    for centre in (True, False):
        cfg = TrainConfig(epochs=1, batch_size=16, seed=0, centre=centre)
        result = train_head(_head(), train, None, test, Task(2), cfg, [0.1])
        accuracy[centre] = result.history[1]["test"]["accuracy"]
    assert accuracy[True] > 0.85 and accuracy[False] < accuracy[True] - 0.1, accuracy


def test_a_fold_copy_is_centred_on_the_rows_it_trains_on():
    """As a head trained alone on the other folds (which centres on their mean): the held-out fold's rows count in
    nothing its copies do."""
    x, y = _blobs(96, 4)
    x = x + OFFSET * torch.linspace(0, 1, 96)[:, None]  # fold means differ: a global mean would show
    folds = assign_folds(y, 4, 0, multi_label=False)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=3)
    cv = cross_validate(_head(two_layers=True), x, y, folds, Task(2), cfg, [1e-2])
    outside, inside = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    alone = train_head(_head(two_layers=True), _split(x[outside], y[outside]), None, _split(x[inside], y[inside]),
                       Task(2), cfg, [1e-2])
    assert torch.allclose(cv.logits[inside], logits_of(alone.head, CachedInputs(x[inside], CPU), False)[0], atol=1e-4)


def test_training_mean_is_the_float64_mean():
    x = torch.full((1000, 3), 1e4) + torch.arange(3.0)
    assert training_mean(x).dtype == torch.float32
    assert torch.equal(training_mean(x), torch.tensor([1e4, 1e4 + 1, 1e4 + 2]))
