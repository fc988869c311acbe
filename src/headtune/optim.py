"""AdamW for the head's few tensors, with the learning rate given per step.

Why not `torch.optim.AdamW`: constructing any `torch.optim` optimizer imports `torch._dynamo`
the first time (~2 s here), longer than training a head on cached features takes; a run
that never loads the model would spend most of its time on that import. This is the same
update as torch's AdamW with its defaults (decoupled weight decay, bias-corrected moments;
`tests/test_optim.py` checks them step by step against each other).

The learning rate may also be a tensor with one rate per member of a stacked ensemble
(training.stack: parameters of shape (K, ...)): each member then takes exactly the step it
would take alone at its rate, since every AdamW operation is elementwise.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


class AdamW:
    def __init__(self, params: Iterable[torch.nn.Parameter], weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # each step's denominator is written here, not into a new tensor: a stacked sweep of a wide head (35 copies
        # of DistilBERT's 768 x 768) would otherwise take 83 MB of fresh memory per step, and on the CPU the first
        # touch of fresh pages cost more than the arithmetic
        self.scratch = [torch.empty_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor) -> None:
        """One update; `lr` is a number, or a tensor (K,) of rates for parameters stacked as (K, ...)."""
        self.steps += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1 ** self.steps
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        for p, exp_avg, exp_avg_sq, scratch in zip(self.params, self.exp_avg, self.exp_avg_sq, self.scratch):
            if p.grad is None:
                continue
            rate = lr if not torch.is_tensor(lr) else lr.to(p.device).view(-1, *[1] * (p.dim() - 1))
            if self.weight_decay:  # decoupled weight decay: the "W" (skipped at 0: a full pass over p for nothing)
                p.mul_(1 - rate * self.weight_decay)
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = torch.sqrt(exp_avg_sq, out=scratch).div_(bias_correction2_sqrt).add_(self.eps)
            if torch.is_tensor(rate):  # the step exp_avg / denom, written over denom, scaled per copy
                p.addcmul_(torch.div(exp_avg, denom, out=denom), rate, value=-1 / bias_correction1)
            else:
                p.addcdiv_(exp_avg, denom, value=-rate / bias_correction1)
