"""The encrypted channel: round trips, and every way a peer can get it wrong is refused
while the server keeps serving."""

from __future__ import annotations

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


def test_a_dead_server_gives_a_timeout_not_a_hang():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    server = ChannelServer(server_keys, None, echo, {"nb": client_keys.public})
    endpoint = server.endpoint
    server.close()
    with ChannelClient(client_keys, endpoint, server_keys.public, "nb") as c:
        with pytest.raises(TimeoutError, match="no reply"):
            c.request([b"anyone?"], timeout=0.5)
