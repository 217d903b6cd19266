"""The encrypted-training benchmark's accuracy mode runs (tiny sizes, kernel workers) and
writes the figures it prints; ``tests/test_benchmarks.py`` runs its speed mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_encrypted_training.py"
pytestmark = pytest.mark.skipif(os.environ.get("PPDL_SKIP_KERNELS") == "1",
                                reason="PPDL_SKIP_KERNELS=1: no kernel workers")


def run(tmp_path: Path, *flags: str) -> dict:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", *flags, "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_quick_accuracy_run_matches_plaintext(tmp_path):
    doc = run(tmp_path, "--accuracy", "--seeds", "0")
    (row,) = doc["rows"]
    assert row["steps"] == 4 and 0 <= row["encrypted_accuracy"] <= 1
    assert row["max_weight_diff"] < 1e-2  # the same schedule, start and hyperparameters
    assert abs(row["gap_points"]) <= 2
    assert set(doc["hyperparameters"]) == {"lr", "momentum", "epochs"}
    assert len(doc["grid"]) == 6 and "median_gap_points" in doc
