"""Differential privacy: DP-SGD, accounting, mechanisms and budgets.

>>> from ppdl_nb.dp import make_private, epsilon
>>> round(epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14100, delta=1e-5), 2)
2.6
"""

from __future__ import annotations

from .accounting import Accountant, epsilon, noise_multiplier_for
from .data import PoissonLoader
from .engine import PrivateTraining, make_private, make_private_with_epsilon
from .noise import fixed_seed
from .optimizer import DPOptimizer
from .private_module import PrivateModule
from .validate import validate

__all__ = [
    "Accountant",
    "DPOptimizer",
    "PoissonLoader",
    "PrivateModule",
    "PrivateTraining",
    "epsilon",
    "fixed_seed",
    "make_private",
    "make_private_with_epsilon",
    "noise_multiplier_for",
    "validate",
]
