"""Shared benchmark plumbing: timing with medians, a readable table, ``--json PATH``."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p


def median_time(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(title: str, rows: list[dict[str, Any]], args: argparse.Namespace,
           extra: dict[str, Any] | None = None) -> None:
    """Print ``rows`` as a table and, with ``--json``, write them with the machine's facts."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if args.json:
        doc = {"title": title, "rows": rows, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "machine": platform.machine(),
               "quick": bool(args.quick), **(extra or {})}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
