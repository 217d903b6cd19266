"""A worker: an object store, a handler for the message vocabulary, and counters.

The same :class:`Worker` runs in-process (a virtual worker, for speed and debugging)
and inside a separate kernel process; only the transport in front of it differs.
Every request arrives as encoded frames, goes through the codec, and is answered
with encoded frames: an error becomes an error reply, and the worker keeps serving
with everything it held.

>>> w = Worker("alice")
>>> from ppdl_nb.workers.core.codec import decode, encode
>>> decode(w.handle(encode({"kind": "info"}), caller="me"))["result"]["objects"]
0
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ppdl_nb.errors import error_message, wire_type
from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core.messages import MessageError, validate
from ppdl_nb.workers.core.policy import PUBLIC, Policy, combine, computed, private, release
from ppdl_nb.workers.core.store import ObjectStore

__all__ = ["Counters", "Request", "Worker", "describe"]


class Request:
    """What one request read through the resolver: who asks, the inputs' policies, and
    the releases a step declared. A step's reply is checked against it (see
    :meth:`Worker.resolve` and :meth:`Worker.declare_release`)."""

    __slots__ = ("caller", "policies", "released")

    def __init__(self, caller: str) -> None:
        self.caller = caller
        self.policies: list[Policy] = []
        self.released: list[str] = []

    @property
    def policy(self) -> Policy:
        """The policy of what the request computes from what it read (no allowances for
        programs: those cover only the tensors they were given for)."""
        return computed(combine(*self.policies))


@dataclass
class Counters:
    """Traffic a party has seen: requests handled and sent, with their bytes."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    requests_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def describe(obj: Any, *, private: bool = False) -> dict[str, Any]:
    """What a pointer may know about a remote object without fetching it."""
    own = getattr(type(obj), "describe", None)  # our own types (pointers) describe themselves
    if own is not None and not isinstance(obj, torch.Tensor | torch.nn.Module):
        meta = own(obj)
    elif isinstance(obj, torch.Tensor):
        meta = {
            "kind": "tensor",
            "shape": list(obj.shape),
            "dtype": str(obj.dtype).removeprefix("torch."),
            "requires_grad": obj.requires_grad,
        }
    elif isinstance(obj, torch.nn.Module):
        meta = {
            "kind": "module",
            "type": type(obj).__name__,
            "parameters": sum(p.numel() for p in obj.parameters()),
        }
    else:
        meta = {"kind": "object", "type": type(obj).__name__}
    meta["private"] = private
    return meta



class _Unlocked:
    """The context of :meth:`Worker.unlocked` (a class: it runs once per protocol round)."""

    __slots__ = ("_lock", "_saved")

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._saved = self._lock._release_save()  # what Condition.wait uses on an RLock

    def __exit__(self, *exc: object) -> None:
        self._lock._acquire_restore(self._saved)

class Worker:
    """The server side of a party: holds objects and answers messages.

    ``connect(name)`` returns a client for another worker (worker-to-worker traffic
    goes directly between the two, not through the notebook).
    """

    def __init__(
        self,
        name: str,
        *,
        connect: Callable[[str], Any] | None = None,
        max_message_bytes: int = codec.MAX_MESSAGE_BYTES,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"worker name {name!r} must be a Python identifier (letters, digits, _), "
                "so that it can be bound as a notebook variable"
            )
        self.name = name
        self.store = ObjectStore(name)
        self.counters = Counters()
        self.max_message_bytes = max_message_bytes
        self._connect = connect
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.state: dict[str, Any] = {}  # per-protocol state (budgets, seeds), keyed by layer
        self.names: dict[str, int] = {}  # objects the owner published by name
        self.request: Request | None = None  # the request being answered
        self._private_log: list[str] = []  # failures on private inputs: the owner's eyes only

    def __repr__(self) -> str:
        return f"<Worker {self.name}: {len(self.store)} objects>"

    # ---- the owner's side (code running on this worker) -------------------------------
    def put(self, obj: Any, *, private: bool = False, allow: Iterable[str] = (),
            name: str | None = None, permits: Iterable[str] = ()) -> int:
        """Store ``obj`` as the owner; returns its id. A ``name`` lets others find it.
        ``permits``: releases the owner opts in to (``"plain_updates"``)."""
        with self._lock:
            policy = self.private_policy(allow, permits) if private else PUBLIC
            obj_id = self.store.put(obj, policy=policy, holder=self.name)
            if name is not None:
                self.names[name] = obj_id
                self.store.published.add(obj_id)
            return obj_id

    def private_policy(self, allow: Iterable[str] = (), permits: Iterable[str] = ()) -> Policy:
        """This worker's own private data, readable by ``allow`` as well."""
        return private(self.name, allow, permits)

    def release(self, obj_id: int, *, to: Iterable[str] | str) -> None:
        """As the owner, let ``to`` fetch object ``obj_id`` (the release table's row
        'owner'; only code on the worker itself calls this, never a message)."""
        parties = [to] if isinstance(to, str) else list(to)
        with self._lock:
            entry = self.store.entry(obj_id)
            release("owner", [entry.policy], to=",".join(parties), by_owner=True)
            self.store.lower(obj_id, self.store.policy_of(entry).with_readers(parties))

    def clear(self) -> None:
        """OWNER: drop every object this worker holds (a shutdown)."""
        with self._lock:
            self.store.clear()
            self.names.clear()

    def private_log(self) -> list[str]:
        """OWNER: why operations on private inputs failed (callers got one refusal)."""
        with self._lock:
            return list(self._private_log)

    def log_private_failure(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._private_log.append(f"{what}: {type(exc).__name__}: {exc}")
            del self._private_log[:-100]

    # ---- the resolver: the only way ops and steps get stored objects ------------------
    def resolve(self, ref: Any, what: str = "object", *, kind: type | tuple[type, ...] = object
                ) -> Any:
        """The object ``ref`` (a Ref or an id) names, for the request being answered.

        Its policy joins the request's, so whatever the step replies or stores is checked
        against it; ``kind`` checks the object's type. Which parties may name which
        objects in a step is the step's protocol (a data owner names the model owner's
        model in ``he.infer``); direct ops check it in the ``call`` handler."""
        obj_id = getattr(ref, "id", ref)
        if type(obj_id) is not int:
            raise TypeError(f"{what} must be a reference to an object held by {self.name}")
        request = self.request
        entry = self.store.entry(obj_id)
        if not isinstance(entry.obj, kind):
            raise TypeError(f"{what} ({self.name}:{obj_id}) is a {type(entry.obj).__name__}, "
                            f"not a {getattr(kind, '__name__', kind)}")
        if request is not None:
            request.policies.append(self.store.policy_of(entry, grads=True))
        return entry.obj

    def policy_of(self, ref: Any) -> Policy:
        """The policy of the object ``ref`` names (its storages' included)."""
        return self.store.policy_of(self.store.entry(getattr(ref, "id", ref)))

    def declare_release(self, name: str, *, to: str | None = None,
                        policies: list[Policy] | None = None, **facts: Any) -> None:
        """A step's reply leaves through release row ``name`` (checked here against the
        inputs it resolved, or ``policies``); PermissionError if the rule does not hold."""
        request = self.request
        inputs = policies if policies is not None else (request.policies if request else [])
        release(name, inputs, to=to or (request.caller if request else self.name), **facts)
        if request is not None:
            request.released.append(name)

    def keep(self, obj: Any, policy: Policy | None = None, *, holder: str | None = None
             ) -> int:
        """Store a step's result: by default with the policy of what the request read,
        held by the caller."""
        request = self.request
        if policy is None:
            policy = request.policy if request is not None else PUBLIC
        if holder is None:
            holder = request.caller if request is not None else self.name
        return self.store.put(obj, policy=policy, holder=holder)

    def free(self, ref: Any) -> None:
        """Drop a stored object a step consumed (freeing a reference, not a release)."""
        self.store.pop(getattr(ref, "id", ref))

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Inside a handler: let other requests run on this worker until ``predicate()``
        holds (checked under the worker's lock), or ``timeout`` seconds pass; returns
        whether it holds. A protocol step waits here for a peer's message, which a
        handler calls :meth:`notify` for. Needs a transport that serves requests
        concurrently (kernel workers; virtual workers called from several threads)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def locked(self) -> threading.Condition:
        """The worker's lock (as a condition), for a transport thread that changes what a
        waiting handler waits for; call :meth:`notify` inside it."""
        return self._changed

    def unlocked(self) -> _Unlocked:
        """Inside a handler: release the worker's lock (however deeply held) for a block
        that waits on a socket, as :meth:`wait_until` does for a condition."""
        return _Unlocked(self._lock)

    def notify(self) -> None:
        """Wake the handlers waiting in :meth:`wait_until` to check their condition."""
        with self._changed:
            self._changed.notify_all()

    def client_for(self, name: str) -> Any:
        """A client for worker ``name``, speaking as this worker."""
        if self._connect is None:
            raise ConnectionError(f"worker {self.name} has no route to other workers")
        if name == self.name:
            raise ValueError(f"worker {self.name} cannot send to itself")
        return self._connect(name)

    # ---- the transport's side -----------------------------------------------------------
    def handle(self, frames: Sequence[Any], caller: str, *, owned: bool = False) -> list[Any]:
        """Answer one request (encoded frames) from ``caller``; never raises.

        ``owned``: the transport hands over fresh buffers (see :func:`codec.decode`).
        """
        nbytes = codec.frames_nbytes(frames) if isinstance(frames, list | tuple) else 0
        with self._lock:
            self.counters.messages_in += 1
            self.counters.bytes_in += nbytes
            try:
                msg = codec.decode(frames, context=self, max_bytes=self.max_message_bytes,
                                   owned=owned)
                kind = validate(msg)
                self.store.delete(msg.get("gc", ()), caller)
                outer, self.request = self.request, Request(caller)
                try:
                    reply = {"ok": True, "result": kind.handler(self, msg, caller)}
                finally:
                    self.request = outer
                out = codec.encode(reply)
            except Exception as exc:  # every failure becomes an error reply
                out = codec.encode(self._error_reply(exc))
            self.counters.messages_out += 1
            self.counters.bytes_out += codec.frames_nbytes(out)
            return out

    def _error_reply(self, exc: BaseException) -> dict[str, Any]:
        tb = "" if isinstance(exc, MessageError | codec.CodecError) else traceback.format_exc()
        return {
            "ok": False,
            "error": {"type": wire_type(exc), "name": type(exc).__name__,
                      "message": error_message(exc), "traceback": tb},
        }
