"""Accounting equals dp-accounting; bisection meets the 1% contract."""

from __future__ import annotations

import warnings

import pytest
from dp_accounting import dp_event, pld, rdp

from ppdl_nb.dp import Accountant, epsilon, noise_multiplier_for
from ppdl_nb.dp.accounting import check_delta


def test_reference_values():
    kw = dict(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14100, delta=1e-5)
    assert epsilon(**kw) == pytest.approx(2.6003, abs=1e-4)
    assert epsilon(**kw, accountant="pld") == pytest.approx(2.385, abs=0.01)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.5])
@pytest.mark.parametrize("q", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("steps", [1, 50])
def test_matches_dp_accounting(sigma, q, steps):
    event = dp_event.GaussianDpEvent(sigma)
    if q < 1:
        event = dp_event.PoissonSampledDpEvent(q, event)
    acc = rdp.RdpAccountant()
    acc.compose(event, steps)
    got = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
    assert got == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)


def test_pld_matches_dp_accounting():
    event = dp_event.PoissonSampledDpEvent(0.05, dp_event.GaussianDpEvent(1.2))
    acc = pld.PLDAccountant()
    acc.compose(event, 100)
    got = epsilon(noise_multiplier=1.2, sample_rate=0.05, steps=100, delta=1e-6,
                  accountant="pld")
    assert got == pytest.approx(acc.get_epsilon(1e-6), rel=1e-9)


@pytest.mark.parametrize("accountant, target", [("rdp", 0.5), ("rdp", 3.0), ("pld", 0.5)])
def test_noise_multiplier_for_within_one_percent(accountant, target):
    kw = dict(sample_rate=0.02, steps=500, delta=1e-5, accountant=accountant)
    sigma = noise_multiplier_for(target_epsilon=target, **kw)
    assert 0.99 * target <= epsilon(noise_multiplier=sigma, **kw) <= target


@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("q, steps", [(256 / 60000, 1000), (0.1, 50), (1.0, 1), (1.0, 300)])
def test_calibration_grid_never_above_target(q, steps, target):
    kw = dict(sample_rate=q, steps=steps, delta=1e-5)
    sigma = noise_multiplier_for(target_epsilon=target, **kw)
    got = epsilon(noise_multiplier=sigma, **kw)
    assert 0.99 * target <= got <= target
    # and the same sigma, handed to dp-accounting directly, agrees
    event = dp_event.GaussianDpEvent(sigma)
    if q < 1:
        event = dp_event.PoissonSampledDpEvent(q, event)
    ref = rdp.RdpAccountant()
    ref.compose(event, steps)
    assert ref.get_epsilon(1e-5) == pytest.approx(got, rel=1e-12)


def test_composition_of_different_steps():
    acc = Accountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.1, steps=10)
    acc.step(noise_multiplier=2.0, sample_rate=0.05)
    acc.step(noise_multiplier=2.0, sample_rate=0.05)
    assert acc.history == [(1.0, 0.1, 10), (2.0, 0.05, 2)]
    ref = rdp.RdpAccountant()
    ref.compose(dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(1.0)), 10)
    ref.compose(dp_event.PoissonSampledDpEvent(0.05, dp_event.GaussianDpEvent(2.0)), 2)
    assert acc.epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5))
    assert acc.epsilon(1e-5) > epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10,
                                       delta=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="accountant"):
        epsilon(noise_multiplier=1, sample_rate=0.1, steps=1, delta=1e-5, accountant="x")
    with pytest.raises(ValueError, match="sample_rate"):
        Accountant().step(noise_multiplier=1.0, sample_rate=2.0)
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier_for(target_epsilon=0, sample_rate=0.1, steps=1, delta=1e-5)


@pytest.mark.parametrize("delta", [0, 1, 1.5, -1e-5, float("nan"), "1e-5"])
def test_delta_must_be_a_probability(delta):
    with pytest.raises(ValueError, match=r"delta must be a probability in \(0, 1\)"):
        epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=delta)


def test_delta_not_below_one_over_n_warns():
    with pytest.warns(UserWarning, match=r"not below 1/n = 0.01 for 100 records"):
        check_delta(0.05, n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_delta(1e-5, n=100) == 1e-5
