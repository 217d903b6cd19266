"""Classes 6 (keys), 7 (availability) and 8 (the shell) on kernel workers, plus one
data-class attack each for 1 and 2 to show kernels share the virtual workers' fate.

All tests share one launch of two ``inspect=False`` kernel workers (the slow part). The
stranger is a raw ZeroMQ socket of this process on the worker's ``ipc://`` endpoint: a
process of the same user can open it, so it can send anything but cannot prove a key.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

import ppdl_nb

from .attacks import SECRET, attempt, contains_secret

pytestmark = pytest.mark.skipif(os.environ.get("PPDL_SKIP_KERNELS") == "1",
                                reason="PPDL_SKIP_KERNELS=1: no kernel workers")


def _keys():
    from ppdl_nb.workers.transport.kernel import notebook_keys

    return notebook_keys()


def _stranger(endpoint: str, ctx=None, *, forge: bytes | None = None):
    """A socket to ``endpoint``; ``forge``: a public key it presents to the gate as the
    notebook's (``"me"``), with a tag it cannot make."""
    import os

    import zmq

    from ppdl_nb.workers.transport.chan_socket import context

    sock = (ctx or context()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 0)  # a stranger's frames may never leave: do not wait
    if forge is not None:
        sock.plain_username, sock.plain_password = b"me", forge + os.urandom(56)
    sock.connect(endpoint)
    return sock


def _send(sock, frames) -> None:
    import zmq

    with contextlib.suppress(zmq.Again):
        sock.send_multipart(frames)


def _still_serves(worker) -> None:
    assert worker.request({"kind": "ping"}, timeout=5) == "pong"


# ---- class 6: keys -----------------------------------------------------------------------
def test_the_notebook_cannot_replace_a_peers_key_with_its_own(kernels):
    alice, bob = kernels
    forged = {bob.name: [bob.endpoint, _keys().public_hex]}
    with pytest.raises(PermissionError):
        alice.request({"kind": "peers", "peers": forged})
    x = ppdl_nb.send(torch.arange(3.0), alice)
    x.move(bob)  # alice still reaches bob under bob's own key
    assert x.location.name == bob.name
    torch.testing.assert_close(x.get(), torch.arange(3.0))


def test_the_notebook_cannot_introduce_its_own_key_under_a_new_name(kernels):
    alice, _ = kernels
    with pytest.raises((PermissionError, ValueError)):
        alice.request({"kind": "peers", "peers": {"mallory": [alice.endpoint,
                                                              _keys().public_hex]}})
    got = attempt(lambda: ppdl_nb.send(torch.ones(1), alice).move("mallory"))
    assert isinstance(got, Exception), "alice sends to a worker keyed by the notebook"


def test_a_peer_key_cannot_be_swapped_for_a_fresh_one(kernels):
    from ppdl_nb.workers.transport.keys import KeyPair

    alice, bob = kernels
    with pytest.raises(PermissionError):
        alice.request({"kind": "peers",
                       "peers": {bob.name: [bob.endpoint, KeyPair.generate().public_hex]}})
    _still_serves(alice)


# ---- class 7: availability -----------------------------------------------------------
def test_a_stranger_flooding_without_reading_does_not_stall_the_worker(kernels):
    from ppdl_nb.workers.transport import chan_wire as wire

    alice, _ = kernels
    strangers = [_stranger(alice.endpoint), _stranger(alice.endpoint, forge=_keys().public)]
    try:
        for seq in range(1, 2001):  # refusals it never reads
            for stranger in strangers:
                _send(stranger, [wire.prefix(wire.KIND_REQUEST, seq), b"x" * 64])
        for _ in range(3):
            _still_serves(alice)
    finally:
        for stranger in strangers:
            stranger.close()


def test_hellos_with_the_notebooks_public_key_do_not_evict_its_session(kernels):
    import zmq

    from ppdl_nb.workers.transport import chan_wire as wire
    from ppdl_nb.workers.transport.keys import KeyPair

    alice, _ = kernels
    _still_serves(alice)
    session = alice.channel._session
    ctx = zmq.Context()
    strangers = []
    try:
        for _ in range(300):  # each its own connection, as a table-filling attack would
            s = _stranger(alice.endpoint, ctx, forge=_keys().public)
            _send(s, [wire.prefix(wire.KIND_HELLO, 0), b"me", _keys().public,
                      KeyPair.generate().public, bytes(32)])
            strangers.append(s)
        _still_serves(alice)
        assert alice.channel._session is session, "the notebook's session was replaced"
    finally:
        for s in strangers:
            s.close()
        ctx.term()


def test_an_oversized_frame_from_a_stranger_is_dropped(kernels):
    from ppdl_nb.workers.transport import chan_wire as wire

    alice, _ = kernels
    stranger = _stranger(alice.endpoint)
    try:
        _send(stranger, [wire.prefix(wire.KIND_REQUEST, 1),
                         bytes(getattr(wire, "MAX_FRAME_BYTES", 1 << 26) + 1)])
        _still_serves(alice)
    finally:
        stranger.close()


# ---- class 8: the shell ----------------------------------------------------------------
READ_PRIVATE = ("__import__('ppdl_nb.workers.transport.runtime', fromlist=['current'])"
                ".current().store")


def test_user_expressions_are_not_evaluated_when_inspection_is_off(kernels):
    alice, _ = kernels
    private_id = ppdl_nb.send(SECRET.clone(), alice, private=True).id_at_location
    expr = f"{READ_PRIVATE}.entry({private_id}).obj.tolist()"
    kc = alice.process.kc
    reply = kc.execute("", user_expressions={"x": expr}, reply=True, timeout=10)["content"]
    assert reply["status"] == "error"
    assert not reply.get("user_expressions"), "the kernel evaluated user_expressions"
    assert not contains_secret(RuntimeError(repr(reply)))


def test_code_is_not_executed_when_inspection_is_off(kernels):
    alice, _ = kernels
    kc = alice.process.kc
    for kwargs in ({"silent": True}, {"store_history": False}, {}):
        reply = kc.execute(f"print({READ_PRIVATE}.ids())", reply=True, timeout=10,
                           **kwargs)["content"]
        assert reply["status"] == "error", f"the kernel ran code ({kwargs})"
    _still_serves(alice)


def test_introspection_requests_reveal_nothing_when_inspection_is_off(kernels):
    alice, _ = kernels
    kc = alice.process.kc
    reply = kc.inspect(READ_PRIVATE, reply=True, timeout=10)["content"]
    assert reply.get("status") == "error" or not reply.get("found"), reply
    reply = kc.complete(READ_PRIVATE + ".", reply=True, timeout=10)["content"]
    assert not reply.get("matches"), "completion lists the worker's store"


# ---- classes 1 and 2 on a kernel (same codec, same holes) -----------------------------
def test_kernel_a_view_does_not_reveal_a_private_in_place_update(kernels):
    alice, _ = kernels
    x = ppdl_nb.send(SECRET.clone(), alice, private=True)
    b = ppdl_nb.send(torch.zeros(2, 3), alice)
    v = b.view(2, 3)
    b.add_(x)
    assert not contains_secret(attempt(v.get)), "the private value came back through a view"


def test_kernel_errors_carry_no_private_values(kernels):
    alice, _ = kernels
    idx = ppdl_nb.send(torch.tensor([7]), alice, private=True)
    got = attempt(lambda: ppdl_nb.send(torch.arange(5), alice)[idx])
    assert "7" not in str(got).split("--- traceback")[0], got
