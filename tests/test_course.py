"""Exercises (issue 18, item 10): checks print for students, raise under injected solutions."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from ppdl_nb.course import SOLUTIONS_ENV, check

ROOT = Path(__file__).parent.parent


def _nbbuild():
    spec = importlib.util.spec_from_file_location("nbbuild", ROOT / "tools" / "nbbuild.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_says_right_or_not_yet_and_never_raises_for_a_student(capsys, monkeypatch):
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)
    check("t", torch.tensor([1.0, 2.0]), expected=torch.tensor([1.0, 2.00001]))
    check("t", torch.tensor([1.0]), expected=torch.tensor([1.0, 2.0]))  # wrong shape
    check("t", "not a tensor", expected=torch.tensor([1.0]))
    check("t", ..., expected=1)
    check("t", 5, test=lambda v: v.no_such_attribute)  # a check that cannot run: wrong
    assert capsys.readouterr().out.splitlines() == [
        "right: t", "not yet: t (not quite: try again)", "not yet: t (not quite: try again)",
        "not yet: t (replace the ... above with your answer)",
        "not yet: t (not quite: try again)"]


def test_under_injected_solutions_a_wrong_answer_raises(monkeypatch):
    monkeypatch.setenv(SOLUTIONS_ENV, "1")
    check("t", 3, expected=3)
    for wrong in (..., 4):
        with pytest.raises(AssertionError, match="injected solution"):
            check("t", wrong, expected=3)


def test_nbbuild_keeps_solutions_in_metadata_not_in_the_source():
    cells = _nbbuild().parse("# %% [exercise]\nanswer = ...  # yours\n"
                             "# solution: a = 1\n# solution: answer = a + 2\n# %%\nanswer\n")
    exercise, after = cells
    assert exercise.source == "answer = ...  # yours"
    assert exercise.metadata["tags"] == ["exercise"]
    assert exercise.metadata["ppdl"]["solution"] == "a = 1\nanswer = a + 2"
    assert "ppdl" not in after.metadata


def _notebook(path: Path, solution: str) -> None:
    cells = _nbbuild().parse(
        "# %%\nfrom ppdl_nb.course import check\n"
        f"# %% [exercise]\nanswer = ...\n# solution: {solution}\n"
        "# %%\ncheck('three', answer, expected=3)\n")
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def test_the_tutorials_conftest_injects_solutions_so_a_wrong_one_fails(tmp_path):
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    _notebook(tmp_path / "good.ipynb", "answer = 1 + 2")
    _notebook(tmp_path / "bad.ipynb", "answer = 1 + 1")
    env = {**os.environ, SOLUTIONS_ENV: "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--nbval-lax", "good.ipynb", "bad.ipynb"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert "1 failed, 5 passed" in run.stdout, run.stdout[-3000:]
    assert "bad.ipynb::Cell 2" in run.stdout and "injected solution gave 2" in run.stdout
    # (without the flag the placeholders print "not yet": make test's first nbval run)
