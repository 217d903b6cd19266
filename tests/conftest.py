"""Shared fixtures: workers of every kind the suite can run, parametrized.

``trio`` yields (alice, bob, charlie) for each worker kind; kernel workers are
session-scoped (launching kernels is the slow part), virtual workers are fresh.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

import ppdl_nb
from ppdl_nb.workers.transport.virtual import VirtualNetwork

torch.set_num_threads(1)
# privacy ledgers and other worker state go to a throwaway directory, never $HOME
os.environ.setdefault("PPDL_NB_STATE_DIR", tempfile.mkdtemp(prefix="ppdl-test-state-"))
WORKER_KINDS = ["virtual"]
if os.environ.get("PPDL_SKIP_KERNELS") != "1":
    try:
        from ppdl_nb.workers.transport.kernel import launch  # noqa: F401

        WORKER_KINDS.append("kernel")
    except ImportError:
        pass


@pytest.fixture(scope="session")
def kernel_trio():
    from ppdl_nb.workers.transport.kernel import launch

    workers = launch("alice", "bob", "charlie")
    yield workers
    workers.shutdown()


@pytest.fixture(params=WORKER_KINDS)
def trio(request):
    """Three workers (alice, bob, charlie) of one kind."""
    if request.param == "kernel":
        workers = request.getfixturevalue("kernel_trio")
        yield tuple(workers)
        return
    net = VirtualNetwork()
    yield tuple(ppdl_nb.VirtualWorker(n, network=net) for n in ("alice", "bob", "charlie"))


@pytest.fixture
def alice(trio):
    return trio[0]


@pytest.fixture
def bob(trio):
    return trio[1]
