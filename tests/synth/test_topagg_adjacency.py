"""TopAgg's adjacency is explicit: one record moves a teacher's vote vector by 2 sqrt(k)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppdl_nb.dp import Accountant, TopAgg, epsilon, fixed_seed
from ppdl_nb.dp.topagg import top_k_indices, topagg_rdp, topagg_sensitivity


def test_sensitivity_for_both_adjacencies():
    assert topagg_sensitivity(k=9, adjacency="example") == pytest.approx(3.0)
    assert topagg_sensitivity(k=9, adjacency="teacher") == pytest.approx(6.0)
    agg = TopAgg(k=16, scale=1.0, noise_std=8.0, threshold=0.0, adjacency="teacher")
    assert agg.sensitivity == pytest.approx(8.0)
    assert agg.noise_multiplier == pytest.approx(1.0)
    default = TopAgg(k=16, scale=1.0, noise_std=8.0, threshold=0.0)
    assert default.noise_multiplier == pytest.approx(2.0)  # today's per-example accounting
    orders = np.array([2.0, 8.0])
    assert topagg_rdp(k=16, noise_std=8.0, orders=orders, adjacency="teacher") == \
        pytest.approx(4 * topagg_rdp(k=16, noise_std=8.0, orders=orders))
    with pytest.raises(ValueError, match="adjacency"):
        TopAgg(k=4, scale=1.0, noise_std=1.0, threshold=0.0, adjacency="record")


def test_worst_case_vote_change_meets_the_teacher_bound():
    # a teacher whose record flips every kept sign moves the vote sum by exactly 2 sqrt(k)
    k, agg = 25, TopAgg(k=25, scale=1e-9, noise_std=1.0, threshold=0.0, adjacency="teacher")
    g = torch.randn(4, 200)
    g2 = g.clone()
    g2[0] = -g[0]
    gen = torch.Generator().manual_seed(0)
    diff = agg.votes(g, gen) - agg.votes(g2, torch.Generator().manual_seed(0))
    assert float(diff.norm()) == pytest.approx(2 * math.sqrt(k))
    assert float(diff.norm()) > topagg_sensitivity(k=k, adjacency="example")


def test_fast_selection_is_the_top_k():
    g = torch.randn(7, 3000, dtype=torch.float64)
    for k in (1, 50, 2999, 3000, 5000):
        fast = top_k_indices(g, k).sort(1).values
        ref = g.abs().topk(min(k, 3000), dim=1).indices.sort(1).values
        assert torch.equal(fast, ref)
    sparse = torch.randint(0, 3, (4, 500)).float() * torch.randint(0, 2, (4, 500))  # dups
    for k in (10, 300, 450):
        got = sparse.abs().gather(1, top_k_indices(sparse, k)).sort(1).values
        assert torch.equal(got, sparse.abs().topk(k, dim=1).values.sort(1).values)
    ties = torch.zeros(3, 10)
    ties[0, :2] = 1.0
    idx = top_k_indices(ties, 4)
    assert idx.shape == (3, 4)
    assert all(len(set(row.tolist())) == 4 for row in idx)
    assert {0, 1} <= set(idx[0].tolist())


def test_accounting_composes_per_query():
    acc = Accountant()
    agg = TopAgg(k=9, scale=1.0, noise_std=30.0, threshold=0.0, adjacency="teacher",
                 accountant=acc)
    with fixed_seed(1):
        for _ in range(3):
            agg(torch.randn(5, 40))
    assert acc.steps == 3
    expected = epsilon(noise_multiplier=30.0 / 6.0, sample_rate=1.0, steps=3, delta=1e-5)
    assert acc.epsilon(1e-5) == pytest.approx(expected)
