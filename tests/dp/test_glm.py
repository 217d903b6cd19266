"""DP linear / logistic regression: it fits, it spends what it says, and no more."""

from __future__ import annotations

import pytest
import torch

from ppdl_nb.dp import Accountant, fit_glm, fixed_seed
from ppdl_nb.dp.glm import glm_noise


def _data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 10
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 3 + torch.randn(n, generator=g) * 0.1
    return x, y


def _spent(model, steps, accountant="pld"):
    acc = Accountant(accountant)
    for name, mult in model.noise_multipliers.items():
        acc.step(noise_multiplier=mult, sample_rate=1.0, steps=steps if name == "steps" else 1)
    return acc.epsilon(model.delta)


def test_non_private_fits_and_private_is_close():
    x, y = _data()
    plain = fit_glm(x, y, task="regression", x_bounds=(0, 10), y_bounds=(-25, 15),
                    epsilon=None, steps=400)
    assert float(((plain.predict(x) - y) ** 2).mean()) < 0.05
    with fixed_seed(0):
        dp = fit_glm(x, y, task="regression", x_bounds=(0, 10), y_bounds=(-25, 15),
                     epsilon=4.0, steps=400, max_grad_norm=0.1)
    assert float(((dp.predict(x) - y) ** 2).mean()) < 0.1 * float(y.var())
    assert dp.epsilon == 4.0 and set(dp.noise_multipliers) == {"steps", "center", "scale"}
    assert 0.99 * 4.0 <= _spent(dp, 400) <= 4.0


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("eps, steps, center, scale", [(0.5, 2000, 0.1, 0.2), (2.0, 50, 0.0, 0.0),
                                                        (1.0, 300, 0.3, 0.0)])
def test_noise_split_composes_to_at_most_the_target(accountant, eps, steps, center, scale):
    mults = glm_noise(eps, 1e-5, steps, center, scale, accountant)
    acc = Accountant(accountant)
    for name, mult in mults.items():
        acc.step(noise_multiplier=mult, sample_rate=1.0, steps=steps if name == "steps" else 1)
    assert 0.99 * eps <= acc.epsilon(1e-5) <= eps
    assert ("center" in mults) == (center > 0) and ("scale" in mults) == (scale > 0)


def test_logistic_with_lopsided_public_bounds():
    # Features live in a corner of their public range: the DP centre and spread fix that.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 2, generator=g) * 3 + 10
    y = ((x[:, 0] - 10) + (x[:, 1] - 10) > 0).long()
    with fixed_seed(2):
        m = fit_glm(x, y, task="logistic", x_bounds=(0, 100), epsilon=2.0, steps=500,
                    max_grad_norm=1.0)
    acc = float(((m.predict(x) > 0.5).long() == y).float().mean())
    assert acc > 0.9
    assert _spent(m, 500) <= 2.0


def test_inputs_outside_the_public_bounds_are_clipped():
    x, y = _data(100)
    m = fit_glm(x, y, task="regression", x_bounds=(0, 10), y_bounds=(-25, 15), epsilon=None,
                steps=200)
    far = torch.tensor([[1e6, 5.0, 5.0]])
    edge = torch.tensor([[10.0, 5.0, 5.0]])
    assert torch.equal(m.predict(far), m.predict(edge))


def test_bad_inputs():
    x, y = _data(10)
    with pytest.raises(ValueError, match="task"):
        fit_glm(x, y, task="poisson", x_bounds=(0, 10), epsilon=None)
    with pytest.raises(ValueError, match="lower < upper"):
        fit_glm(x, y, task="regression", x_bounds=(1, 1), epsilon=None)
    with pytest.raises(ValueError, match="epsilon"):
        fit_glm(x, y, task="regression", x_bounds=(0, 10), epsilon=0.0)
    with pytest.raises(ValueError, match="budget fractions"):
        fit_glm(x, y, task="regression", x_bounds=(0, 10), epsilon=1.0, center=0.6, scale=0.5)
    with pytest.raises(ValueError, match="x must be"):
        fit_glm(x[:5], y, task="regression", x_bounds=(0, 10), epsilon=None)
