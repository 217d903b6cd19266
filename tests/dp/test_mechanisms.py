from __future__ import annotations

import math

import pytest
import torch

from ppdl_nb.dp import fixed_seed
from ppdl_nb.dp.mechanisms import gaussian_mechanism, gaussian_sigma, laplace_mechanism


def _classic(sensitivity, epsilon, delta):
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


@pytest.mark.parametrize("eps", [0.1, 0.5, 0.9])
def test_analytic_gaussian_beats_classic(eps):
    s = gaussian_sigma(sensitivity=2.0, epsilon=eps, delta=1e-5)
    assert 0 < s < _classic(2.0, eps, 1e-5)
    # scales linearly with sensitivity
    assert gaussian_sigma(sensitivity=1.0, epsilon=eps, delta=1e-5) == pytest.approx(s / 2)


def test_noise_scales():
    with fixed_seed(3):
        g = gaussian_mechanism(torch.zeros(20000), sensitivity=1.0, epsilon=1.0, delta=1e-5)
        lap = laplace_mechanism(torch.zeros(20000), sensitivity=2.0, epsilon=0.5)
    assert float(g.std()) == pytest.approx(gaussian_sigma(sensitivity=1, epsilon=1, delta=1e-5),
                                           rel=0.05)
    assert float(lap.abs().mean()) == pytest.approx(4.0, rel=0.05)  # E|Lap(b)| = b


def test_bad_parameters():
    with pytest.raises(ValueError, match="epsilon"):
        laplace_mechanism(1.0, sensitivity=1.0, epsilon=0)
    with pytest.raises(ValueError, match="delta"):
        gaussian_sigma(sensitivity=1.0, epsilon=1.0, delta=0)
