"""A worker's object store: ids to objects, each with its owner's privacy setting.

Privacy is contagious: whatever is computed from a private object is private too, and
may be fetched only by parties allowed to fetch every private input (the intersection
of their allow-lists). Only the owner (code running on the worker itself) widens an
allow-list, with :meth:`ObjectStore.release`.

>>> store = ObjectStore("alice")
>>> i = store.put(torch.ones(2), private=True)
>>> store.check_fetch(i, "me")
Traceback (most recent call last):
...
PermissionError: alice:0 is private to alice ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Entry", "ObjectStore", "object_nbytes"]


@dataclass
class Entry:
    """One stored object and who may fetch it."""

    obj: Any
    private: bool = False
    allowed: frozenset[str] = field(default_factory=frozenset)

    def may_leave_to(self, party: str) -> bool:
        return not self.private or party in self.allowed


def object_nbytes(obj: Any) -> int:
    """Bytes a stored object holds (tensors and module parameters; 0 for anything else)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, torch.nn.Module):
        return sum(t.numel() * t.element_size() for t in obj.state_dict().values())
    return 0


class ObjectStore:
    """Ids to :class:`Entry`; ids are never reused within one worker's life."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._entries: dict[int, Entry] = {}
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._entries

    def ids(self) -> list[int]:
        return list(self._entries)

    def nbytes(self) -> int:
        return sum(object_nbytes(e.obj) for e in self._entries.values())

    def put(self, obj: Any, *, private: bool = False, allow: Iterable[str] = ()) -> int:
        obj_id = next(self._ids)
        self._entries[obj_id] = Entry(obj, bool(private), frozenset(allow))
        return obj_id

    def entry(self, obj_id: int) -> Entry:
        try:
            return self._entries[obj_id]
        except KeyError:
            raise KeyError(
                f"{self.owner} holds no object {obj_id}: it was fetched with .get(), "
                "moved, deleted, or the worker restarted; create it again"
            ) from None

    def pop(self, obj_id: int) -> Entry:
        entry = self.entry(obj_id)
        del self._entries[obj_id]
        return entry

    def delete(self, ids: Iterable[int]) -> int:
        removed = 0
        for obj_id in ids:
            if self._entries.pop(obj_id, None) is not None:
                removed += 1
        return removed

    def check_fetch(self, obj_id: int, party: str) -> Entry:
        """The entry, if ``party`` may take its value out of this worker."""
        entry = self.entry(obj_id)
        if not entry.may_leave_to(party):
            allowed = ", ".join(sorted(entry.allowed))
            who = f"only {allowed} may fetch it" if allowed else "no one may fetch it"
            raise PermissionError(
                f"{self.owner}:{obj_id} is private to {self.owner} (private data, something "
                f"computed from it, or a secret share); {who}, not {party!r}. Ask the data "
                f"owner to release it (on {self.owner}: worker.release({obj_id}, "
                f"to={party!r})), or reveal it safely: secret-share it or ask for a "
                "differentially private result"
            )
        return entry

    def release(self, obj_id: int, *, to: Iterable[str] | str) -> None:
        """Owner's decision: let ``to`` fetch object ``obj_id``."""
        parties = {to} if isinstance(to, str) else set(to)
        entry = self.entry(obj_id)
        entry.allowed = entry.allowed | parties

    def make_private(self, obj_id: int) -> None:
        """Owner's decision: mark an object private (nobody may fetch it)."""
        entry = self.entry(obj_id)
        entry.private, entry.allowed = True, frozenset()
