"""The DP benchmarks' --quick modes work (docstring examples: tests/test_docs.py)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out),
         *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_bench_dp_sgd_quick(tmp_path):
    doc = _run("bench_dp_sgd.py", tmp_path)
    assert doc["quick"] and any("ppdl_nb" in r["what"] for r in doc["rows"])


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "boston-housing.csv").exists(),
                    reason="benchmark CSVs not present")
def test_bench_dp_paper_quick(tmp_path):
    doc = _run("bench_dp_paper.py", tmp_path)
    assert set(doc["results"]) == {"boston_mse", "pima_accuracy"}


def test_bench_dp_topagg_quick_compares_at_equal_epsilon(tmp_path):
    doc = _run("bench_dp_topagg.py", tmp_path)
    rows = {r["method"]: r for r in doc["rows"]}
    dpsgd, topagg = rows["DP-SGD (Gaussian sum)"], rows["DP-SGD + TopAgg"]
    target = doc["epsilons"][0]
    for row in (dpsgd, topagg):  # each run's own accountant, read back
        assert 0.99 * target <= row["epsilon"] <= target
    assert dpsgd["noise_mult"] == topagg["noise_mult"]


def test_dp_glm_proxies_quick_names_the_settings_the_paper_benchmark_uses(tmp_path):
    doc = _run("dp_glm_proxies.py", tmp_path, "--only", "v1,v2")
    assert {r["setting"] for r in doc["rows"]} == {"v1", "v2"}
    assert set(doc["best"]) == {"regression", "logistic"}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        paper, proxies = (importlib.import_module(m) for m in ("bench_dp_paper",
                                                               "dp_glm_proxies"))
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for task, name in proxies.CHOSEN.items():
        assert paper.HYPER[task] == proxies.CANDIDATES[task][name]
