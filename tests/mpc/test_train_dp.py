"""DP-SGD inside the shares (ppdl_nb.mpc.train_dp): what the privacy proof relies on.

Per-example clipping on shares equals plaintext per-example clipping (2 and 3 parties);
no example adds more than C, however large its gradient (beyond the approximation's
range it is dropped); the noise has the stated standard deviation; settings that bound
nothing are refused.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.prg import fixed_seeds
from ppdl_nb.mpc.train_dp import DROP_RATIO, MARGIN
from ppdl_nb.mpc.train_step import TrainConfig, train_step

F = 20


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)  # test model only
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def layers_of(model: nn.Sequential) -> list[dict]:
    return [{"layer": type(m).__name__} for m in model]


def step_on_shares(model, x, labels, cfg, n):
    sh = lambda t: sim.share_float(t.detach().double(), n, F)  # noqa: E731
    ws, xs, ys = [sh(p) for p in model.parameters()], sh(x), sh(torch.eye(3)[labels])
    out = sim.run_parties([train_step(i, layers_of(model), [w[i] for w in ws], [], xs[i],
                                      ys[i], cfg, parties=n) for i in range(n)])
    return [sim.reveal([o.weights[k] for o in out], F) for k in range(len(ws))]


def clipped_sgd(model, x, labels, *, lr, clip):
    sums = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), labels[i:i + 1]).backward()
        norm = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters()))
        factor = min(1.0, clip / norm) * (1 - MARGIN) if norm**2 <= DROP_RATIO * clip**2 \
            else 0.0
        for s, p in zip(sums, model.parameters(), strict=True):
            s += factor * p.grad
    return [p.detach() - lr * s / len(x) for p, s in zip(model.parameters(), sums, strict=True)]


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("clip", [0.3, 50.0])  # clipping most examples, and none
def test_clipping_on_shares_equals_per_example_clipping(n, clip):
    model = net()
    g = torch.Generator().manual_seed(n)
    x, labels = torch.rand(8, 6, generator=g) * 3, torch.randint(0, 3, (8,), generator=g)
    cfg = TrainConfig(lr=0.5, frac_bits=F, max_grad_norm=clip)
    got = step_on_shares(model, x, labels, cfg, n)
    want = clipped_sgd(model, x, labels, lr=0.5, clip=clip)
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max() < 5e-5


def test_an_example_beyond_the_range_is_dropped_not_let_through():
    model = net(1)
    x = torch.rand(4, 6)
    x[0] *= 400  # a gradient norm far beyond sqrt(1000) C
    labels = torch.tensor([0, 1, 2, 0])
    cfg = TrainConfig(lr=1.0, frac_bits=F, max_grad_norm=0.1)
    got = step_on_shares(model, x, labels, cfg, 2)
    want = clipped_sgd(model, x, labels, lr=1.0, clip=0.1)
    for a, b, p in zip(got, want, model.parameters(), strict=True):
        assert (a - b).abs().max() < 5e-5
        assert (a - p.detach()).norm() <= 1.0 * 0.1 * 3 / 4 + 1e-4  # 3 kept, each <= C


def test_noise_has_the_stated_deviation():
    model = nn.Sequential(nn.Linear(40, 30))
    x = torch.zeros(2, 40)
    lr, clip, sigma = 1.0, 0.5, 2.0
    cfg = TrainConfig(lr=lr, frac_bits=F, max_grad_norm=clip, noise_multiplier=sigma,
                      loss="mse")
    sh = lambda t: sim.share_float(t.detach().double(), 2, F)  # noqa: E731
    ws, xs, ys = [sh(p) for p in model.parameters()], sh(x), sh(torch.zeros(2, 30))
    with fixed_seeds(b"noise"):
        out = sim.run_parties([train_step(i, [{"layer": "Linear"}], [w[i] for w in ws], [],
                                          xs[i], ys[i], cfg) for i in range(2)])
    # zero inputs and targets with zero bias: the gradient is the noise alone
    moved = sim.reveal([o.weights[0] for o in out], F) - model[0].weight.detach()
    std = float(moved.std()) * 2 / lr  # the update divides the noisy sum by B = 2
    assert std == pytest.approx(sigma * clip * math.sqrt(2), rel=0.1)  # each party sigma C


@pytest.mark.parametrize(("options", "message"), [
    ({"noise_multiplier": 1.0}, "needs max_grad_norm"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ({"max_grad_norm": 1.0, "noise_multiplier": float("nan")}, "noise_multiplier"),
])
def test_settings_that_bound_nothing_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(lr=0.1, **options)
