from __future__ import annotations

import numpy as np
import pytest
import torch

from ppdl_nb.dp import Accountant, TopAgg, fixed_seed
from ppdl_nb.dp.topagg import stochastic_sign, top_k_indices, top_k_mask, topagg_rdp


def test_top_k_and_unbiased_signs():
    x = torch.tensor([[0.1, -3.0, 2.0, 0.0]])
    assert top_k_mask(x, 2).tolist() == [[False, True, True, False]]
    g = torch.Generator().manual_seed(0)
    s = stochastic_sign(torch.full((20000,), 0.5), 1.0, g)
    assert float(s.mean()) == pytest.approx(0.5, abs=0.03)  # E[sign] = x / scale


def test_aggregate_recovers_consensus_direction():
    direction = torch.tensor([1.0, -1.0, 0.0, 0.0, 1.0])
    contributions = direction * 0.9 + torch.randn(200, 5) * 0.05
    acc = Accountant()
    agg = TopAgg(k=3, scale=1.0, noise_std=2.0, threshold=20.0, accountant=acc)
    with fixed_seed(0):
        out = agg(contributions)
    assert out.tolist() == direction.tolist()
    assert acc.steps == 1
    assert acc.history[0][0] == pytest.approx(2.0 / 3**0.5)


def test_rdp_and_errors():
    assert topagg_rdp(k=4, noise_std=2.0, orders=np.array([2.0]))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TopAgg(k=0, scale=1.0, noise_std=1.0, threshold=0.0)
    with pytest.raises(ValueError, match="contributors"):
        TopAgg(k=1, scale=1.0, noise_std=1.0, threshold=0.0)(torch.zeros(3))


def test_parameters_are_keyword_only_with_their_own_names():
    with pytest.raises(TypeError):
        TopAgg(2, 1.0, 0.5, 1.0)
    agg = TopAgg(k=4, scale=1e-3, noise_std=2.0, threshold=0.0)
    assert agg.noise_multiplier == pytest.approx(1.0)  # noise_std over sqrt(k)


def _reference_votes(x: torch.Tensor, k: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    idx = top_k_indices(x, k)
    signs = stochastic_sign(x.gather(1, idx), scale, gen)
    return torch.zeros(x.shape[1], dtype=x.dtype).index_add_(0, idx.reshape(-1),
                                                             signs.reshape(-1))


def test_fast_votes_equal_the_index_path():
    # float32 votes come from masks (dense rows: two comparisons on the float bits); they
    # must equal the index path's wherever the signs are certain, and keep its support
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(6, 300, generator=g)
    dense[1, 4], dense[2, 9] = -0.0, float("inf")
    dups = torch.randint(1, 4, (6, 300), generator=g).float() * (
        torch.randint(0, 2, (6, 300), generator=g) * 2 - 1)  # ties at the threshold
    exact = torch.zeros(6, 300)  # k non-zeros per row, as DataLens's per-sample top-k
    for r in range(6):
        exact[r, torch.randperm(300, generator=g)[:20]] = torch.randn(20, generator=g)
    for x in (dense, dups, exact):
        for k in (1, 20, 150, 300):
            agg = TopAgg(k=k, scale=1e-8, noise_std=1.0, threshold=0.0)
            fast = agg.votes(x, torch.Generator().manual_seed(1))
            ref = _reference_votes(x.double(), k, 1e-8, torch.Generator().manual_seed(1))
            if k <= int((x != 0).sum(1).min()):  # else kept zeros draw random signs
                assert torch.equal(fast.double(), ref)
            else:  # the same kept set: |vote| <= kept count, of the same parity
                kept = torch.zeros(300).index_add_(0, top_k_indices(x, k).reshape(-1),
                                                   torch.ones(6 * k))
                assert (fast.abs() <= kept).all() and ((fast - kept) % 2 == 0).all()
    # kept entries inside (-scale, scale) draw their signs: unbiased, on the kept set only
    x = torch.full((400, 10), 0.5)
    x[:, 5:] = 2.0
    agg = TopAgg(k=7, scale=1.0, noise_std=1.0, threshold=0.0)
    v = agg.votes(x, torch.Generator().manual_seed(2))
    assert v[5:].tolist() == [400.0] * 5  # certain
    assert float(v[:2].mean()) == pytest.approx(200.0, abs=60.0)  # E = 400 * 0.5
    assert v[2:5].tolist() == [0.0] * 3  # not kept
