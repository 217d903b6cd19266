"""Differential privacy: DP-SGD, accounting, mechanisms, budgets, PATE, TopAgg, audits.

DP-SGD wraps your objects instead of patching them::

    module, optimizer, loader = make_private(module=model, optimizer=opt, data_loader=dl,
                                             noise_multiplier=1.1, max_grad_norm=1.0)

>>> from ppdl_nb.dp import epsilon
>>> round(epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14100, delta=1e-5), 2)
2.6

Submodules: ``accounting``, ``engine`` (make_private), ``private_module``,
``grad_rules`` (per-layer norm registry), ``optimizer``, ``data`` (Poisson
sampling), ``noise`` (secure seeding), ``mechanisms``, ``budget``, ``queries``,
``glm`` (DP linear / logistic regression), ``pate``, ``topagg``, ``audit``, ``remote``
(a data owner's datasets, queried and trained on where they live, through
``remote(worker)``).
"""

from __future__ import annotations

from ppdl_nb.dp.accounting import Accountant, epsilon, noise_multiplier_for
from ppdl_nb.dp.audit import AttackResult, loss_threshold_attack, shadow_model_attack
from ppdl_nb.dp.budget import PrivacyBudget
from ppdl_nb.dp.data import PoissonLoader
from ppdl_nb.dp.engine import PrivateTraining, make_private, make_private_with_epsilon
from ppdl_nb.dp.glm import fit_glm
from ppdl_nb.dp.grad_rules import register_grad_rule
from ppdl_nb.dp.mechanisms import gaussian_mechanism, laplace_mechanism
from ppdl_nb.dp.noise import fixed_seed
from ppdl_nb.dp.optimizer import DPOptimizer
from ppdl_nb.dp.pate import noisy_max, pate_epsilon, train_teachers
from ppdl_nb.dp.private_module import PrivateModule
from ppdl_nb.dp.queries import dp_count, dp_mean, dp_sum
from ppdl_nb.dp.remote import remote
from ppdl_nb.dp.topagg import TopAgg
from ppdl_nb.dp.validate import register_validator, validate

__all__ = [
    "Accountant",
    "AttackResult",
    "DPOptimizer",
    "PoissonLoader",
    "PrivacyBudget",
    "PrivateModule",
    "PrivateTraining",
    "TopAgg",
    "dp_count",
    "dp_mean",
    "dp_sum",
    "epsilon",
    "fit_glm",
    "fixed_seed",
    "gaussian_mechanism",
    "laplace_mechanism",
    "loss_threshold_attack",
    "make_private",
    "make_private_with_epsilon",
    "noise_multiplier_for",
    "noisy_max",
    "pate_epsilon",
    "register_grad_rule",
    "register_validator",
    "remote",
    "shadow_model_attack",
    "train_teachers",
    "validate",
]
