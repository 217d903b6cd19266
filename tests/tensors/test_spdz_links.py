"""A session's openings over data links (ppdl_nb.tensors.spdz.links): what arrives on a
link is filed as the opening of the peer who set the link up, never of whom the message
claims, and a malformed opening stops its round with the reason instead of a 60 s wait."""

from __future__ import annotations

import torch

from ppdl_nb.tensors.spdz import links
from ppdl_nb.tensors.spdz.state import PartySession, spdz_state
from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core.worker import Worker


def _bob():
    worker = Worker("bob")
    state = spdz_state(worker)
    state.sessions["s"] = PartySession("s", 1, ["alice", "bob"], b"seed", "dealer")
    return worker, state, links._receiver(worker, "s", "alice")


def test_an_opening_on_alices_link_is_filed_as_alices():
    worker, state, take = _bob()
    share = torch.tensor([5, -7], dtype=torch.int64)
    take(codec.encode_tensors([b"s/0", 0], [share]))
    assert torch.equal(state.pending_for(b"s/0").openings[0][0], share)
    assert worker.counters.messages_in == 1


def test_a_peer_claiming_another_index_or_sending_garbage_stops_only_that_round():
    worker, state, take = _bob()
    take(codec.encode_tensors([b"s/0", 1], [torch.zeros(1, dtype=torch.int64)]))  # as bob
    assert "alice sent a malformed opening" in state.pending_for(b"s/0").aborted
    assert state.pending_for(b"s/0").openings == {}
    take([b"\xc1not msgpack"])  # nothing names a round: logged for the owner only
    assert any("data link from alice" in line for line in worker.private_log())
    take(codec.encode_tensors([b"s/1", 0], [torch.ones(1, dtype=torch.int64)]))
    assert 0 in state.pending_for(b"s/1").openings and state.pending_for(b"s/1").aborted is None


def test_a_worker_without_data_links_keeps_the_request_channel():
    worker, state, _ = _bob()
    assert links.out_link(worker, state, state.sessions["s"], "alice") is None
    assert links.link(worker, "alice", session="s", link=b"x" * 16, key=b"k" * 32) is None
