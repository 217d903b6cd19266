"""The protocol-math benchmark runs (tiny sizes) and writes the JSON it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mpc_math.py"


def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "int64 matmul (limbs)" in proc.stdout
    results = json.loads(out.read_text())
    rows = results["runs"]["1"]
    assert rows["int64 matmul (torch)"]["ms"] > 0
    linear = next(v for k, v in rows.items() if k.startswith("2PC linear"))
    assert linear["rounds"] == 6 and linear["bytes_per_party"] > 0
    assert linear["max_abs_err"] < 1e-2
