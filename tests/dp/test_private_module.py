"""Differential tests: ghost norms and clipped sums vs a per-example autograd loop."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ppdl_nb.dp import PrivateModule
from ppdl_nb.dp.grad_rules import FuncRule, rule_for

TOL = 1e-5


class Scale(nn.Module):
    """A custom layer with its own parameter: exercises the torch.func fallback."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x * self.s)


class Twice(nn.Module):
    """One Linear used twice in a forward pass (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lin(torch.relu(self.lin(x))))


class EmbedBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 5, padding_idx=0)
        self.head = nn.Linear(5, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(idx).mean(1))


def _reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    """Per-example grads by plain autograd: (norms, clipped sum per parameter)."""
    params = [p for p in model.parameters() if p.requires_grad]
    per = []
    for i in range(len(x)):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        per.append(torch.autograd.grad(loss, params, allow_unused=True))
    per = [
        [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]
        for gs in per
    ]
    norms = torch.stack([torch.sqrt(sum(g.pow(2).sum() for g in gs)) for gs in per])
    coef = (clip / (norms + 1e-6)).clamp(max=1)
    sums = [sum(c * gs[k] for c, gs in zip(coef, per, strict=True)) for k in range(len(params))]
    return norms, dict(zip(params, sums, strict=True))


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float = 0.5) -> None:
    model = model.double()
    ref_model = copy.deepcopy(model)
    ref_norms, ref_sums = _reference(ref_model, x, y, clip)
    pm = PrivateModule(model)
    nn.functional.cross_entropy(pm(x), y).backward()
    torch.testing.assert_close(pm.per_sample_norms(), ref_norms, atol=TOL, rtol=TOL)
    sums = pm.clipped_grad_sum(clip)
    names = [n for n, p in ref_model.named_parameters() if p.requires_grad]
    ref_by_name = dict(zip(names, ref_sums.values(), strict=True))
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p not in sums
            continue
        torch.testing.assert_close(sums[p], ref_by_name[name], atol=TOL, rtol=TOL)
    for p in model.parameters():
        assert p.grad is None  # the wrapper never lets autograd write ordinary grads
    pm.detach()


def test_mlp_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    _check(model, torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,)))


@pytest.mark.parametrize("t", [3, 40])  # Gram trick (T^2 <= pd) and per-sample path
def test_linear_on_sequences(t):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Flatten(), nn.Linear(6 * t, 3))
    _check(model, torch.randn(5, t, 4, dtype=torch.float64), torch.randint(0, 3, (5,)))


def test_conv2d():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2, bias=False),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    )
    _check(model, torch.randn(6, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,)))


def test_embedding_with_repeats_and_padding():
    torch.manual_seed(3)
    idx = torch.tensor([[1, 1, 0, 2], [3, 4, 5, 6], [0, 0, 0, 1], [2, 2, 2, 2]])
    _check(EmbedBag(), idx, torch.randint(0, 3, (4,)))


def test_fallback_layers():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), Scale(6), nn.GroupNorm(2, 6),
                          nn.Linear(6, 3))
    assert isinstance(rule_for(model[1]), FuncRule)
    _check(model, torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,)))


def test_grouped_conv_uses_fallback():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    assert isinstance(rule_for(model[0]), FuncRule)
    _check(model, torch.randn(3, 2, 6, 6, dtype=torch.float64), torch.randint(0, 3, (3,)))


def test_shared_layer_used_twice():
    torch.manual_seed(6)
    _check(Twice(), torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,)))


def test_frozen_parameter_is_skipped():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    model[0].weight.requires_grad_(False)
    _check(model, torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))


@settings(max_examples=8, deadline=None)
@given(b=st.integers(1, 6), d=st.integers(1, 5), h=st.integers(1, 5),
       clip=st.floats(0.01, 10.0))
def test_linear_random_shapes(b, d, h, clip):
    torch.manual_seed(b * 100 + d * 10 + h)
    model = nn.Sequential(nn.Linear(d, h), nn.Sigmoid(), nn.Linear(h, 2))
    _check(model, torch.randn(b, d, dtype=torch.float64), torch.randint(0, 2, (b,)), clip)


def test_empty_batch_gives_zero_sum():
    pm = PrivateModule(nn.Linear(3, 2))
    out = pm(torch.randn(0, 3))
    nn.functional.cross_entropy(out, torch.zeros(0, dtype=torch.long)).backward()
    sums = pm.clipped_grad_sum(1.0)
    assert all(float(v.abs().sum()) == 0 for v in sums.values())


def test_eval_and_no_grad_bypass_recording():
    model = nn.Linear(3, 2)
    pm = PrivateModule(model)
    with torch.no_grad():
        torch.testing.assert_close(pm(torch.ones(1, 3)), model(torch.ones(1, 3)))
    assert not pm.has_record


def test_hooks_removed_on_detach_and_on_collection():
    model = nn.Sequential(nn.Linear(3, 2))
    pm = PrivateModule(model)
    assert len(model[0]._forward_hooks) == 1
    pm.detach()
    assert len(model[0]._forward_hooks) == 0
    pm = PrivateModule(model)
    del pm
    gc.collect()
    assert len(model[0]._forward_hooks) == 0
    assert type(model[0]) is nn.Linear


def test_no_recording_raises():
    with pytest.raises(RuntimeError, match="backward"):
        PrivateModule(nn.Linear(2, 2)).per_sample_norms()


def test_bad_loss_reduction():
    with pytest.raises(ValueError, match="loss_reduction"):
        PrivateModule(nn.Linear(2, 2), loss_reduction="max")


def test_benchmark_mlp_784_256_10():
    """The architecture bench_dp_sgd times: norms and clipped sum match per-example autograd."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    _check(model, torch.randn(16, 784, dtype=torch.float64), torch.randint(0, 10, (16,)),
           clip=1.0)
