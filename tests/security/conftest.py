"""The adversarial suite's attackers and fixtures (issue 12, "Private means private").

Each test attacks as one of three attackers: a curious notebook user who sends any
message of the vocabulary through a client's raw ``request({...})``; a curious peer
worker acting through a worker's ``client_for(...)``; a stranger process on the same
machine. Tests assert what the issue demands (the private value does not come back;
refusals are uniform), not the API of any one fix.

XFAIL MARKERS ARE STRICT. A test that fails on today's code carries
``@pytest.mark.xfail(strict=True, reason="issue 12: <class>: <what leaks>")`` so main
stays green. When a fix lands and the attack stops working, the test XPASSes, which a
strict marker reports as a failure: that is the signal to the fixer to delete the
marker (and nothing else) in the same change.
"""

from __future__ import annotations

import pytest

from ppdl_nb.workers.transport.virtual import VirtualNetwork, VirtualWorker

from .attacks import NAMES


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path, monkeypatch):
    """Each test's workers keep privacy ledgers in a fresh directory (no spending carried
    over from another test's dataset of the same name)."""
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def net() -> dict[str, VirtualWorker]:
    """Four fresh virtual workers on their own network, by name (notebook's clients)."""
    network = VirtualNetwork()
    return {n: VirtualWorker(n, network=network) for n in NAMES}


@pytest.fixture
def alice(net):
    return net["alice"]


@pytest.fixture
def bob(net):
    return net["bob"]


# ---- kernel workers: one group for the channel, key and shell classes -------------------
@pytest.fixture(scope="session")
def kernels():
    """Two kernel workers launched with ``inspect=False`` (shell closed), introduced to each
    other. Launching is the slow part of the suite, so every kernel test shares them."""
    from ppdl_nb.workers.transport.kernel import launch

    group = launch("sec_alice", "sec_bob", inspect=False)
    yield group
    group.shutdown()
