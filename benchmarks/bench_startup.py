"""Start-up cost: ``import ppdl_nb`` vs ``import torch``; a worker kernel vs a bare one.

Issue 18, item 8. Torch is the floor (deferring ``import torch`` only moves its cost to
the first op), so every figure is a difference from a run that imported torch:

- **import**: wall time of ``python -c "import ppdl_nb"`` vs ``python -c "import torch"``
  (fresh interpreters, interleaved). Goal: at most 0.3 s more. On a loaded machine the
  two wall times swing by more than that, so the time ``import ppdl_nb`` takes in a fresh
  interpreter that already imported torch is reported too (its own cost, timed inside).
- **memory**: a worker kernel (``ppdl_nb.launch``) after its first pointer op, vs a bare
  ipykernel (``python -m ipykernel_launcher``) after it ran ``import torch``: RSS, USS
  (pages only this process holds) and PSS (shared pages split among their users). Goal:
  RSS at most 40 MB more.
- **ready**: from asking for the kernel until the first pointer op is answered (``send``
  then ``get``), vs until the bare kernel answered ``import torch``. Goal: at most 0.4 s.

Each figure is the median of ``--runs`` (10; one with ``--quick``), kernels started one at
a time, the two kinds interleaved so machine load falls on both alike::

    python benchmarks/bench_startup.py --json startup.json

Measured (2 shared cores, torch 2.13, one run each; differences from the baseline): before
issue 18's item 8, import +0.13 s, kernel RSS +45.4 MB (USS +28.4, PSS +30.1), ready
+0.50 s; after (worker kernels no longer boot matplotlib's inline backend, dp_accounting
and the widgets load on first use), import +0.08 s (0.09 s after torch; other runs on a
busier machine: +0.24, +0.46), RSS +14.0 MB (USS +3.6, PSS +3.9), ready +0.02 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

MB = 1e6
GOALS = {"import_s": 0.3, "rss_mb": 40.0, "ready_s": 0.4}


def import_time(module: str) -> float:
    """Wall time of a fresh interpreter that imports ``module`` (seconds)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def import_after_torch() -> float:
    """Seconds ``import ppdl_nb`` takes in a fresh interpreter that imported torch first."""
    code = ("import time, torch; t = time.perf_counter(); import ppdl_nb; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory(pid: int) -> dict[str, float]:
    """RSS, USS and PSS of process ``pid`` in MB (USS/PSS: Linux; else equal to RSS)."""
    proc = psutil.Process(pid)
    try:
        full = proc.memory_full_info()
    except (psutil.AccessDenied, AttributeError):
        full = proc.memory_info()
    rss = full.rss / MB
    return {"rss_mb": rss, "uss_mb": getattr(full, "uss", full.rss) / MB,
            "pss_mb": getattr(full, "pss", full.rss) / MB}


def _bare_spec_dir() -> str:
    root = tempfile.mkdtemp(prefix="bench-startup-")
    spec = os.path.join(root, "kernels", "bare")
    os.makedirs(spec)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                            "{connection_file}"],
                   "display_name": "bare", "language": "python"}, f)
    return os.path.join(root, "kernels")


def bare_kernel(spec_dir: str) -> dict[str, float]:
    """Start a plain ipykernel, run ``import torch`` in it; its time to answer and memory."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    km = KernelManager(kernel_name="bare", transport="ipc",
                       ip=os.path.join(tempfile.mkdtemp(prefix="bare-"), "k"),
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec_dir]))
    t0 = time.perf_counter()
    km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("import torch", timeout=120, output_hook=lambda m: None)
        ready = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        return {"ready_s": ready, **memory(km.provisioner.process.pid)}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def worker_kernel() -> dict[str, float]:
    """Launch a worker kernel, answer one pointer op; its time to answer and memory."""
    import ppdl_nb

    t0 = time.perf_counter()
    with ppdl_nb.launch("alice") as (alice,):
        x = ppdl_nb.send(torch.ones(3), alice)
        assert (x * 2).get().tolist() == [2.0, 2.0, 2.0]
        ready = time.perf_counter() - t0
        return {"ready_s": ready, **memory(alice.pid)}


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="repeats per figure (default 10)")
    args = p.parse_args()
    runs = 1 if args.quick else args.runs
    imports: dict[str, list[float]] = {"torch": [], "ppdl_nb": []}
    after_torch = []
    for _ in range(runs):
        for module in imports:
            imports[module].append(import_time(module))
        after_torch.append(import_after_torch())
    import ppdl_nb  # noqa: F401  (the notebook's own import is not a worker's cost)

    spec_dir = _bare_spec_dir()
    bare: list[dict[str, float]] = []
    worker: list[dict[str, float]] = []
    for _ in range(runs):
        bare.append(bare_kernel(spec_dir))
        worker.append(worker_kernel())
    torch_s, ours_s = (statistics.median(imports[m]) for m in ("torch", "ppdl_nb"))
    rows: list[dict[str, Any]] = [
        {"figure": "import (s)", "baseline": torch_s, "ppdl_nb": ours_s,
         "difference": ours_s - torch_s, "goal": f"<= +{GOALS['import_s']}",
         "met": ours_s - torch_s <= GOALS["import_s"]},
        {"figure": "import after torch (s)", "baseline": 0.0,
         "ppdl_nb": statistics.median(after_torch),
         "difference": statistics.median(after_torch), "goal": f"<= +{GOALS['import_s']}",
         "met": statistics.median(after_torch) <= GOALS["import_s"]}]
    for key, label in (("rss_mb", "kernel RSS (MB)"), ("uss_mb", "kernel USS (MB)"),
                       ("pss_mb", "kernel PSS (MB)"), ("ready_s", "ready (s)")):
        base, ours = _median(bare, key), _median(worker, key)
        goal = GOALS.get(key)
        rows.append({"figure": label, "baseline": base, "ppdl_nb": ours,
                     "difference": ours - base,
                     "goal": f"<= +{goal}" if goal else "",
                     "met": (ours - base <= goal) if goal else ""})
    report(f"start-up, median of {runs} (baseline: import torch / a bare ipykernel "
           f"that imported torch)", rows, args, extra={"runs": runs})


if __name__ == "__main__":
    main()
