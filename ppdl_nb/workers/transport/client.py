"""The calling side of a worker connection, shared by every transport.

A :class:`WorkerClient` encodes a request, hands the frames to its transport, decodes
the reply and turns an error reply into the matching builtin exception carrying the
worker's traceback. Deletes of remote objects (from pointers that were garbage
collected) are queued without I/O and ride along with the next request, or go out
in one batch when enough pile up.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ppdl_nb.errors import remote_exception
from ppdl_nb.workers.core import codec, tracing

__all__ = ["WorkerClient"]


class WorkerClient:
    """Talks to one worker as ``caller``. Subclasses provide :meth:`_roundtrip`.

    ``context`` is the party that owns pointers decoded from replies (the notebook, or
    the worker on whose behalf this client speaks).
    """

    kind = "abstract"
    owns_replies = False  # True when replies arrive in fresh buffers (sockets)
    pid: int | None = None  # the worker's OS process, when it has its own

    def __init__(self, name: str, *, caller: str, context: Any) -> None:
        self.name = name
        self.caller = caller
        self.context = context
        self._pending_deletes: deque[int] = deque()
        self._send_lock = threading.RLock()
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} (as {self.caller})>"

    def _roundtrip(self, frames: list[Any], timeout: float | None) -> Sequence[Any]:
        raise NotImplementedError

    def request(self, message: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send one request and return its result, or raise the worker's error here."""
        with self._send_lock:
            if self._pending_deletes:
                message = {**message, "gc": self._take_deletes()}
            frames = codec.encode(message)
            self.requests += 1
            sent = codec.frames_nbytes(frames)
            self.bytes_sent += sent
            sent_at = time.time()
            reply_frames = self._roundtrip(frames, timeout)
            received = codec.frames_nbytes(reply_frames)
            self.bytes_received += received
            tracing.record(self.caller, self.name, tracing.label_of(message), sent, received,
                           sent_at)
        reply = codec.decode(reply_frames, context=self.context, owned=self.owns_replies)
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ConnectionError(f"worker {self.name} sent a reply that is not a ppdl reply")
        if reply["ok"]:
            return reply.get("result")
        err = reply.get("error") or {}
        raise remote_exception(
            str(err.get("type", "RuntimeError")),
            str(err.get("message", "unknown error")),
            self.name,
            str(err.get("traceback", "")),
        )

    # ---- garbage collection of remote objects ------------------------------------------
    def schedule_delete(self, obj_id: int) -> None:
        """Queue a remote delete; safe to call from ``__del__`` (no I/O, no locks)."""
        self._pending_deletes.append(obj_id)

    def _take_deletes(self) -> list[int]:
        ids = []
        while True:  # popleft is atomic, so a __del__ in another thread loses nothing
            try:
                ids.append(self._pending_deletes.popleft())
            except IndexError:
                return ids

    def flush(self) -> None:
        """Send queued deletes now."""
        if self._pending_deletes:
            self.request({"kind": "delete", "ids": []})

    # ---- conveniences over the vocabulary ---------------------------------------------
    def info(self) -> dict[str, Any]:
        """Objects, bytes and message counters of the worker."""
        return self.request({"kind": "info"})

    def ping(self) -> str:
        return self.request({"kind": "ping"})

    def step(self, name: str, **kwargs: Any) -> Any:
        """Run the registered protocol step ``name`` on the worker."""
        return self.request({"kind": "step", "name": name, "kwargs": kwargs})
