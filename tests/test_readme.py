"""The README's examples run as written and do what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def _run(code: str, ns: dict) -> None:
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102  (our README, not peer input)


def test_the_readme_has_its_six_examples():
    assert len(BLOCKS) == 6


def test_readme_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))  # the hospital's ledger
    pointers, sharing, kernels, dp, fl, he = BLOCKS
    ns: dict = {}
    *lines, last = pointers.rstrip().splitlines()
    _run("\n".join(lines), ns)
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"PointerTensor me:\d+ -> alice:\d+ \[shape \(3,\), float32\]",
                        printed[0])
    assert printed[1] == "tensor([0., 1., 3.])"
    assert ns["y"].location.name == "bob" and ns["y"].get().tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(PermissionError, match="private to alice"):
        _run(last, ns)

    _run(sharing, ns)
    assert {"bob", "charlie", "dave"} <= set(ns["t"].parties())
    assert any(r["kind"] == "mpc.deliver" for r in ns["t"].records)
    assert ns["scores"].location.name == "alice"
    with pytest.raises(PermissionError):  # the notebook is not among those allowed
        ns["scores"].get()

    _run(kernels, ns)
    _run(dp, ns)
    ledger = ns["records"].budget()
    assert ledger.spent_epsilon == pytest.approx(0.5)
    assert ledger.remaining_epsilon == pytest.approx(0.5)

    assert "rounds=10" in fl
    _run(fl.replace("rounds=10", "rounds=2"), ns)  # as written, two rounds for time
    assert len(ns["run"].history.rounds) == 2

    pytest.importorskip("tenseal", reason="the HE example needs the 'he' extra")
    _run(he, ns)
    logits = ns["patient"].owner.store.entry(ns["run"].logits.id_at_location).obj
    assert logits.shape == (8, 3) and ns["run"].masked
    with pytest.raises(PermissionError, match="private to patient"):
        ns["run"].logits.get()
