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

from ppdl_nb import boot as _boot  # noqa: F401  (the message vocabulary and step table)
from ppdl_nb import viz as _viz  # noqa: F401  (fills ppdl_nb.plotting: History.plot & co.)
from ppdl_nb.errors import WorkerMismatchError, WorkerUnavailableError
from ppdl_nb.tensors.chain import chain_of
from ppdl_nb.tensors.fixed import FixedPrecisionTensor, fix_precision, share
from ppdl_nb.tensors.pointer import ModulePointer, PointerTensor, send
from ppdl_nb.tensors.private_model import encrypt
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.viz.trace import trace
from ppdl_nb.workers.transport.virtual import VirtualWorker


def launch(*names: str, inspect: bool = True, timeout: float = 90.0) -> Any:
    """Start workers as separate Jupyter kernels (a context manager and a tuple).

    >>> # with ppdl_nb.launch("alice", "bob") as (alice, bob): ...
    """
    from ppdl_nb.workers.transport.kernel import launch as _launch

    return _launch(*names, inspect=inspect, timeout=timeout)

def connect(address: str, *, fingerprint: str, join: tuple[Any, ...] = (),
            timeout: float = 120.0) -> Any:
    """Connect to a worker its owner serves (``ppdl-worker serve``), pinned by fingerprint.

    ``join``: kernel or served workers to introduce it to. See docs/SERVED.md.

    >>> # alice = ppdl_nb.connect("alice@10.0.0.5:7700", fingerprint="5f3a...")
    """
    from ppdl_nb.workers.transport.served_client import connect as _connect

    return _connect(address, fingerprint=fingerprint, join=join, timeout=timeout)

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
    "connect",
    "encrypt",
    "fix_precision",
    "launch",
    "send",
    "share",
    "trace",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ppdl_nb``: register the ``%ppdl`` / ``%%ppdl`` magics."""
    from ppdl_nb.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from ppdl_nb.magics import unload_ipython_extension as unload

    unload(ipython)
