"""The encrypted channel: round trips, and every way a peer can get it wrong is refused
while the server keeps serving."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppdl_nb.workers.transport import channel_client as chan_client
from ppdl_nb.workers.transport.channel import ChannelClient, ChannelServer
from ppdl_nb.workers.transport.keys import KeyPair


def echo(frames, peer):
    return [peer.encode(), *frames]


@pytest.fixture(scope="module")
def server_and_keys():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    server = ChannelServer(server_keys, None, echo, {"nb": client_keys.public})
    yield server, server_keys, client_keys
    server.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.integers(0, 3))
def test_round_trip_of_multipart_messages(server_and_keys, frames, big):
    server, server_keys, client_keys = server_and_keys
    if big:
        frames = [*frames, bytes(range(256)) * (big * 9000)]  # several MiB-sized chunks
    with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
        reply = c.request(frames, timeout=30)
    assert [bytes(f) for f in reply] == [b"nb", *frames]


def test_unknown_client_and_wrong_server_key_are_refused(server_and_keys):
    server, server_keys, client_keys = server_and_keys
    stranger = KeyPair.generate()
    with ChannelClient(stranger, server.endpoint, server_keys.public, "nb") as c:
        with pytest.raises(PermissionError):
            c.request([b"hi"], timeout=10)
    impostor = KeyPair.generate()  # the client expects a key the server does not hold
    with ChannelClient(client_keys, server.endpoint, impostor.public, "nb") as c:
        with pytest.raises((PermissionError, TimeoutError, ConnectionError)):
            c.request([b"hi"], timeout=5)
    with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
        assert bytes(c.request([b"still"], timeout=10)[1]) == b"still"


def test_replayed_and_tampered_messages_are_refused(server_and_keys, monkeypatch):
    server, server_keys, client_keys = server_and_keys
    sent = []
    original = chan_client.send_parts

    def recording(sock, parts, ident=None):
        sent.append([bytes(p) for p in parts])
        return original(sock, parts, ident)

    monkeypatch.setattr(chan_client, "send_parts", recording)
    with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
        c.request([b"secret"], timeout=10)
        request = sent[-1]
        before = server.refused
        c._sock.send_multipart(request)  # the same ciphertext again: a replay
        tampered = [*request[:-1], bytes([request[-1][0] ^ 1]) + request[-1][1:]]
        c._sock.send_multipart(tampered)
        assert chan_wait(lambda: server.refused >= before + 2)
        c._reset()  # drop the connection the refusals went to
        assert bytes(c.request([b"after"], timeout=10)[1]) == b"after"
    assert b"secret" not in b"".join(request)  # encrypted on the wire


def chan_wait(predicate, timeout: float = 5.0) -> bool:
    from ppdl_nb.workers.core.waiting import wait_until

    return wait_until(predicate, timeout)


def test_handler_errors_come_back_and_the_server_keeps_serving():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()

    def fragile(frames, peer):
        if frames[0] == b"boom":
            raise ValueError("bad input")
        return list(frames)

    with ChannelServer(server_keys, None, fragile, {"nb": client_keys.public}) as server:
        with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
            with pytest.raises(ValueError, match="bad input"):
                c.request([b"boom"], timeout=10)
            assert bytes(c.request([b"ok"], timeout=10)[0]) == b"ok"


def test_a_dead_local_server_is_reported_at_once_not_after_the_timeout():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    server = ChannelServer(server_keys, None, echo, {"nb": client_keys.public})
    endpoint = server.endpoint
    server.close()
    start = time.monotonic()
    with ChannelClient(client_keys, endpoint, server_keys.public, "nb") as c:
        with pytest.raises(ConnectionError, match="nobody listens"):
            c.request([b"anyone?"], timeout=30)
    assert time.monotonic() - start < 5


def test_a_server_that_dies_mid_request_is_reported_at_once():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    entered = threading.Event()

    def stuck(frames, peer):
        entered.set()
        time.sleep(30)  # a handler that will never answer: its process goes away
        return frames

    server = ChannelServer(server_keys, None, stuck, {"nb": client_keys.public}, threads=2)
    threading.Thread(target=lambda: (entered.wait(10), server.close()), daemon=True).start()
    start = time.monotonic()
    with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
        with pytest.raises(ConnectionError, match="closed its connection"):
            c.request([b"hello"], timeout=30)
    assert time.monotonic() - start < 10


# -- availability and identity (issue 12: classes 5-7) -----------------------------------

def _stranger(endpoint, ctx=None, *, forge: tuple[bytes, bytes] | None = None):
    """A socket to ``endpoint``; ``forge=(name, public key)``: it presents a forged proof
    (someone else's public key, a tag it cannot make) to the server's gate."""
    import os

    import zmq

    from ppdl_nb.workers.transport.chan_socket import context

    sock = (ctx or context()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if forge is not None:
        sock.plain_username, sock.plain_password = forge[0], forge[1] + os.urandom(56)
    sock.connect(endpoint)
    return sock


def _flood(sock, frames, count: int) -> int:
    """Send up to ``count`` copies without waiting; how many were queued."""
    import zmq

    for i in range(count):
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            return i
    return count


def test_a_strangers_frames_never_reach_the_server_and_it_keeps_serving():
    from ppdl_nb.workers.transport import chan_wire as wire

    served = []
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()

    def counting(frames, peer):
        served.append(peer)
        return echo(frames, peer)

    with ChannelServer(server_keys, None, counting, {"nb": client_keys.public}) as server:
        stranger = _stranger(server.endpoint)  # no proof at all: libzmq drops it
        forger = _stranger(server.endpoint, forge=(b"nb", client_keys.public))
        for sock in (stranger, forger):
            _flood(sock, [wire.prefix(wire.KIND_REQUEST, 1), b"x" * 64], 3000)
        assert chan_wait(lambda: server.refused >= 1)  # the forger's proof was checked
        with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
            assert bytes(c.request([b"ok"], timeout=2)[1]) == b"ok"
        assert served == ["nb"]  # nothing of the strangers' reached the handler
        assert server.sessions == ["nb"]
        stranger.close()
        forger.close()


def test_hellos_with_the_notebooks_public_key_neither_make_nor_evict_sessions():
    import zmq

    from ppdl_nb.workers.transport import chan_wire as wire

    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, 2000)

    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    with ChannelServer(server_keys, None, echo, {"nb": client_keys.public}) as server:
        with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
            c.request([b"first"], timeout=10)
            session = c._session
            strangers = []
            for _ in range(1100):  # each its own connection, as a table-filling attack
                s = _stranger(server.endpoint, ctx, forge=(b"nb", client_keys.public))
                _flood(s, [wire.prefix(wire.KIND_HELLO, 0), b"nb", client_keys.public,
                           KeyPair.generate().public, bytes(32)], 1)
                strangers.append(s)
            assert chan_wait(lambda: server.refused >= 1100, 20)  # each proof checked
            assert server.sessions == ["nb"]  # only the proven one
            assert bytes(c.request([b"again"], timeout=5)[1]) == b"again"
            assert c._session is session
            for s in strangers:
                s.close()
    ctx.term()


def test_an_oversized_message_is_a_clear_error_and_the_server_keeps_serving():
    from ppdl_nb.workers.transport import chan_wire as wire

    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    with ChannelServer(server_keys, None, echo, {"nb": client_keys.public},
                       max_message_bytes=1 << 20) as server:
        with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb",
                           max_message_bytes=1 << 20) as c:
            with pytest.raises(ValueError, match="exceeds the channel's limit"):
                c.request([bytes(2 << 20)], timeout=10)  # refused here, nothing sent
        with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
            with pytest.raises(PermissionError, match="exceeds the limit"):
                c.request([bytes(2 << 20)], timeout=10)  # refused by the server
            stranger = _stranger(server.endpoint)  # a frame over libzmq's cap: dropped there
            stranger.send_multipart([wire.prefix(wire.KIND_REQUEST, 1),
                                     bytes(wire.MAX_FRAME_BYTES + 1)])
            assert bytes(c.request([b"still"], timeout=10)[1]) == b"still"
            stranger.close()


def test_the_caller_name_comes_from_the_proven_key_and_keys_are_fixed():
    server_keys, nb_keys, bob_keys = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    with ChannelServer(server_keys, None, echo, {"me": nb_keys.public}) as server:
        server.allow("bob", bob_keys.public)
        server.allow("bob", bob_keys.public)  # the same again is fine
        with pytest.raises(PermissionError, match="cannot be replaced"):
            server.allow("bob", nb_keys.public)
        with pytest.raises(ValueError, match="one key is one identity"):
            server.allow("carol", nb_keys.public)
        with ChannelClient(nb_keys, server.endpoint, server_keys.public, "bob") as c:
            with pytest.raises(PermissionError, match="not known"):  # claims bob's name
                c.request([b"x"], timeout=10)
        with ChannelClient(bob_keys, server.endpoint, server_keys.public, "bob") as c:
            assert bytes(c.request([b"x"], timeout=10)[0]) == b"bob"


def test_a_runtime_refuses_to_replace_a_known_peers_key():
    from ppdl_nb.workers.transport.runtime import WorkerRuntime

    notebook, bob, other = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    runtime = WorkerRuntime("rt_alice", notebook.public_hex)
    try:
        runtime.introduce({"bob": ["ipc:///nowhere", bob.public_hex]})
        runtime.introduce({"bob": ["ipc:///nowhere", bob.public_hex]})  # same key: no-op
        with pytest.raises(PermissionError, match="cannot be replaced"):
            runtime.introduce({"bob": ["ipc:///nowhere", notebook.public_hex]})
        with pytest.raises(PermissionError, match="cannot be replaced"):
            runtime.introduce({"bob": ["ipc:///nowhere", other.public_hex]})
        with pytest.raises(ValueError, match="one key is one identity"):
            runtime.introduce({"carol": ["ipc:///nowhere", notebook.public_hex]})
        assert runtime.peers["bob"][1] == bob.public
    finally:
        runtime.close()


def test_a_stored_identity_is_made_once_kept_private_and_refused_if_not(tmp_path):
    import os
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "identity" / "x25519.key"
    with ThreadPoolExecutor(4) as pool:  # racing first starts end up with one key
        publics = {kp.public for kp in pool.map(KeyPair.load_or_create, [path] * 8)}
    assert len(publics) == 1 and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["x25519.key"]  # no leftovers
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        KeyPair.load_or_create(path)
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o777)
    with pytest.raises(PermissionError, match="chmod 700"):
        KeyPair.load_or_create(path)
    os.chmod(path.parent, 0o700)
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="not a key file"):
        KeyPair.load_or_create(path)


def test_the_gate_spends_at_most_its_refusal_budget_per_second():
    from ppdl_nb.workers.transport.chan_gate import _RefusalBudget

    budget = _RefusalBudget(rate=2000.0, burst=50.0)
    t0 = time.monotonic()
    for _ in range(250):  # 50 from the burst, then 200 at 2000 a second: >= 0.1 s
        budget.spend()
    assert time.monotonic() - t0 >= 0.095
