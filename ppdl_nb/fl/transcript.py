"""What the notebook saw: record every value the workers sent back, and search it.

Secure aggregation promises that the server (here, the notebook) learns the average and
nothing else. :func:`notebook_transcript` records every reply the notebook receives
from the given workers during a block, so a test or a tutorial can check that promise
against the individual updates: ``seen.holds(update)`` is True if any tensor the
notebook received is (close to) that update, in float or in fixed point.

:func:`crash_before` kills a worker just before the notebook sends it a given protocol
step, to show (and test) what a round does when a party dies mid-protocol.

>>> import ppdl_nb, torch
>>> alice = ppdl_nb.VirtualWorker("alice")
>>> with notebook_transcript([alice]) as seen:
...     _ = ppdl_nb.send(torch.ones(3), alice).get()
>>> seen.holds(torch.ones(3))
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ppdl_nb.mpc.encoding import decode

__all__ = ["Transcript", "crash_before", "notebook_transcript"]


@dataclass
class Transcript:
    """``(worker, request label, tensor)`` for every tensor in every reply received."""

    entries: list[tuple[str, str, torch.Tensor]] = field(default_factory=list)

    def tensors(self, kind: str | None = None) -> list[torch.Tensor]:
        return [t for _, label, t in self.entries if kind is None or label == kind]

    def holds(self, secret: torch.Tensor, *, atol: float = 1e-3,
              frac_bits: Sequence[int] = (16, 20, 24)) -> bool:
        """Did any received tensor equal ``secret`` (to ``atol``), as floats or decoded?"""
        target = secret.detach().double().reshape(-1)
        for t in self.tensors():
            flat = t.reshape(-1)
            if flat.numel() != target.numel():
                continue
            views = [flat.double()] if t.is_floating_point() else (
                [decode(flat, f) for f in frac_bits] if t.dtype == torch.int64 else [])
            if any(torch.allclose(v, target, atol=atol) for v in views):
                return True
        return False

    def summary(self) -> list[dict[str, Any]]:
        """One row per (worker, request): how many tensors, their dtypes and sizes."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for worker, label, t in self.entries:
            row = rows.setdefault((worker, label), {"from": worker, "reply to": label,
                                                    "tensors": 0, "dtypes": set(),
                                                    "values": 0})
            row["tensors"] += 1
            row["dtypes"].add(str(t.dtype).removeprefix("torch."))
            row["values"] += t.numel()
        return [{**rows[k], "dtypes": ", ".join(sorted(rows[k]["dtypes"]))}
                for k in sorted(rows)]  # replies arrive in any order; list them by name

    def __repr__(self) -> str:
        lines = [f"Transcript: {len(self.entries)} tensors received"]
        for r in self.summary():
            lines.append(f"  {r['from']:<10} {r['reply to']:<16} {r['tensors']:>3} x "
                         f"{r['dtypes']:<8} {r['values']:>9} values")
        return "\n".join(lines)


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _tensors_in(v)


def _label(message: dict[str, Any]) -> str:
    return str(message.get("name") if message.get("kind") == "step" else message.get("kind"))


@contextlib.contextmanager
def notebook_transcript(workers: Sequence[Any]) -> Iterator[Transcript]:
    """Record the replies these worker connections receive during the block."""
    seen = Transcript()
    patched = []
    for w in workers:
        original = w.request
        had_own = "request" in w.__dict__  # already wrapped (a nested transcript)

        def recording(message: dict[str, Any], *, timeout: float | None = None,
                      _original: Any = original, _name: str = w.name) -> Any:
            result = _original(message, timeout=timeout)
            seen.entries.extend((_name, _label(message), t) for t in _tensors_in(result))
            return result

        w.request = recording  # on this connection object only; torch is untouched
        patched.append((w, original, had_own))
    try:
        yield seen
    finally:
        for w, original, had_own in reversed(patched):
            if had_own:
                w.request = original
            else:
                del w.request


@contextlib.contextmanager
def crash_before(worker: Any, step: str) -> Iterator[None]:
    """Kill ``worker`` (its process, for a kernel worker) just before it is sent ``step``."""
    original = worker.step
    had_own = "step" in worker.__dict__

    def crashing(name: str, **kwargs: Any) -> Any:
        if name == step:
            process = getattr(worker, "process", None)
            if process is not None:
                process.kill()
                from ppdl_nb.workers.core.waiting import wait_until

                wait_until(lambda: not process.is_alive(), 10)
            else:
                worker.shutdown()
        return original(name, **kwargs)

    worker.step = crashing
    try:
        yield
    finally:
        if had_own:
            worker.step = original
        else:
            del worker.step
