"""optim: headtune's AdamW takes the same steps as torch.optim.AdamW under a LambdaLR schedule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from headtune.optim import AdamW
from headtune.training import lr_factor


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_same_steps_as_torch_adamw(weight_decay, schedule):
    torch.manual_seed(0)
    ours_model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    torch_model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    torch_model.load_state_dict(ours_model.state_dict())
    start = [p.detach().clone() for p in ours_model.parameters()]
    steps, lr = 30, 3e-2
    ours = AdamW(ours_model.parameters(), weight_decay=weight_decay)
    reference = torch.optim.AdamW(torch_model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(reference, lr_factor(schedule, steps))
    factor = lr_factor(schedule, steps)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    for step in range(steps):
        batch = slice(step % 4 * 16, step % 4 * 16 + 16)
        for model, optimizer in ((ours_model, ours), (torch_model, reference)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        ours.step(lr * factor(step))
        reference.step()
        scheduler.step()
        for a, b in zip(ours_model.parameters(), torch_model.parameters()):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), step
    moved = sum((a - b).abs().sum() for a, b in zip(ours_model.parameters(), start))
    assert moved > 1.0  # the steps were real


def test_zero_grad_clears_and_frozen_parameters_are_left_out():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    optimizer = AdamW(layer.parameters())
    assert optimizer.params == [layer.weight]
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.weight.grad is not None
    optimizer.zero_grad()
    assert layer.weight.grad is None
    before = layer.weight.clone()
    optimizer.step(0.1)  # no gradient: nothing moves
    assert torch.equal(layer.weight, before)
