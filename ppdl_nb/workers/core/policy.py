"""Who may read a stored object, and the only ways that ever goes down: the release table.

A :class:`Policy` is small and immutable. Public (``readers is None``) or private: then
``owners`` are the parties whose data went into the value and ``readers`` those every
owner let read it (an owner always reads its own data). ``permits`` are releases the
owners opted in to for this data and anything computed from it (``"plain_updates"``:
FedAvg updates may leave in the clear). Computing on objects gives the most
restrictive policy of the inputs (:func:`combine`: owners unite, readers and permits
intersect), so privacy is contagious.

>>> a = private("alice", allow=["dave"])
>>> b = private("bob", allow=["dave"])
>>> sorted(combine(a, b, PUBLIC).readers), sorted(combine(a, b).owners)
(['dave'], ['alice', 'bob'])
>>> combine(a, b).may_read("alice")
False

A policy is lowered only by a row of :data:`RELEASES`, each with its rule; a flow that
fits no row needs the owner's explicit opt-in (a permit). Keep the words apart: a
*release* lowers a policy; *freeing* a reference deletes an object and lowers nothing.

>>> release("open_shares", [a, b], to="dave") is PUBLIC
True
>>> release("open_shares", [a, b], to="me")
Traceback (most recent call last):
...
PermissionError: release 'open_shares' refused: me may not read what every input's owner allowed
>>> print(*sorted(RELEASES))
dp he open_shares owner plain_updates secure_aggregation share_histogram
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PUBLIC", "RELEASES", "Policy", "Release", "combine", "computed", "private",
    "program_permit",
    "program_policy", "release", "release_mechanism", "uniform_refusal",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may read an object: everyone (``readers is None``) or the listed ``readers``."""

    owners: frozenset[str] = frozenset()
    readers: frozenset[str] | None = None
    permits: frozenset[str] = frozenset()

    @property
    def private(self) -> bool:
        return self.readers is not None

    def may_read(self, party: str) -> bool:
        """Whether ``party`` may take the value out (fetch, send to, receive in a reply)."""
        return self.readers is None or party in self.readers

    def permits_all(self, name: str) -> bool:
        """Whether the owners opted in to release ``name`` (public data needs no opt-in)."""
        return self.readers is None or name in self.permits

    def with_readers(self, parties: Iterable[str]) -> Policy:
        """The same policy read also by ``parties`` (a release; see :data:`RELEASES`)."""
        if self.readers is None:
            return self
        return Policy(self.owners, self.readers | frozenset(parties), self.permits)


PUBLIC = Policy()


def private(owner: str, allow: Iterable[str] = (), permits: Iterable[str] = ()) -> Policy:
    """``owner``'s private data, readable by ``owner`` and the parties in ``allow``."""
    return Policy(frozenset({owner}), frozenset({owner, *allow}), frozenset(permits))


def combine(*policies: Policy) -> Policy:
    """The policy of a value computed from values with ``policies``: the most restrictive."""
    closed = [p for p in policies if p.readers is not None]
    if not closed:
        return PUBLIC
    first = closed[0]
    if all(p == first for p in closed[1:]):
        return first
    owners = frozenset().union(*(p.owners for p in closed))
    readers = frozenset.intersection(*(p.readers for p in closed))  # type: ignore[arg-type]
    permits = frozenset.intersection(*(p.permits for p in closed))
    return Policy(owners, readers, permits)


PROGRAM = "program:"  # a permit "program:<fingerprint>:<reader>"


def program_permit(fingerprint: str, reader: str) -> str:
    """The permit by which an owner lets ``reader`` read the results of one program
    (its ``fingerprint``: graph, hyperparameters, epochs) computed from its data."""
    if not fingerprint or ":" in fingerprint or not reader:
        raise ValueError(f"a program permit needs a fingerprint without ':' and a reader, "
                         f"got {fingerprint!r}, {reader!r}")
    return f"{PROGRAM}{fingerprint}:{reader}"


def computed(policy: Policy) -> Policy:
    """The policy of a value a worker's op computes from values with ``policy``: the same,
    without allowances for programs (an allowance covers the tensor its owner gave it
    for; a slice or a gather of it could feed a program one chosen row).

    >>> p = private("alice", permits=["plain_updates", program_permit("f00d", "dave")])
    >>> sorted(computed(p).permits)
    ['plain_updates']
    """
    if not any(q.startswith(PROGRAM) for q in policy.permits):
        return policy
    return Policy(policy.owners, policy.readers,
                  frozenset(q for q in policy.permits if not q.startswith(PROGRAM)))


def program_policy(policies: Sequence[Policy], fingerprint: str) -> Policy:
    """The policy of what program ``fingerprint`` computed from values with ``policies``:
    as :func:`combine`, except that each input is also read by the readers its owners
    allowed *for this program* (an allowance names the program, so a different program,
    an identity graph say, opens nothing to them).

    >>> a = private("alice", permits=[program_permit("f00d", "dave")])
    >>> sorted(program_policy([a, private("bob", allow=["dave"])], "f00d").readers)
    ['dave']
    >>> sorted(program_policy([a, private("bob", allow=["dave"])], "beef").readers)
    []
    """
    prefix = f"{PROGRAM}{fingerprint}:"
    widened = [p if p.readers is None else p.with_readers(
        q[len(prefix):] for q in p.permits if q.startswith(prefix)) for p in policies]
    return combine(*widened)


def uniform_refusal() -> PermissionError:
    """The one refusal a caller gets when an op on private inputs fails (the owner's log
    on the worker says why): the same whatever the private values were."""
    return PermissionError(
        "an operation on private inputs failed or was refused; whether and why it failed "
        "depends on private values, so only the data owner can read the reason "
        "(worker.private_log() on the worker)")


# ---- the release table ------------------------------------------------------------------
@dataclass(frozen=True)
class Release:
    """A declared release mechanism: its rule in words and the check that enforces it."""

    name: str
    rule: str
    check: Callable[..., None]


RELEASES: dict[str, Release] = {}


def release_mechanism(name: str, rule: str) -> Callable[[Callable[..., None]], Release]:
    """Declare a release row: ``check(policies, to, **facts)`` raises if it does not apply."""

    def register(check: Callable[..., None]) -> Release:
        if name in RELEASES:
            raise ValueError(f"release mechanism {name!r} is already declared")
        row = RELEASES[name] = Release(name, rule, check)
        return row

    return register


def release(name: str, policies: Sequence[Policy], *, to: str, **facts: Any) -> Policy:
    """The policy of a value released through row ``name`` to ``to``; PermissionError if
    the row's rule does not hold. ``facts`` are what the row's rule needs to know."""
    row = RELEASES.get(name)
    if row is None:
        raise KeyError(f"no release mechanism {name!r}; declared: {sorted(RELEASES)}")
    try:
        row.check(list(policies), to, **facts)
    except PermissionError as exc:
        raise PermissionError(f"release {name!r} refused: {exc}") from None
    return PUBLIC


@release_mechanism("owner", "the owner's explicit release (worker.release, code on the "
                   "worker itself, never a message)")
def _owner(policies: list[Policy], to: str, *, by_owner: bool = False) -> None:
    if not by_owner:
        raise PermissionError("only the data owner, on its own worker, releases explicitly")


@release_mechanism("open_shares", "opening a secret-shared value: only to a reader every "
                   "input's owner allowed; a share itself is readable by its holder only")
def _open(policies: list[Policy], to: str) -> None:
    if not combine(*policies).may_read(to):
        raise PermissionError(f"{to} may not read what every input's owner allowed")


@release_mechanism("share_histogram", "a histogram of one additive share over the whole "
                   "ring (a share alone is uniform): only objects the SPDZ layer stored as "
                   "shares (permit 'share'), for pictures (mpc.histogram)")
def _share_histogram(policies: list[Policy], to: str) -> None:
    if not all(p.permits_all("share") for p in policies):
        raise PermissionError("that object is not a share the SPDZ layer made; a histogram "
                              "of it would describe private values")


@release_mechanism("secure_aggregation", "a value leaves only as a masked or secret-shared "
                   "summand of a sum over at least 2 parties (fl.share/sum_shares, SecAgg)")
def _secagg(policies: list[Policy], to: str, *, parties: int = 0) -> None:
    if parties < 2:
        raise PermissionError(f"a secure sum needs at least 2 parties, got {parties}")


@release_mechanism("dp", "a differentially private result, charged to the owner's ledger "
                   "before it is answered (dp.query, dp.fit, PATE's dp.teacher_votes)")
def _dp(policies: list[Policy], to: str, *, charged: bool = False) -> None:
    if not charged:
        raise PermissionError("the owner's privacy budget was not charged")


@release_mechanism("he", "a ciphertext under a key whose secret the receiver does not hold "
                   "(ppdl_nb.he: encrypted updates, encrypted inference)")
def _he(policies: list[Policy], to: str, *, key_owner: str = "") -> None:
    if not key_owner or key_owner == to:
        raise PermissionError(f"{to} holds the secret key of that ciphertext")


@release_mechanism("plain_updates", "the owner's opt-in for flows no other row covers: "
                   "FedAvg updates in the clear to the notebook or a trusted aggregator "
                   "(allow_plain_updates=True when the owner loads or sends the data)")
def _plain(policies: list[Policy], to: str) -> None:
    if not all(p.permits_all("plain_updates") for p in policies):
        raise PermissionError("the data owner did not allow plain updates "
                              "(allow_plain_updates=True); aggregate securely instead "
                              "(Secure, SecAgg, HE) or ask the owner to opt in")
