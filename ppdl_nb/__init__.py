"""ppdl_nb: privacy-preserving deep learning in PyTorch, inside Jupyter.

Workers hold data; the notebook holds pointers to it. Federated learning, secret
sharing (SPDZ) and differential privacy are built on those pointers.

>>> import torch, ppdl_nb
>>> alice = ppdl_nb.VirtualWorker("alice")
>>> x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), alice)
>>> (x + x).get()
tensor([2., 4., 6.])

In Jupyter: ``%load_ext ppdl_nb`` then ``%ppdl help``.
"""

from __future__ import annotations

from typing import Any

from .errors import WorkerMismatchError, WorkerUnavailableError
from .tensors.chain import chain_of
from .tensors.fixed import FixedPrecisionTensor, fix_precision, share
from .tensors.pointer import ModulePointer, PointerTensor, send
from .tensors.shared import SharedTensor
from .viz.trace import trace
from .workers import dp_steps as _dp_steps  # noqa: F401  (registers the DP steps)
from .workers import fl_steps as _fl_steps  # noqa: F401  (registers the federated steps)
from .workers import handlers as _handlers  # noqa: F401  (registers the message vocabulary)
from .workers import mpc_steps as _mpc_steps  # noqa: F401  (registers the SPDZ steps)
from .workers import secagg_steps as _secagg_steps  # noqa: F401  (pairwise-mask SecAgg)
from .workers.virtual import VirtualWorker


def launch(*names: str, inspect: bool = True, timeout: float = 90.0) -> Any:
    """Start workers as separate Jupyter kernels (a context manager and a tuple).

    >>> # with ppdl_nb.launch("alice", "bob") as (alice, bob): ...
    """
    from .workers.kernel import launch as _launch

    return _launch(*names, inspect=inspect, timeout=timeout)

__version__ = "0.1.0"

__all__ = [
    "FixedPrecisionTensor",
    "ModulePointer",
    "PointerTensor",
    "SharedTensor",
    "VirtualWorker",
    "WorkerMismatchError",
    "WorkerUnavailableError",
    "chain_of",
    "fix_precision",
    "launch",
    "send",
    "share",
    "trace",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ppdl_nb``: register the ``%ppdl`` / ``%%ppdl`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
