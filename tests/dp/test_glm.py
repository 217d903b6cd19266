from __future__ import annotations

import pytest
import torch

from ppdl_nb.dp import epsilon, fit_glm, fixed_seed


def _data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 10
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 3 + torch.randn(n, generator=g) * 0.1
    return x, y


def test_non_private_fits_and_private_is_close():
    x, y = _data()
    plain = fit_glm(x, y, task="regression", x_bounds=(0, 10), y_bounds=(-25, 15),
                    epsilon=None, steps=400, lr=0.5)
    assert float(((plain.predict(x) - y) ** 2).mean()) < 0.5
    with fixed_seed(0):
        dp = fit_glm(x, y, task="regression", x_bounds=(0, 10), y_bounds=(-25, 15),
                     epsilon=4.0, steps=100, lr=0.5, max_grad_norm=1.0)
    assert float(((dp.predict(x) - y) ** 2).mean()) < float(y.var())
    assert dp.epsilon == 4.0 and dp.noise_multiplier > 0
    spent = epsilon(noise_multiplier=dp.noise_multiplier, sample_rate=1.0, steps=100,
                    delta=1e-5)
    assert 0.99 * 4.0 <= spent <= 4.0


def test_logistic_with_standardisation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 2, generator=g) * 5 + 50
    y = ((x[:, 0] - 50) + (x[:, 1] - 50) > 0).long()
    with fixed_seed(2):
        m = fit_glm(x, y, task="logistic", x_bounds=(0, 100), epsilon=2.0, steps=50, lr=0.5,
                    standardise=10)
    acc = float(((m.predict(x) > 0.5).long() == y).float().mean())
    assert acc > 0.85
    # standardisation spends budget too: steps + standardise equivalents
    spent = epsilon(noise_multiplier=m.noise_multiplier, sample_rate=1.0, steps=60, delta=1e-5)
    assert spent <= 2.0


def test_bad_task():
    x, y = _data(10)
    with pytest.raises(ValueError, match="task"):
        fit_glm(x, y, task="poisson", x_bounds=(0, 10), epsilon=None)
    with pytest.raises(ValueError, match="lower < upper"):
        fit_glm(x, y, task="regression", x_bounds=(1, 1), epsilon=None)
