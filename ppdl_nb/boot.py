"""The composition root: what a worker process loads, and when.

Every layer below registers its own pieces (message kinds in ``workers``, protocol steps
next to the concept they belong to). This module, above all layers and ranked by none,
puts them together: it tells the worker which module registers each protocol step, so a
worker imports DP, FL or SPDZ code only when a step of theirs is first asked for, and it
is a worker kernel's entry point: the launcher starts ``python -c "from ppdl_nb.boot
import kernel_main; kernel_main()" -f <connection file>`` with the worker's name and the
notebook's public key in the environment, and :func:`kernel_main` starts the worker
runtime while the kernel boots (no code is ever sent to the kernel's shell for it).

>>> from ppdl_nb.workers.core.messages import find_step
>>> find_step("dp.budget").__module__
'ppdl_nb.dp.worker_steps'
"""

from __future__ import annotations

from typing import Any

from ppdl_nb.workers.core import handlers as _handlers  # noqa: F401  (the core vocabulary)
from ppdl_nb.workers.core.messages import install_step_table

__all__ = ["STEP_MODULES", "kernel_main", "start_kernel_worker"]

_STEP_HOMES: dict[str, tuple[str, ...]] = {
    "ppdl_nb.dp.worker_steps": (
        "dp.budget", "dp.budgets", "dp.fit", "dp.load", "dp.query", "dp.teacher_votes",
    ),
    "ppdl_nb.fl.worker_steps": (
        "fl.aggregate", "fl.load", "fl.share", "fl.sum_shares", "fl.take_share", "fl.train",
    ),
    "ppdl_nb.he.worker_steps": (
        "he.absorb", "he.collect", "he.decrypt_sum", "he.encrypt_update", "he.finish",
        "he.infer", "he.keygen", "he.open", "he.public_context", "he.sum_round", "he.trust",
    ),
    "ppdl_nb.fl.secagg_steps": ("secagg.keys", "secagg.masked", "secagg.share", "secagg.unmask"),
    "ppdl_nb.synth.worker_steps": ("synth.close", "synth.load", "synth.partial", "synth.setup", "synth.take_share", "synth.vote"),  # noqa: E501
    "ppdl_nb.tensors.spdz.comm": ("mpc.abort", "mpc.corrections", "mpc.deliver"),
    "ppdl_nb.tensors.spdz.links": ("mpc.link",),
    "ppdl_nb.tensors.spdz.runner": ("mpc.resume", "mpc.run"),
    "ppdl_nb.tensors.spdz.steps": (
        "mpc.deal", "mpc.dealer_setup", "mpc.histogram", "mpc.join", "mpc.prepare",
        "mpc.reconstruct", "mpc.share_from",
    ),
}

#: step name -> the module that registers it (a fixed table: never a name a peer chose)
STEP_MODULES: dict[str, str] = {
    step: module for module, steps in _STEP_HOMES.items() for step in steps
}
install_step_table(STEP_MODULES)


def start_kernel_worker(name: str, notebook_key: str, *, inspect: bool = True) -> dict[str, Any]:
    """Inside a worker kernel: start this process's worker; returns endpoint, key and pid."""
    from ppdl_nb.workers.transport import runtime

    return runtime.start(name, notebook_key, inspect=inspect)


#: kernel options a worker drops: ``matplotlib=inline`` imports matplotlib (~30 MB,
#: ~0.3 s) at boot, though ipykernel already makes inline the default backend (through
#: ``MPLBACKEND``) for a ``%%ppdl on`` cell that plots
EAGER_FLAGS = frozenset({"--IPKernelApp.matplotlib=inline", "--matplotlib=inline"})


def kernel_main() -> None:
    """A worker kernel process's entry point: boot ipykernel with the worker started in it.

    The settings come from the environment the launcher sets (``kernel_boot.ENV``); see
    :func:`ppdl_nb.workers.transport.kernel_boot.run_kernel`.
    """
    import sys

    from ppdl_nb.workers.transport.kernel_boot import run_kernel

    run_kernel(start_kernel_worker, [a for a in sys.argv[1:] if a not in EAGER_FLAGS])


def serve_main(argv: list[str] | None = None) -> int:
    """``ppdl-worker``: a data owner's worker served without Jupyter (docs/SERVED.md).

    The owner's datasets are held as private DP datasets with ``dp``'s ``attach_dataset``.
    """
    from ppdl_nb.dp.worker_steps import attach_dataset
    from ppdl_nb.workers.transport.served_cli import main

    return main(argv, attach=attach_dataset)
