from __future__ import annotations

import numpy as np
import pytest
import torch

from ppdl_nb.dp import Accountant, TopAgg, fixed_seed
from ppdl_nb.dp.topagg import stochastic_sign, top_k_mask, topagg_rdp


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
