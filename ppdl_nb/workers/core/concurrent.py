"""Asking several workers at once: one thread per request, the caller's round label kept.

Each worker connection has its own socket and lock, so requests to different workers can
be in flight together; a protocol round then costs the slowest worker, not the sum.
:func:`outcomes` reports each request's result or exception; :func:`concurrently` returns
the results or raises.

>>> import ppdl_nb
>>> a, b = ppdl_nb.VirtualWorker("a"), ppdl_nb.VirtualWorker("b")
>>> [ok for ok, _ in outcomes([(a, "no.such.step", {}), (b, "no.such.step", {})])]
[False, False]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ppdl_nb.workers.core import tracing

__all__ = ["concurrently", "outcomes", "submit"]

Call = tuple[Any, str, dict[str, Any]]  # (worker, protocol step, its keyword arguments)

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ppdl-nb-request")
        return _POOL


def submit(worker: Any, name: str, kwargs: dict[str, Any]) -> Future:
    """``worker.step(name, **kwargs)`` on a pool thread, under the caller's round label."""
    label = tracing.current_round()

    def job() -> Any:
        with tracing.round_label(label):
            return worker.step(name, **kwargs)

    return _pool().submit(job)


def outcomes(calls: Sequence[Call]) -> list[tuple[bool, Any]]:
    """Run ``worker.step(name, **kwargs)`` for each call at once (the first in this
    thread); ``(True, result)`` or ``(False, exception)`` for each, in order."""
    if not calls:
        return []
    futures = [submit(*c) for c in calls[1:]]
    done: list[tuple[bool, Any]] = []
    try:
        worker, name, kwargs = calls[0]
        done.append((True, worker.step(name, **kwargs)))
    except Exception as exc:
        done.append((False, exc))
    for f in futures:
        try:
            done.append((True, f.result()))
        except Exception as exc:
            done.append((False, exc))
    return done


def concurrently(calls: Sequence[Call]) -> list[Any]:
    """The results of :func:`outcomes`, in order. If any failed, all are waited for and the
    failure that started it is raised (peers of a failed MPC party stop with 'stopped:
    <party> failed: ...', which is raised only if nothing else failed)."""
    done = outcomes(calls)
    errors = [v for ok, v in done if not ok]
    if errors:
        root = [e for e in errors if " stopped: " not in str(e)]
        raise (root or errors)[0]
    return [v for _, v in done]
