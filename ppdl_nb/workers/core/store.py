"""A worker's object store: ids to objects, each with its policy and its holder.

Every entry carries a :class:`~ppdl_nb.workers.core.policy.Policy` (who may read it) and
a holder (who the store handed its reference to: the only party besides its owners that
may delete it). Policies also follow torch's data flows: they are kept per tensor
*storage* (:meth:`ObjectStore.taint`), so a view and its base, an ``out=`` target, a
gradient or a module's parameters carry the policy of what was written into them.
Nothing outside ``ppdl_nb.workers.core`` touches the store: steps and ops get objects
through the worker's resolver (:meth:`Worker.resolve
<ppdl_nb.workers.core.worker.Worker.resolve>`), which knows who asks.

>>> from ppdl_nb.workers.core.policy import private
>>> store = ObjectStore("alice")
>>> i = store.put(torch.ones(2), policy=private("alice"), holder="me")
>>> store.check_read(i, "me")
Traceback (most recent call last):
...
PermissionError: alice:0 is private to alice ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from ppdl_nb.workers.core.policy import PUBLIC, Policy, combine

__all__ = ["Entry", "ObjectStore", "grad_of", "object_nbytes"]



@dataclass
class Entry:
    """One stored object, the policy it was stored with, and who holds its reference."""

    obj: Any
    policy: Policy = PUBLIC
    holder: str | None = None

    @property
    def private(self) -> bool:  # read-only views for callers not yet on policies
        return self.policy.private

    @property
    def allowed(self) -> frozenset[str]:
        return self.policy.readers or frozenset()


def object_nbytes(obj: Any) -> int:
    """Bytes a stored object holds (tensors and module parameters; 0 for anything else)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, torch.nn.Module):
        return sum(t.numel() * t.element_size() for t in obj.state_dict().values())
    return 0


def grad_of(t: torch.Tensor) -> torch.Tensor | None:
    """``t.grad`` without torch's warning for non-leaf tensors (which have none)."""
    return t.grad if t.is_leaf or t.retains_grad else None


def _tensors(obj: Any, grads: bool) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        grad = grad_of(obj) if grads else None
        return [obj, grad] if grad is not None else [obj]
    if isinstance(obj, torch.nn.Module):
        state = list(obj.state_dict(keep_vars=True).values())
        return state + [p.grad for p in obj.parameters() if p.grad is not None] if grads \
            else state
    return []


class ObjectStore:
    """Ids to :class:`Entry`; ids are never reused within one worker's life."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._entries: dict[int, Entry] = {}
        self._ids = itertools.count()
        # storage -> (weak reference, policy): only private storages are listed. The weak
        # reference keeps the storage's address from being reused while it is listed.
        self._flows: dict[int, tuple[StorageWeakRef, Policy]] = {}
        self._sweep_at = 256
        self.published: set[int] = set()  # ids the owner published by name: known to all

    def __len__(self) -> int:
        return len(self._entries)

    def start_ids_at(self, first: int) -> None:
        """Number objects from ``first`` on (before any is stored): a served worker starts
        each life at a new offset, so a pointer from an earlier life never finds a new
        object under its old id."""
        if self._entries:
            raise RuntimeError("start_ids_at must come before anything is stored")
        self._ids = itertools.count(first)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._entries

    def ids(self) -> list[int]:
        return list(self._entries)

    def nbytes(self) -> int:
        return sum(object_nbytes(e.obj) for e in self._entries.values())

    def put(self, obj: Any, *, policy: Policy = PUBLIC, holder: str | None = None) -> int:
        obj_id = next(self._ids)
        self._entries[obj_id] = Entry(obj, policy, holder)
        if policy.private:
            for t in _tensors(obj, grads=False):
                self.taint(t, policy)
        return obj_id

    def entry(self, obj_id: int) -> Entry:
        try:
            return self._entries[obj_id]
        except KeyError:
            raise self._missing(obj_id) from None

    def _missing(self, obj_id: int) -> KeyError:
        return KeyError(f"{self.owner} holds no object {obj_id}: it was fetched with .get(), "
                        "moved, deleted, or the worker restarted; create it again")

    def entry_for(self, obj_id: int, caller: str) -> Entry:
        """The entry as ``caller`` may know it: a private object it neither holds, owns nor
        may read looks missing, so a peer walking ids cannot tell it from a free id (nor
        learn its shape)."""
        entry = self.entry(obj_id)
        policy = entry.policy
        if (policy.private and caller != entry.holder and caller != self.owner
                and not policy.may_read(caller) and caller not in policy.owners
                and obj_id not in self.published):
            raise self._missing(obj_id)
        return entry

    def pop(self, obj_id: int) -> Entry:
        entry = self.entry(obj_id)
        del self._entries[obj_id]
        self.published.discard(obj_id)
        return entry

    def may_free(self, obj_id: int, caller: str) -> bool:
        """Whether ``caller`` may delete ``obj_id``: its holder or one of its owners."""
        entry = self._entries.get(obj_id)
        return entry is not None and (caller == entry.holder or caller == self.owner
                                      or caller in entry.policy.owners)

    def delete(self, ids: Iterable[Any], caller: str) -> int:
        """Free the ids ``caller`` may free (others are left alone); how many went."""
        removed = 0
        for obj_id in ids:
            if type(obj_id) is int and self.may_free(obj_id, caller):
                del self._entries[obj_id]
                self.published.discard(obj_id)
                removed += 1
        return removed

    def clear(self) -> None:
        """The owner empties the store (a restart of a virtual worker)."""
        self._entries.clear()
        self._flows.clear()
        self.published.clear()

    # ---- policies -----------------------------------------------------------------------
    def policy_of(self, entry: Entry, *, grads: bool = False) -> Policy:
        """The entry's policy and that of every storage its value lives in (with
        ``grads``: also its gradients, which an op on it may read)."""
        if not self._flows:
            return entry.policy
        return combine(entry.policy, self.flow_policy(entry.obj, grads=grads))

    def flow_policy(self, obj: Any, *, grads: bool = False) -> Policy:
        """The policy the storages of ``obj``'s tensors carry (PUBLIC if none listed)."""
        if not self._flows:
            return PUBLIC
        found = []
        for t in _tensors(obj, grads):
            got = self._flows.get(t.untyped_storage()._cdata)
            if got is not None and not got[0].expired():
                found.append(got[1])
        return combine(*found) if found else PUBLIC

    def taint(self, tensor: torch.Tensor, policy: Policy) -> None:
        """Private information was written into ``tensor``'s storage: every tensor that
        shares it (views, its base) now carries ``policy`` too."""
        if not policy.private or not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        got = self._flows.get(key)
        if got is not None and not got[0].expired():
            self._flows[key] = (got[0], combine(got[1], policy))
            return
        self._flows[key] = (StorageWeakRef(storage), policy)
        if len(self._flows) >= self._sweep_at:
            self._flows = {k: v for k, v in self._flows.items() if not v[0].expired()}
            self._sweep_at = max(256, 2 * len(self._flows))

    def lower(self, obj_id: int, policy: Policy) -> None:
        """Set an entry's policy and its storages' to ``policy`` (a declared release)."""
        entry = self.entry(obj_id)
        entry.policy = policy
        for t in _tensors(entry.obj, grads=False):
            key = t.untyped_storage()._cdata
            if key in self._flows:
                if policy.private:
                    self._flows[key] = (self._flows[key][0], policy)
                else:
                    del self._flows[key]

    def check_read(self, obj_id: int, party: str, *, asker: str | None = None) -> Entry:
        """The entry, if ``party`` may take its value out of this worker (``asker``, who
        names the object, defaults to ``party``: an object unknown to it looks missing)."""
        entry = self.entry_for(obj_id, party if asker is None else asker)
        policy = self.policy_of(entry)
        if not policy.may_read(party):
            others = sorted((policy.readers or frozenset()) - policy.owners)
            who = f"only {', '.join(others)} may fetch it" if others else "no one may fetch it"
            raise PermissionError(
                f"{self.owner}:{obj_id} is private to {self.owner} (private data, something "
                f"computed from it, or a secret share); {who}, not {party!r}. "
                f"Ask the data owner to release it (on {self.owner}: worker.release({obj_id}, "
                f"to={party!r})), or reveal it safely: secret-share it or ask for a "
                "differentially private result"
            )
        return entry

    check_fetch = check_read  # the old name
