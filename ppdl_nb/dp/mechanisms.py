"""The Laplace and Gaussian mechanisms: release a value plus calibrated noise.

Why two: Laplace gives pure epsilon-DP (delta = 0) and suits single counts and
sums; Gaussian needs delta > 0 but composes better and suits vectors. Gaussian
noise is calibrated with the *analytic* Gaussian mechanism (Balle & Wang 2018,
"Improving the Gaussian mechanism for differential privacy"), exact for every
epsilon, unlike the classic sqrt(2 ln(1.25/delta))/epsilon which needs epsilon < 1
and over-noises. Mechanisms are registered by name (``MECHANISMS``) so queries and
widgets can offer a choice without if/elif ladders.

>>> round(gaussian_sigma(sensitivity=1.0, epsilon=1.0, delta=1e-5), 3)
3.731
>>> x = laplace_mechanism(10.0, sensitivity=1.0, epsilon=1.0)
>>> x.dtype
torch.float64
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ppdl_nb.dp.noise import gaussian_noise, laplace_noise

__all__ = ["MECHANISMS", "gaussian_mechanism", "gaussian_sigma", "laplace_mechanism"]

Mechanism = Callable[..., torch.Tensor]
MECHANISMS: dict[str, Mechanism] = {}


def _register(name: str) -> Callable[[Mechanism], Mechanism]:
    def deco(fn: Mechanism) -> Mechanism:
        MECHANISMS[name] = fn
        return fn

    return deco


def _check(sensitivity: float, epsilon: float) -> None:
    if sensitivity < 0 or not math.isfinite(sensitivity):
        raise ValueError(f"sensitivity must be finite and >= 0, got {sensitivity}.")
    if epsilon <= 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be finite and > 0, got {epsilon}.")


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _delta_of(sigma: float, sensitivity: float, epsilon: float) -> float:
    """The exact delta of N(0, sigma^2) noise at this epsilon (Balle & Wang 2018, Thm 8)."""
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)


def gaussian_sigma(*, sensitivity: float, epsilon: float, delta: float) -> float:
    """Smallest sigma (to 1e-9 relative) giving (epsilon, delta)-DP for this L2 sensitivity."""
    _check(sensitivity, epsilon)
    if not 0 < delta < 1:
        raise ValueError(f"The Gaussian mechanism needs 0 < delta < 1, got {delta}.")
    if sensitivity == 0:
        return 0.0
    lo, hi = 1e-12 * sensitivity, sensitivity
    while _delta_of(hi, sensitivity, epsilon) > delta:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _delta_of(mid, sensitivity, epsilon) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return hi


def _as_float64(value: float | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


@_register("gaussian")
def gaussian_mechanism(
    value: float | torch.Tensor, *, sensitivity: float, epsilon: float, delta: float
) -> torch.Tensor:
    """``value`` + N(0, sigma^2) per entry, sigma from :func:`gaussian_sigma` (L2 sensitivity)."""
    v = _as_float64(value)
    sigma = gaussian_sigma(sensitivity=sensitivity, epsilon=epsilon, delta=delta)
    return v + gaussian_noise(v.shape, sigma, dtype=torch.float64)


@_register("laplace")
def laplace_mechanism(
    value: float | torch.Tensor, *, sensitivity: float, epsilon: float, delta: float = 0.0
) -> torch.Tensor:
    """``value`` + Laplace(sensitivity / epsilon) per entry (L1 sensitivity); pure epsilon-DP."""
    _check(sensitivity, epsilon)
    v = _as_float64(value)
    return v + laplace_noise(v.shape, sensitivity / epsilon)
