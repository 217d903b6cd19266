"""The accuracy of the approximations with the default :class:`~.approx.ApproxConfig`.

One place for the numbers: docs/MPC_APPROX.md shows :func:`markdown` verbatim, and
tests/mpc/test_approx.py measures every row over a dense grid of its range, for 2 and 3
parties, and fails if an error exceeds the row's bound, if the rounds differ, or if the
page and this table disagree.

Errors are against float64 on the encoded input. The relative error is taken where
``|f(x)| >= 2^-6``: below that, one unit in the last place (2^-16) is already more than
1/1000 of the value. Rounds are those of the simulation (each product 2: the opening
and the exact truncation), with those of secure comparison (4 each) where it is used.

>>> [row.name for row in ACCURACY][:3]
['exp', 'exp', 'reciprocal']
>>> markdown().splitlines()[0]
'| function | method | default settings | input range | max abs error | max rel error | rounds |'
"""

from __future__ import annotations

from dataclasses import dataclass

from ppdl_nb.mpc.approx import DEFAULT

__all__ = ["ACCURACY", "REL_FLOOR", "SOFTMAX_CLASSES", "Accuracy", "markdown"]

REL_FLOOR = 2.0**-6
SOFTMAX_CLASSES = 10


@dataclass(frozen=True)
class Accuracy:
    """One row: a function on an input range, its bounds and its rounds."""

    name: str  # the recipe in ppdl_nb.mpc.approx or ppdl_nb.mpc.approx_nn
    needs: str  # "" (nothing but products), "ge0" or "max" (secure comparison)
    lo: float
    hi: float
    max_abs: float
    max_rel: float
    rounds: int
    method: str
    settings: tuple[str, ...]  # the ApproxConfig fields that govern it

    @property
    def label(self) -> str:
        return f"{self.name} (with {self.needs})" if self.needs else self.name

    @property
    def domain(self) -> str:
        span = f"[{self.lo:g}, {self.hi:g}]"
        if self.name != "softmax":
            return span
        extra = "" if self.needs else ", plus any common offset"
        return f"{SOFTMAX_CLASSES} logits in {span}{extra}"


_EXP = ("exp_iterations", "exp_degree")
ACCURACY: tuple[Accuracy, ...] = (
    Accuracy("exp", "", -256.0, 0.0, 4e-5, 8e-4, 20, "(1 + t + t²/2 + t³/6)^(2^n), t = x/2^n",
             _EXP + ("exp_max",)),
    Accuracy("exp", "", 0.0, 20.0, 2.5e5, 5e-4, 20, "(1 + t + t²/2 + t³/6)^(2^n), t = x/2^n",
             _EXP + ("exp_max",)),
    Accuracy("reciprocal", "", 0.01, 100.0, 2.5e-5, 1.3e-3, 60,
             "Newton y(2 - xy) from 3e^(1-2x) + 0.003", ("reciprocal_iterations",) + _EXP),
    Accuracy("inv_sqrt", "", 0.1, 100.0, 2.5e-5, 2.5e-4, 50,
             "Newton y(3 - xy²)/2 from 2.2e^-(x/2+0.2) + 0.2 - x/1024",
             ("inv_sqrt_iterations",) + _EXP),
    Accuracy("log", "", 0.01, 100.0, 3e-5, 5e-4, 95,
             "Householder from x/120 - 20e^(-2x-1) + 3", ("log_iterations", "log_order") + _EXP),
    Accuracy("sigmoid", "", -4.0, 4.0, 4e-5, 1.2e-3, 80, "1 / (1 + e^-x)",
             ("sigmoid_max", "reciprocal_iterations") + _EXP),
    Accuracy("sigmoid", "ge0", -256.0, 256.0, 4e-5, 1.2e-3, 33,
             "1 / (1 + e^-abs(x)), Newton from (24 - 8d)/17, branch on the sign",
             ("sigmoid_iterations",) + _EXP),
    Accuracy("tanh", "", -2.0, 2.0, 6e-5, 1.5e-3, 80, "2 sigmoid(2x) - 1",
             ("sigmoid_max", "reciprocal_iterations") + _EXP),
    Accuracy("tanh", "ge0", -128.0, 128.0, 5e-5, 3e-4, 33, "2 sigmoid(2x) - 1",
             ("sigmoid_iterations",) + _EXP),
    Accuracy("softmax", "", -2.0, 2.0, 5e-5, 1.3e-3, 84, "e^(x - mean) / sum",
             ("softmax_spread", "reciprocal_iterations") + _EXP),
    Accuracy("softmax", "max", -100.0, 100.0, 2.5e-5, 1.2e-3, 79, "e^(x - max) / sum",
             ("reciprocal_iterations",) + _EXP),
)


def _settings(row: Accuracy) -> str:
    return ", ".join(f"{name}={getattr(DEFAULT, name)}" for name in row.settings)


def markdown() -> str:
    """The table of docs/MPC_APPROX.md."""
    lines = ["| function | method | default settings | input range | max abs error "
             "| max rel error | rounds |", "|---|---|---|---|---|---|---|"]
    for r in ACCURACY:
        lines.append(f"| {r.label} | {r.method} | {_settings(r)} | {r.domain} "
                     f"| {r.max_abs:.1e} | {r.max_rel:.1e} | {r.rounds} |")
    return "\n".join(lines)
