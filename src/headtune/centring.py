"""The head trains on centred features: the same heads and the same saved model, better-conditioned steps.

A frozen encoder's pooled vectors share a large common component (all-MiniLM-L6-v2's mean-pooled IMDb vectors
at layer 5: the training mean is 3 times as long as a row's median distance from it, 5.27 vs 1.73, measured by
benchmarks/bench_centring.py). A head's first Linear sees that component in every row, so its weights and bias
are tied: a step on the weights also moves every logit by W x mean, and the steps Adam takes per weight no
longer match the curvature of the problem. A head trained for the default 3 epochs then ends further from what a
converged logistic regression finds on the same vectors. Subtracting the mean of the rows a head trains on
removes the tie. It needs no labels and never sees the test split (nor, in cross-validation, the held-out fold).

Nothing else changes: the mean is folded into the first Linear's bias (W (x - mean) + b = W x + (b - W mean)),
so the trained head reads the raw features and the saved model is the ordinary checkpoint it was. Before
training, the head's bias gets + W mean, so the untrained head computes exactly what it did on the raw features
(a pretrained part that trains keeps its function; the "before" scores are unchanged). A head whose first
Linear has no bias (ModernBERT's pretrained `head` with --train-pretrained-head) cannot hold the fold, and trains
on the raw features.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .architectures.parts import first_linear


def can_centre(head: nn.Module) -> bool:
    """Whether the head's first Linear has a bias to fold the mean into."""
    layer = first_linear(head)
    return layer is not None and layer.bias is not None


def training_mean(features: torch.Tensor) -> torch.Tensor:
    """The mean of the training rows' features (accumulated in float64, without a float64 copy of them: hundreds
    of thousands of rows), as float32."""
    return (features.sum(dim=0, dtype=torch.float64) / len(features)).float()


def shifted(head: nn.Module, by: torch.Tensor) -> nn.Module:
    """A copy of `head` whose output on x - by is `head`'s output on x (dropout off): the first Linear's bias
    plus W by. `shifted(head, mean)` reads centred features; `shifted(trained, -mean)` reads raw ones again."""
    out = copy.deepcopy(head)
    _fold(first_linear(out), by)
    return out


def centre_copies(stacked: nn.Module, head: nn.Module, means: torch.Tensor) -> None:
    """In place, on `training.stack(head, K)`: copy k reads features centred on means[k] (K, in) and computes what
    `head` computes on the raw ones (crossval.py: each fold's copies on the mean of the rows they train on)."""
    first = first_linear(head)
    name = next(n for n, m in head.named_modules() if m is first)
    _fold(stacked.get_submodule(name), means)  # a StackedLinear: weight (K, out, in), bias (K, out)


def _fold(layer: nn.Module, by: torch.Tensor) -> None:
    """bias += weight @ by, in float64, for a Linear (by: (in,)) or a StackedLinear (by: one row per copy)."""
    with torch.no_grad():
        layer.bias.add_(torch.einsum("...oi,...i->...o", layer.weight.double(),
                                     by.to(layer.weight.device).double()).float())
