"""Privacy accounting for DP-SGD with Google's ``dp-accounting``: RDP or PLD.

Why: the privacy of DP-SGD is a property of the whole run (noise multiplier,
sampling rate, number of steps), not of one step. We build the run as
``dp_accounting`` events (a Poisson-subsampled Gaussian, composed ``steps`` times)
and let that library do the mathematics: RDP (Mironov 2017; the default, the usual
reporting convention) or PLD (privacy loss distributions; tighter, on request).

* :func:`epsilon` - epsilon of a run;
* :func:`noise_multiplier_for` - the sigma that meets a target epsilon (bisection;
  the result's epsilon is <= target and within 1% of it);
* :class:`Accountant` - accumulates steps with varying parameters (composition),
  as a DP optimizer or a budget needs.

>>> round(epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14100, delta=1e-5), 4)
2.6003
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # dp_accounting (with scipy) is imported on the first accounting
    from dp_accounting import dp_event

__all__ = ["ACCOUNTANTS", "Accountant", "check_delta", "encrypted_training_epsilon",
           "epsilon", "noise_multiplier_for", "register_accountant"]

ACCOUNTANTS: dict[str, Callable[[], object]] = {}


def register_accountant(name: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Decorator: ``factory() -> dp_accounting.PrivacyAccountant`` under ``name``."""

    def deco(factory: Callable[[], object]) -> Callable[[], object]:
        ACCOUNTANTS[name] = factory
        return factory

    return deco


@register_accountant("rdp")
def _rdp() -> object:
    from dp_accounting import rdp

    return rdp.RdpAccountant()


@register_accountant("pld")
def _pld() -> object:
    from dp_accounting import pld

    return pld.PLDAccountant()


def _new_accountant(name: str) -> object:
    try:
        return ACCOUNTANTS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown accountant {name!r}: choose one of {sorted(ACCOUNTANTS)}."
        ) from None


def check_delta(delta: float, n: int | None = None) -> float:
    """``delta`` if it is a probability in (0, 1); with the data size ``n``, warn when it is
    not below ``1 / n``: a mechanism that publishes one random record in full is
    (0, 1/n)-DP, so such a delta promises next to nothing.

    >>> check_delta(1e-5, n=1000)
    1e-05
    """
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ValueError(f"delta must be a probability in (0, 1), got {delta!r}; the usual "
                         "choice is well below 1 / (number of records), e.g. 1e-5.")
    if n is not None and n > 0 and delta >= 1 / n:
        warnings.warn(f"delta = {delta:g} is not below 1/n = {1 / n:.3g} for {n} records: "
                      "publishing one random record in full meets that guarantee. Choose "
                      "delta well below 1/n (e.g. 1e-5).", UserWarning, stacklevel=3)
    return delta


def _event(noise_multiplier: float, sample_rate: float) -> dp_event.DpEvent:
    from dp_accounting import dp_event

    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}.")
    gaussian = dp_event.GaussianDpEvent(noise_multiplier)
    if sample_rate == 1:
        return gaussian
    return dp_event.PoissonSampledDpEvent(sample_rate, gaussian)


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning per RDP order it skips while bisecting; hide them."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@dataclass
class Accountant:
    """A ledger of DP-SGD steps; ``epsilon(delta)`` composes all of them.

    >>> acc = Accountant()
    >>> acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    >>> acc.step(noise_multiplier=2.0, sample_rate=0.01, steps=100)
    >>> acc.history
    [(1.0, 0.01, 100), (2.0, 0.01, 100)]
    """

    accountant: str = "rdp"
    history: list[tuple[float, float, int]] = field(default_factory=list)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` steps with these parameters (merged with the last if equal)."""
        _event(noise_multiplier, sample_rate)  # validate now, not at epsilon() time
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            sigma, q, n = self.history[-1]
            self.history[-1] = (sigma, q, n + steps)
        else:
            self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.history)

    def epsilon(self, delta: float) -> float:
        """Epsilon of everything recorded so far, at this ``delta``."""
        check_delta(delta)
        if not self.history:
            return 0.0
        acc = _new_accountant(self.accountant)
        with _quiet_absl():
            for sigma, q, n in self.history:
                acc.compose(_event(sigma, q), n)  # type: ignore[attr-defined]
            return float(acc.get_epsilon(delta))  # type: ignore[attr-defined]


def epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta``."""
    acc = Accountant(accountant)
    acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return acc.epsilon(delta)


def encrypted_training_epsilon(training: Any, *, delta: float, rows: int,
                               steps: int | None = None) -> float:
    """Epsilon of DP-SGD inside the shares (``pm.training(max_grad_norm=...,
    noise_multiplier=...)``) after ``steps`` (default: the whole program) on ``rows``
    rows, at sample rate batch_size / rows. Batches are shuffled, fixed-size, not
    Poisson-sampled, as in most DP-SGD code; the accounting assumes Poisson sampling.
    Infinite without noise."""
    sigma = training.config.noise_multiplier
    if not sigma:
        return math.inf
    batch, epochs = training.program["batch_size"], training.program["epochs"]
    steps = -(-rows // batch) * epochs if steps is None else steps
    return epsilon(noise_multiplier=sigma, sample_rate=min(1.0, batch / rows), steps=steps,
                   delta=delta)


def noise_multiplier_for(
    *,
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    rtol: float = 0.01,
) -> float:
    """The noise multiplier whose epsilon is <= ``target_epsilon`` and within ``rtol`` of it.

    Bisection on sigma (epsilon decreases as sigma grows).

    >>> s = noise_multiplier_for(target_epsilon=2.0, sample_rate=0.01, steps=1000, delta=1e-5)
    >>> 0.99 * 2.0 <= epsilon(noise_multiplier=s, sample_rate=0.01, steps=1000, delta=1e-5) <= 2.0
    True
    """
    if target_epsilon <= 0 or not math.isfinite(target_epsilon):
        raise ValueError(f"target_epsilon must be positive and finite, got {target_epsilon}.")

    def eps(sigma: float) -> float:
        return epsilon(
            noise_multiplier=sigma,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
            accountant=accountant,
        )

    lo, hi = 0.0, 1.0
    e_hi = eps(hi)
    while e_hi > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ValueError(
                f"No noise multiplier up to 1e6 reaches epsilon {target_epsilon} with "
                f"sample_rate={sample_rate}, steps={steps}, delta={delta}; raise delta "
                "or the target epsilon, or take fewer steps."
            )
        e_hi = eps(hi)
    for _ in range(100):
        if e_hi >= (1 - rtol) * target_epsilon:
            break
        mid = (lo + hi) / 2
        e_mid = eps(mid)
        if e_mid > target_epsilon:
            lo = mid
        else:
            hi, e_hi = mid, e_mid
    return hi
