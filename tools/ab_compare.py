"""Run one benchmark in two checkouts, interleaved, and compare their medians by ratio.

    python tools/ab_compare.py --before ../before --pairs 5 --metric ours_ms \\
        -- benchmarks/bench_mpc.py --rounds 1 --no-crypten

A refactor must not slow the hot paths; the machine is shared and its load drifts, so
the two trees take turns (before, after, before, after, ...) and each pair is compared
as a ratio. The benchmark must accept ``--json PATH`` (every script in benchmarks/ does).
``--before`` is another checkout (e.g. ``git worktree add ../before <commit>``); it runs
with this interpreter, its own source tree first on ``PYTHONPATH``, so kernel workers it
launches import the same tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(tree: Path, script: list[str], metrics: list[str]) -> dict[str, dict[str, float]]:
    """One run of the benchmark in ``tree``: {row label: {metric: value}}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, *script, "--json", str(out)], cwd=tree, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        doc = json.loads(out.read_text())
    rows = {}
    for row in doc["rows"]:
        label = str(next(iter(row.values())))
        rows[label] = {m: float(row[m]) for m in metrics if isinstance(row.get(m), int | float)}
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="the other checkout")
    p.add_argument("--after", type=Path, default=Path.cwd(), help="this checkout (default)")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--metric", action="append", required=True, help="a JSON column to compare")
    p.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    p.add_argument("script", nargs=argparse.REMAINDER, help="-- benchmark and its arguments")
    args = p.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    samples: dict[str, list[dict]] = {"before": [], "after": []}
    for i in range(args.pairs):
        for side, tree in (("before", args.before), ("after", args.after)):
            samples[side].append(run_once(tree.resolve(), script, args.metric))
        print(f"pair {i + 1}/{args.pairs} done", file=sys.stderr)
    print(f"{'row':28s} {'metric':12s} {'before':>10s} {'after':>10s} {'ratio':>7s}")
    summary = []
    for label in samples["after"][0]:
        for m in args.metric:
            try:
                b = [s[label][m] for s in samples["before"]]
                a = [s[label][m] for s in samples["after"]]
            except KeyError:
                continue
            ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
            summary.append({"row": label, "metric": m, "before": statistics.median(b),
                            "after": statistics.median(a), "median_ratio": ratio})
            print(f"{label:28s} {m:12s} {statistics.median(b):10.4g} "
                  f"{statistics.median(a):10.4g} {ratio:7.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "samples": samples}, indent=2))


if __name__ == "__main__":
    main()
