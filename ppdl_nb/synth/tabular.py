"""A differentially private generator for tables with mixed columns (DP-MERF underneath).

Why: the leakage measures need a tabular release to attack, and tables are where
synthetic data is most often sold as anonymous. Columns are continuous, integer (counts
such as pregnancies, rounded on the way out) or the class label (categorical: the
generator is conditional on it, so its distribution is released, noisily, by the same
Gaussian mechanism as everything else; see :mod:`ppdl_nb.synth.merf`).

Each column is clipped to its ``bounds`` and scaled to ``[0, 1]``. The bounds are
*schema*: they must be public knowledge (a unit's physical range, a questionnaire's
scale). When none are given they are read off the data, which is not private, and the
result says so (``bounds_from_data``); a real release passes them.

>>> import torch
>>> x, y = torch.rand(80, 3) * 10, torch.arange(80) % 2
>>> syn = fit_tabular_merf(x, y, classes=2, epsilon=1.0, delta=1e-5, integer_columns=[0],
...                        bounds=[(0, 10)] * 3, steps=20, features=32)
>>> xs, ys = syn.sample(5)
>>> bool((xs[:, 0] == xs[:, 0].round()).all()), syn.bounds_from_data
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ppdl_nb.synth.merf import MerfResult, train_dp_merf

__all__ = ["TabularSynth", "fit_tabular_merf", "scale_columns"]


def scale_columns(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Clip each column to ``[lo, hi]`` and map it to ``[0, 1]``."""
    return ((x.clamp(lo, hi) - lo) / (hi - lo).clamp_min(1e-12)).to(torch.float32)


@dataclass
class TabularSynth:
    """A fitted tabular generator: ``sample(n)`` gives rows in the original units."""

    merf: MerfResult
    lo: torch.Tensor
    hi: torch.Tensor
    integer_columns: tuple[int, ...]
    bounds_from_data: bool

    @property
    def epsilon(self) -> float:
        return self.merf.epsilon

    def sample(self, n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` synthetic rows (original units, integer columns rounded) and labels."""
        u, y = self.merf.generator.release(n, class_weights=self.merf.class_weights, seed=seed)
        x = self.lo + u * (self.hi - self.lo)
        for c in self.integer_columns:
            x[:, c] = x[:, c].round()
        return x, y


def fit_tabular_merf(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *, classes: int,
    epsilon: float, delta: float, integer_columns: Sequence[int] = (),
    bounds: Sequence[tuple[float, float]] | None = None, features: int = 500,
    steps: int = 1000, seed: int = 0,
) -> TabularSynth:
    """Fit DP-MERF to a table of ``x`` columns conditioned on the label ``y``.

    The kernel lengthscale is fixed at ``sqrt(columns) / 4`` in the scaled unit cube
    (data-independent: about a quarter of a typical distance), so nothing but the one
    Gaussian release touches the records.
    """
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y)).long()
    d = xt.shape[1]
    if bounds is None:
        lo, hi, from_data = xt.min(0).values, xt.max(0).values, True
    else:
        if len(bounds) != d:
            raise ValueError(f"need one (low, high) pair of bounds per column: {len(bounds)} "
                             f"for {d}.")
        lo = torch.tensor([b[0] for b in bounds], dtype=torch.float32)
        hi = torch.tensor([b[1] for b in bounds], dtype=torch.float32)
        from_data = False
    if bool((hi <= lo).any()):
        raise ValueError("every column needs low < high in its bounds.")
    bad = [c for c in integer_columns if not 0 <= c < d]
    if bad:
        raise ValueError(f"integer_columns {bad} are not columns of a {d}-column table.")
    u = scale_columns(xt, lo, hi)
    merf = train_dp_merf(u, yt, classes=classes, epsilon=epsilon, delta=delta,
                         features=features, lengthscale=d**0.5 / 4, steps=steps,
                         batch_size=20 * classes, hidden=64, seed=seed)
    return TabularSynth(merf, lo, hi, tuple(integer_columns), from_data)
