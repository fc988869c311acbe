"""Training the head: stacked learning rates, the best epoch by the validation split, early stopping, class
weights, multi-label; the test split chooses nothing."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import Backbone
from headtune.architectures.parts import Chain, linear_head, normal_init
from headtune.config import TrainConfig
from headtune.features import tokenize
from headtune.training import (LR_GRID, CachedInputs, FullModelInputs, Labelled, StackedLinear, Task, better,
                               copy_losses, balanced_weights, logits_of, lr_factor, member_state, stack, train_head)

CPU = torch.device("cpu")


class _Config:
    hidden_size = 16
    initializer_range = 0.02


def _head(hidden=16, labels=2, dropout=0.0, two_layers=False, seed=0) -> Chain:
    parts = [("dense", nn.Linear(hidden, hidden)), (None, torch.tanh)] if two_layers else []
    head = Chain(parts + linear_head(hidden, labels, dropout))
    normal_init(head, _Config, torch.Generator().manual_seed(seed))
    return head


def _blobs(n, seed, labels=2, hidden=16, shift=1.0, shares=None):
    """Gaussian blobs, one per class, overlapping enough that a head needs several epochs."""
    g = torch.Generator().manual_seed(seed)
    shares = shares or [1 / labels] * labels
    y = torch.multinomial(torch.tensor(shares), n, replacement=True, generator=g)
    centres = torch.randn(labels, hidden, generator=torch.Generator().manual_seed(99)) * shift
    x = centres[y] + torch.randn(n, hidden, generator=g)
    return x, y.numpy()


def _split(x, y) -> Labelled:
    return Labelled(CachedInputs(x, CPU), y)


@pytest.fixture(scope="module")
def data():
    return {name: _split(*_blobs(n, seed)) for name, n, seed in (("train", 256, 1), ("validation", 96, 2),
                                                                 ("test", 128, 3))}


def test_each_stacked_copy_trains_exactly_as_it_would_alone(data):
    """Copy k of a sweep is the head a run at rate k alone trains (no dropout: masks are the only thing that
    could differ): the same validation scores every epoch, and the kept copy has the same weights."""
    cfg = TrainConfig(epochs=2, batch_size=32, seed=5, keep="last")
    lrs = [1e-3, 1e-2, 1e-1]
    sweep = train_head(_head(two_layers=True), data["train"], data["validation"], data["test"], Task(2), cfg, lrs)
    for i, lr in enumerate(lrs):
        alone = train_head(_head(two_layers=True), data["train"], data["validation"], data["test"], Task(2), cfg, [lr])
        assert alone.lrs == [lr] and len(alone.sweep) == 1
        assert sweep.sweep[i]["validation_accuracy"] == pytest.approx(alone.sweep[0]["validation_accuracy"], abs=0.011)
        if i == sweep.chosen:
            for key, tensor in sweep.head.state_dict().items():
                assert torch.allclose(tensor, alone.head.state_dict()[key], atol=1e-5), key
    assert len({tuple(row["validation_accuracy"]) for row in sweep.sweep}) > 1  # the rates did differ


def test_the_copy_with_the_best_validation_accuracy_is_kept(data):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0)
    result = train_head(_head(), data["train"], data["validation"], data["test"], Task(2), cfg, list(LR_GRID))
    best = [row["best_validation_accuracy"] for row in result.sweep]
    assert result.sweep[result.chosen]["best_validation_accuracy"] == max(best)
    assert len(result.sweep) == len(LR_GRID) and result.lrs == list(LR_GRID)
    assert result.history[result.kept_epoch]["validation"]["accuracy"] == max(best)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.history[0]["train_loss"] is None and all(h["train_loss"] > 0 for h in result.history[1:])
    assert min(best) < max(best)  # the rates really differ: too small a rate learns little in 3 epochs
    assert result.history[result.kept_epoch]["validation"]["accuracy"] > result.history[0]["validation"]["accuracy"]


def test_changing_every_test_label_changes_no_choice_and_no_weight(data):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0, patience=1)
    flipped = Labelled(data["test"].inputs, 1 - data["test"].labels)
    a = train_head(_head(), data["train"], data["validation"], data["test"], Task(2), cfg, list(LR_GRID))
    b = train_head(_head(), data["train"], data["validation"], flipped, Task(2), cfg, list(LR_GRID))
    assert (a.chosen, a.kept_epoch, a.stopped_after, a.sweep) == (b.chosen, b.kept_epoch, b.stopped_after, b.sweep)
    assert all(torch.equal(t, b.head.state_dict()[k]) for k, t in a.head.state_dict().items())
    assert a.history[-1]["test"]["accuracy"] == pytest.approx(1 - b.history[-1]["test"]["accuracy"])


def test_keep_best_saves_the_best_epochs_weights_and_keep_last_the_last(data):
    """At a constant rate a shorter run replays the longer one's first epochs exactly, so the best epoch's
    weights must equal a run that stops there."""
    kw = dict(batch_size=32, seed=3, lr_schedule="constant")
    noisy = _split(*_blobs(256, 7, shift=0.3))
    best = train_head(_head(), noisy, data["validation"], data["test"], Task(2), TrainConfig(epochs=6, **kw), [0.5])
    assert 1 <= best.kept_epoch <= 6
    shorter = train_head(_head(), noisy, data["validation"], data["test"], Task(2),
                         TrainConfig(epochs=best.kept_epoch, keep="last", **kw), [0.5])
    for key, tensor in best.head.state_dict().items():
        assert torch.equal(tensor, shorter.head.state_dict()[key]), key
    last = train_head(_head(), noisy, data["validation"], data["test"], Task(2),
                      TrainConfig(epochs=6, keep="last", **kw), [0.5])
    assert last.kept_epoch == 6
    validation = [h["validation"]["accuracy"] for h in best.history[1:]]
    assert validation[best.kept_epoch - 1] == max(validation)


def test_patience_stops_when_no_copy_improves(data):
    same = Labelled(data["validation"].inputs, data["validation"].labels)
    result = train_head(_head(), data["train"], same, data["test"], Task(2),
                        TrainConfig(epochs=30, batch_size=64, seed=0, patience=2, lr=1e-1), [1e-1])
    assert result.stopped_after is not None and result.stopped_after < 30
    assert len(result.history) == result.stopped_after + 1
    accuracy = [h["validation"]["accuracy"] for h in result.history[1:]]
    best_epoch = int(np.argmax(accuracy)) + 1
    assert result.stopped_after == best_epoch + 2  # exactly two epochs without a better one, then it stopped


def test_an_epoch_is_better_by_accuracy_then_by_loss():
    assert better(0.81, 0.9, 0.80, 0.1)  # higher accuracy wins whatever the loss
    assert not better(0.79, 0.1, 0.80, 0.9)
    assert better(0.80, 0.3, 0.80, 0.4)  # equal accuracy: the lower validation loss
    assert not better(0.80, 0.4, 0.80, 0.4)  # a tie keeps the earlier epoch


def test_a_class_weighted_batch_loss_is_what_cross_entropy_computes():
    """Each stacked copy's batch loss is cross_entropy(weight=w)'s mean: divided by the summed weights."""
    weights = torch.tensor([0.5, 2.0, 1.0])
    task = Task(3, class_weights=weights)
    logits, batch = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1, 2, 0])
    got = copy_losses(task, logits, batch.expand(2, 5))
    for copy_, expected in zip(got, [nn.functional.cross_entropy(x, batch, weight=weights) for x in logits]):
        assert copy_.item() == pytest.approx(expected.item(), abs=1e-6)


def test_balanced_class_weights_raise_minority_recall():
    train = _split(*_blobs(600, 11, shift=0.5, shares=[0.92, 0.08]))
    test_x, test_y = _blobs(2000, 12, shift=0.5, shares=[0.5, 0.5])
    test = _split(test_x, test_y)
    weights = balanced_weights(train.labels, 2, False)
    counts = np.bincount(train.labels)
    assert torch.allclose(weights, torch.tensor(len(train.labels) / (2 * counts), dtype=torch.float32))
    cfg = TrainConfig(epochs=5, batch_size=32, seed=0, keep="last")

    def minority_recall(task):
        head = train_head(_head(), train, None, test, task, cfg, [3e-2]).head
        predicted = logits_of(head, test.inputs, False)[0].argmax(-1).numpy()
        return float(np.mean(predicted[test_y == 1] == 1))

    plain, balanced = minority_recall(Task(2)), minority_recall(Task(2, class_weights=weights))
    assert balanced > plain + 0.1, (plain, balanced)


def test_multi_label_heads_learn_each_label():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=g)
    y = np.stack([(x[:, 0] > 0).numpy(), (x[:, 1] > 0.5).numpy(), ((x[:, 2] + x[:, 3]) > 0).numpy()], 1)
    y = y.astype(np.float32)
    split = lambda rows: _split(x[rows], y[rows])  # noqa: E731
    task = Task(3, multi_label=True)
    result = train_head(_head(labels=3), split(slice(0, 300)), split(slice(300, 350)), split(slice(350, 400)), task,
                        TrainConfig(epochs=10, batch_size=32, seed=0), list(LR_GRID))
    final = result.history[result.kept_epoch]
    assert final["test"]["accuracy"] > 0.7 and final["test"]["f1"] > 0.85
    assert result.history[0]["test"]["f1"] < 0.7
    positives = y.sum(axis=0)
    assert balanced_weights(y, 3, True).tolist() == pytest.approx(((len(y) - positives) / positives).tolist())


def test_training_touches_only_the_head_and_leaves_the_rng_alone(data):
    head = _head(dropout=0.2)
    start = copy.deepcopy(head.state_dict())
    rng = torch.get_rng_state()
    result = train_head(head, data["train"], data["validation"], data["test"], Task(2),
                        TrainConfig(epochs=2, batch_size=32, seed=0), list(LR_GRID))
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's seeding did not leak into the caller
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in start.items())  # the template is untouched
    changed = {k for k, v in result.head.state_dict().items() if not torch.equal(v, start[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert not any(m.training for m in result.head.modules())


def test_stack_and_member_state_round_trip():
    head = _head(two_layers=True, dropout=0.1)
    stacked = stack(head, 4)
    x = torch.randn(5, 16)
    stacked.eval()
    head.eval()
    out = stacked(x)
    assert out.shape == (4, 5, 2)
    assert all(torch.allclose(out[k], head(x), atol=1e-6) for k in range(4))
    with torch.no_grad():
        for p in stacked.parameters():
            p[2].add_(0.5)
    copy2 = copy.deepcopy(head)
    copy2.load_state_dict(member_state(stacked.state_dict(), 2))
    assert torch.allclose(stacked(x)[2], copy2(x), atol=1e-6)
    assert not torch.allclose(stacked(x)[1], copy2(x))


@pytest.mark.parametrize("rows", [(6, 16), (4, 6, 16), (2, 6, 16)])  # shared, one group per copy, per 2 copies
def test_stacked_linear_gradients_are_autograds_in_memory_the_layer_keeps(rows):
    """StackedLinear's hand-written backward (training._GroupProduct) gives autograd's gradients for the weight, bias
    and input, for every input form; the weight's gradient lands in the same memory step after step (no new 83 MB
    per step for a wide head), and a gradient not cleared is added to, as autograd does."""
    torch.manual_seed(0)
    linear = nn.Linear(16, 3)
    layer = StackedLinear(linear, 4)
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    x = torch.randn(*rows, requires_grad=True)
    weight, bias = (t.detach().clone().requires_grad_() for t in (layer.weight, layer.bias))
    grouped = x if x.dim() == 3 else x[None]
    g = grouped.shape[0]
    expected = torch.einsum("gbi,groi->grbo", grouped, weight.view(g, 4 // g, 3, 16)).reshape(4, rows[-2], 3) \
        + bias[:, None, :]
    target = torch.randn(4, rows[-2], 3)
    (expected * target).sum().backward()
    expected_x_grad, x.grad = x.grad, None

    (layer(x) * target).sum().backward()
    assert torch.allclose(layer.weight.grad, weight.grad, atol=1e-5)
    assert torch.allclose(layer.bias.grad, bias.grad, atol=1e-5)
    assert torch.allclose(x.grad, expected_x_grad, atol=1e-5)
    kept = layer.weight.grad  # held here, so new memory could not sit at the same address
    layer.weight.grad = None  # what the optimizer's zero_grad does
    (layer(x) * target).sum().backward()
    assert layer.weight.grad.data_ptr() == kept.data_ptr()
    assert torch.allclose(layer.weight.grad, weight.grad, atol=1e-5)
    (layer(x) * target).sum().backward()  # not cleared: accumulated
    assert torch.allclose(layer.weight.grad, 2 * weight.grad, atol=1e-5)


def test_several_rates_need_a_validation_split(data):
    with pytest.raises(ValueError):
        train_head(_head(), data["train"], None, data["test"], Task(2), TrainConfig(), [1e-3, 1e-2])


def test_full_model_inputs_give_logits_in_the_original_order(tiny_models):
    backbone = Backbone(tiny_models["distilbert"])
    model = backbone.model
    texts = ["great", "the plot was a mess and the actor was awful", "dull film", "a superb and moving story",
             "boring"]
    ids = tokenize(backbone.tokenizer, texts, 40).ids
    logits = logits_of(nn.ModuleDict({"classifier": model.classifier}), FullModelInputs(model, ids, 0), False)[0]
    with torch.no_grad():
        one_by_one = torch.cat([model(input_ids=torch.tensor([x])).logits for x in ids])
    assert torch.allclose(logits, one_by_one, atol=1e-5, rtol=0)
    assert len(np.unique(logits[:, 0].numpy().round(6))) == len(texts)


def test_lr_factor_linear_decays_to_zero_and_constant_stays():
    linear = lr_factor("linear", 4)
    assert [linear(step) for step in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    constant = lr_factor("constant", 4)
    assert [constant(step) for step in range(5)] == [1.0] * 5


def test_lr_schedule_is_applied_per_step(data):
    """One step: both schedules take the full rate, so they agree; over several steps linear moves less."""
    start = _head().state_dict()
    one_batch = Labelled(CachedInputs(data["train"].inputs.features[:32], CPU), data["train"].labels[:32])

    def head_after(schedule, epochs):
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr_schedule=schedule, seed=0, keep="last")
        return train_head(_head(), one_batch, None, data["test"], Task(2), cfg, [1e-2]).head.state_dict()

    def distance(head):
        return sum((head[k] - start[k]).norm() ** 2 for k in head) ** 0.5

    linear, constant = head_after("linear", 1), head_after("constant", 1)
    assert all(torch.equal(linear[k], constant[k]) for k in linear)
    linear, constant = head_after("linear", 2), head_after("constant", 2)
    assert not all(torch.equal(linear[k], constant[k]) for k in linear)
    assert distance(linear) < distance(constant)


def test_small_heads_train_on_one_thread_and_the_thread_count_is_restored(data, monkeypatch):
    import headtune.training as training

    seen = []
    real = training._train
    monkeypatch.setattr(training, "_train", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    train_head(_head(), data["train"], data["validation"], data["test"], Task(2), TrainConfig(epochs=1), [0.01])
    big = Chain([("dense", nn.Linear(2048, 2048)), ("classifier", nn.Linear(2048, 2))])
    wide = Labelled(CachedInputs(torch.randn(64, 2048), CPU), np.arange(64) % 2)
    train_head(big, wide, None, wide, Task(2), TrainConfig(epochs=1, keep="last"), [0.01])
    assert seen == [1, before] and torch.get_num_threads() == before
