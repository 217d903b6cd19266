"""Data links: sealed one-way pipes for protocol rounds (ppdl_nb.workers.transport.datalink).

What a party relies on: what the sender sealed arrives whole and in order (also when it
is cut into chunks); whatever a stranger, a replay or a wrong key puts on the socket is
dropped without disturbing the link; a waiting reader that meets another link's message
hands it to that link's receiver.
"""

from __future__ import annotations

import os

import pytest
import zmq

from ppdl_nb.workers.transport.chan_socket import context
from ppdl_nb.workers.transport.chan_wire import CHUNK
from ppdl_nb.workers.transport.datalink import DataLinks, OutLink


@pytest.fixture
def bob():
    links = DataLinks("bob")
    yield links
    links.close()


def _link(links: DataLinks, got: list):
    link_id, key = os.urandom(16), os.urandom(32)
    links.accept(link_id, key, lambda frames: got.append([bytes(f) for f in frames]))
    return OutLink(links.endpoint, link_id, key), link_id, key


def _pump_until(links: DataLinks, ready, tries: int = 50) -> bool:
    for _ in range(tries):
        if ready():
            return True
        links.pump(0.1)
    return ready()


def test_messages_arrive_whole_and_in_order_also_in_chunks(bob):
    got: list = []
    out, _, _ = _link(bob, got)
    big = os.urandom(2 * CHUNK + 123)  # three chunks
    out.send([b"first", b""])
    out.send([b"second", big])
    assert _pump_until(bob, lambda: len(got) == 2)
    assert got == [[b"first", b""], [b"second", big]]
    out.close()


def test_strangers_replays_and_wrong_keys_are_dropped_and_the_link_keeps_working(bob):
    got: list = []
    out, link_id, _ = _link(bob, got)
    stranger = context().socket(zmq.PUSH)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.connect(bob.endpoint)
    stranger.send_multipart([b"x" * 16, b"junk", b"junk"])  # no such link
    stranger.send_multipart([b"only one frame"])
    forged = OutLink(bob.endpoint, link_id, os.urandom(32))  # the right id, a wrong key
    forged.send([b"forged"])
    out.send([b"real"])
    assert _pump_until(bob, lambda: got == [[b"real"]] and bob.dropped >= 3)
    # a replay of message 0 under the right key: its sequence number is spent
    replay = OutLink(bob.endpoint, link_id, b"\0" * 32)
    replay._aead, replay._seq = out._aead, 0
    replay.send([b"real"])
    out.send([b"next"])
    # the replay comes on its own connection, so it may arrive before or after "next"
    assert _pump_until(bob, lambda: len(got) == 2 and bob.dropped >= 4)
    assert got == [[b"real"], [b"next"]]
    for s in (out, forged, replay):
        s.close()
    stranger.close(linger=0)


def test_a_reader_hands_other_links_messages_to_their_receivers(bob):
    first, second = [], []
    a, _, _ = _link(bob, first)
    b, _, _ = _link(bob, second)
    b.send([b"for the second"])
    a.send([b"for the first"])
    assert _pump_until(bob, lambda: first and second)
    assert first == [[b"for the first"]] and second == [[b"for the second"]]
    a.close()
    b.close()


@pytest.mark.parametrize("link_id, key", [(b"short", os.urandom(32)),
                                          (os.urandom(16), b"short")])
def test_accept_refuses_malformed_ids_and_keys(bob, link_id, key):
    with pytest.raises(ValueError, match="bytes"):
        bob.accept(link_id, key, lambda frames: None)


def test_a_link_id_is_used_once(bob):
    link_id = os.urandom(16)
    bob.accept(link_id, os.urandom(32), lambda frames: None)
    with pytest.raises(ValueError, match="taken"):
        bob.accept(link_id, os.urandom(32), lambda frames: None)
