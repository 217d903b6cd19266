"""``make demo`` runs headless and shows what it promises."""

import subprocess
import sys


def test_demo_runs_and_checks_itself():
    out = subprocess.run([sys.executable, "-m", "ppdl_nb.demo"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "private data stays put" in out
    assert "matches the plaintext model" in out
    value = float(out.split("matches the plaintext model to ")[1].split()[0])
    assert value < 1e-3
    accuracy = float(out.split("federated accuracy ")[1].split()[0])
    assert accuracy > 0.8  # 5 rounds of FedAvg on the digits, pairwise-mask aggregation
