"""Message tracing: who sent what to whom, how many bytes, in which protocol round.

Every request a client makes passes :func:`record`. While a :class:`Recorder` is active
in a process, requests are appended to it. In-process workers share the notebook's
process, so one recorder sees everything; kernel workers run their own recorder,
switched on and collected with the ``trace`` message.

>>> with recording() as rec:
...     record("me", "alice", "ping", 10, 20)
>>> rec.records[0]["dst"]
'alice'
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Recorder", "current_round", "record", "recording", "round_label"]

_ACTIVE: list[Recorder] = []
_LOCK = threading.Lock()
_ROUND = threading.local()


class Recorder:
    """A list of message records (dicts) with a lock."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(rec)


def record(src: str, dst: str, kind: str, nbytes: int, reply_bytes: int,
           sent_at: float | None = None, round: str | None = None) -> None:
    """Note one request/reply pair in every active recorder (cheap when none is);
    ``round`` names its protocol round (default: the enclosing :func:`round_label`)."""
    if not _ACTIVE:
        return
    rec = {"t": time.time() if sent_at is None else sent_at, "src": src, "dst": dst,
           "kind": kind, "bytes": nbytes, "reply_bytes": reply_bytes,
           "round": current_round() if round is None else round}
    for r in list(_ACTIVE):
        r.add(rec)


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Record every request made in this process while the block runs."""
    rec = Recorder()
    start(rec)
    try:
        yield rec
    finally:
        stop(rec)


def start(rec: Recorder) -> None:
    with _LOCK:
        _ACTIVE.append(rec)


def stop(rec: Recorder) -> None:
    with _LOCK:
        if rec in _ACTIVE:
            _ACTIVE.remove(rec)


def current_round() -> str:
    return getattr(_ROUND, "label", "")


@contextlib.contextmanager
def round_label(label: str) -> Iterator[None]:
    """Name the protocol round that requests made in this block belong to."""
    previous = current_round()
    _ROUND.label = label
    try:
        yield
    finally:
        _ROUND.label = previous


def label_of(message: dict[str, Any]) -> str:
    kind = message.get("kind", "?")
    if kind == "step":
        return str(message.get("name", "step"))
    if kind == "call":
        return str(message.get("fn", "call"))
    return str(kind)
