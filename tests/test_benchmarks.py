"""Every benchmark script runs (``--quick``), prints a table and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(Path(__file__).parent.parent.joinpath("benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_smoke(script, tmp_path):
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.stdout.strip().splitlines()) >= 3  # a table was printed
    doc = json.loads(out.read_text())
    assert doc["rows"] or doc.get("skipped")
