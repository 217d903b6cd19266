"""Data links: sealed one-way pipes for protocol rounds (ppdl_nb.workers.transport.datalink).

What a party relies on: what the sender sealed arrives whole and in order (also when it
is cut into chunks); whatever a stranger, a replay or a wrong key puts on the socket is
dropped without disturbing the link; a waiting reader that meets another link's message
hands it to that link's receiver.
"""

from __future__ import annotations

import ctypes
import os
import socket
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ppdl_nb.workers.transport.chan_wire import (
    CHUNK,
    KIND_WHOLE,
    WHOLE_MAX,
    AuthError,
    open_whole,
    seal_link,
)
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


def _pump_until(links: DataLinks, ready, timeout: float = 10.0) -> bool:
    """Read until ``ready()`` or ``timeout`` seconds pass (a big message takes many
    reads, each returning as soon as something arrived)."""
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
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


def test_small_and_big_messages_keep_their_order_across_both_formats(bob):
    got: list = []
    out, _, _ = _link(bob, got)
    sent = [[b"h", bytes(WHOLE_MAX - 1)],  # sealed whole
            [b"h", bytes(WHOLE_MAX + 7)],  # head and chunks
            [b"f"] * 300,  # too many frames to seal whole
            [os.urandom(13), memoryview(os.urandom(24)), b""]]
    for frames in sent:
        out.send(frames)
    assert _pump_until(bob, lambda: len(got) == len(sent))
    assert got == [[bytes(f) for f in frames] for frames in sent]
    out.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(0, 2**32))
def test_a_message_sealed_whole_opens_to_its_frames_aligned(frames, seq):
    aead = AESGCM(bytes(32))
    (part,) = seal_link(aead, seq, frames)
    assert part[0][5:6] == KIND_WHOLE
    opened = open_whole(aead, part)
    assert [bytes(f) for f in opened] == frames
    assert all(_offset(f) % 8 == 0 for f in opened if len(f))  # int64 shares stay aligned


def _offset(view: memoryview) -> int:
    """Where ``view`` starts in the buffer it slices."""
    base = ctypes.addressof(ctypes.c_char.from_buffer(view.obj))
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) - base


def test_a_tampered_or_foreign_part_is_refused_as_whole():
    aead = AESGCM(os.urandom(32))
    head, body = next(seal_link(aead, 5, [b"share", bytes(16)]))
    flipped = bytearray(body)
    flipped[-1] ^= 1
    with pytest.raises(AuthError):
        open_whole(aead, [head, bytes(flipped)])
    with pytest.raises(AuthError):
        open_whole(AESGCM(os.urandom(32)), [head, body])
    big_head, big_body = next(seal_link(aead, 6, [bytes(WHOLE_MAX + 1)]))
    with pytest.raises(ValueError, match="not a message sealed whole"):
        open_whole(aead, [big_head, big_body])


def test_strangers_replays_and_wrong_keys_are_dropped_and_the_link_keeps_working(bob):
    got: list = []
    out, link_id, _ = _link(bob, got)
    for junk in (b"x" * 16 + b"junk" * 4,  # no such link
                 b"too short"):  # not even a link id before it hangs up
        stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stranger.connect(bob.endpoint)
        stranger.sendall(junk)
        stranger.close()
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


def test_big_messages_both_ways_neither_sender_blocks():
    # both parties write 8 MB before either reads (as in a round of big openings): the
    # socket takes what it can, the link's writer thread the rest, in order
    alice, bob = DataLinks("alice"), DataLinks("bob")
    try:
        got_a, got_b = [], []
        to_bob, _, _ = _link(bob, got_b)
        to_alice, _, _ = _link(alice, got_a)
        big_a, big_b = os.urandom(8 << 20), os.urandom(8 << 20)
        to_bob.send([b"from alice", big_a])
        to_alice.send([b"from bob", big_b])
        to_bob.send([b"then a small one"])
        for _ in range(400):
            if len(got_a) == 1 and len(got_b) == 2:
                break
            alice.pump(0.02)
            bob.pump(0.02)
        assert [bytes(f) for f in got_b[0]] == [b"from alice", big_a]
        assert got_b[1] == [b"then a small one"]
        assert [bytes(f) for f in got_a[0]] == [b"from bob", big_b]
        to_bob.close()
        to_alice.close()
    finally:
        alice.close()
        bob.close()


def test_a_sender_sees_its_receiver_go_away():
    bob = DataLinks("bob")
    out, _, _ = _link(bob, [])
    out.send([b"hello"])
    assert bob.pump(1.0) and not out.lost()
    bob.close()  # its end of the connection closes with it
    assert out.lost()
    out.close()

