"""The private-ops benchmark runs (tiny sizes, virtual workers) and writes its JSON; the
CrypTen anchor skips cleanly where CrypTen is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_quick_private_ops_benchmark_writes_json(tmp_path):
    out = tmp_path / "mpc.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_mpc.py"), "--quick", "--workers",
                           "virtual", "--no-crypten", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    rows = {r["operation"].split()[0]: r for r in doc["rows"]}
    assert set(rows) == {"matmul", "mul", "linear", "relu"}
    assert rows["matmul"]["rounds"] == 2 and rows["linear"]["rounds"] == 6
    assert rows["relu"]["rounds"] == 4
    for row in rows.values():
        assert row["ours_ms"] > 0 and row["online_ms"] > 0 and row["dealer_bytes_sent"] > 0
    assert doc["protocol"] == "round by round"


def test_crypten_anchor_skips_cleanly_without_crypten(tmp_path):
    out = tmp_path / "crypten.json"
    env = {**os.environ, "PPDL_CRYPTEN_REEXEC": "1"}  # do not switch to .venv-crypten
    proc = subprocess.run([sys.executable, str(BENCH / "crypten_bench.py"), "--shim",
                           str(tmp_path), "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "skipping" in proc.stdout and json.loads(out.read_text())["rows"] == []
