"""What a worker keeps of SPDZ: its sessions, what it deals, and one record per label.

Everything lives in one :class:`SPDZState` under ``worker.state["mpc"]``, read and changed
under the worker's lock (steps run holding it; a waiting routine releases it):

* :class:`PartySession`: a party's place in a session and the seed it shares with the
  dealer;
* :class:`DealerSession`: the dealer's seeds and party order;
* :class:`Pending`: one protocol label on a party: the randomness drawn for it, the
  openings received so far, the dealer's correction, whether a peer gave up;
* :class:`Running`: an operation's routine stopped between two requests (round by round).

>>> from ppdl_nb.workers.core.worker import Worker
>>> state = spdz_state(Worker("bob"))
>>> state.pending_for(b"s/0").openings
{}
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["DealerSession", "PartySession", "Pending", "Running", "SPDZState", "spdz_state"]


@dataclass
class PartySession:
    """A party's view of one MPC session."""

    id: str
    index: int
    parties: list[str]
    seed: bytes  # shared with the dealer: this party's triple shares come from it
    dealer: str

    @property
    def n(self) -> int:
        return len(self.parties)

    @property
    def peers(self) -> list[str]:
        return [p for i, p in enumerate(self.parties) if i != self.index]


@dataclass
class DealerSession:
    """The dealer's view of one MPC session: a seed per party, in the parties' order."""

    seeds: list[bytes]
    parties: list[str]

    @property
    def last(self) -> str:
        """The party that receives the corrections (the others draw theirs from seeds)."""
        return self.parties[-1]


@dataclass
class Pending:
    """One protocol label (one dealer request) on a party."""

    kind: str | None = None  # what was drawn for it (``mul``, ``trunc``, ...), once drawn
    params: dict[str, Any] | None = None
    ahead: list[torch.Tensor] | None = None  # random inputs drawn ahead, not yet used
    derived: list[torch.Tensor] | None = None  # its shares of the derived values
    correction: list[torch.Tensor] | None = None  # the dealer's (last party only)
    openings: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # by sender
    aborted: str | None = None  # why a peer or the dealer gave up


@dataclass
class Running:
    """An operation's routine between two requests: where it stopped and what it used."""

    routine: Generator[Any, Any, Any]
    session: PartySession
    caller: str  # who started it: only they may resume it
    labels: set[bytes] = field(default_factory=set)
    waiting: Any = None  # the instruction it stopped at
    rounds: int = 0  # opening rounds run so far


@dataclass
class SPDZState:
    """A worker's SPDZ state: parties' sessions, dealt sessions, labels, stopped routines."""

    sessions: dict[str, PartySession] = field(default_factory=dict)
    dealing: dict[str, DealerSession] = field(default_factory=dict)
    pending: dict[bytes, Pending] = field(default_factory=dict)
    running: dict[bytes, Running] = field(default_factory=dict)
    out_links: dict[tuple[str, str], Any] = field(default_factory=dict)  # (session, peer)

    def session(self, worker: str, session: str) -> PartySession:
        try:
            return self.sessions[session]
        except KeyError:
            raise KeyError(
                f"{worker} is not a party of MPC session {session!r}: share the tensors "
                "again (the worker may have restarted)") from None

    def dealer_session(self, worker: str, session: str) -> DealerSession:
        try:
            return self.dealing[session]
        except KeyError:
            raise KeyError(f"{worker} is not the dealer of MPC session {session!r}") from None

    def pending_for(self, label: bytes) -> Pending:
        pend = self.pending.get(label)
        if pend is None:
            pend = self.pending[label] = Pending()
        return pend

    def file_opening(self, worker: str, caller: str, session: str, label: Any, sender: Any,
                     value: Any) -> None:
        """Keep peer ``caller``'s shares of one round's openings (``sender``: its index)."""
        sess = self.session(worker, session)
        if not isinstance(sender, int) or not 0 <= sender < sess.n or (
                sess.parties[sender] != caller):
            raise PermissionError(f"{caller} cannot deliver the opening of party {sender!r}")
        if not isinstance(label, bytes):
            raise TypeError("an opening's label is bytes")
        pend = self.pending_for(label)
        if sender in pend.openings:
            raise ValueError(f"{caller} already delivered its opening for this label")
        pend.openings[sender] = value

    def dealers(self) -> set[str]:
        return {s.dealer for s in self.sessions.values()}


def spdz_state(worker: Any) -> SPDZState:
    """The worker's SPDZ state (made on first use)."""
    state = worker.state.get("mpc")
    if state is None:
        state = worker.state["mpc"] = SPDZState()
    return state
