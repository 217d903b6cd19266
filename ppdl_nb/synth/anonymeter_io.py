"""Tables for anonymeter, which runs in its own virtual environment, and its answer back.

Why: ``ppdl_nb.synth.leakage`` computes singling out, linkability and attribute inference
with anonymeter's definitions (Giomi et al., PETS 2023); the maintained library itself is
the check on that code. anonymeter 1.1.0 pins ``numpy<1.27`` (and numba, polars,
``pyarrow<22``), so it cannot share this environment (numpy 2.x); it lives in
``.venv-anonymeter`` beside the project, as Flower and CrypTen live in theirs. It needs no
torch. Make it from the repository root with :data:`MAKE_VENV`::

    python3.11 -m venv .venv-anonymeter && .venv-anonymeter/bin/pip install anonymeter==1.1.0

The exchange is plain CSV in a temporary folder: :func:`write_table` writes each table
(float columns in their shortest exact decimal form, so a float32 value reads back
bit-identical; the label column as integers, so anonymeter sees the same dtypes in every
table), ``benchmarks/anonymeter_risks.py`` runs the three evaluators in the side venv, and
:func:`run_anonymeter` returns its JSON. Nothing here imports anonymeter.

>>> import torch, tempfile, pathlib
>>> t = torch.tensor([[0.1, 1.0], [0.25, 0.0]])
>>> with tempfile.TemporaryDirectory() as d:
...     names, values = read_table(write_table(pathlib.Path(d) / "t.csv", t, ["a b", "y"],
...                                            integer_columns=[1]))
>>> names, values.tolist() == t.double().tolist()
(['a_b', 'y'], True)
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["MAKE_VENV", "VENV", "column_names", "read_table", "run_anonymeter",
           "side_python", "write_table"]

VENV = ".venv-anonymeter"
MAKE_VENV = (f"python3.11 -m venv {VENV} && {VENV}/bin/pip install anonymeter==1.1.0")


def column_names(names: Sequence[str]) -> list[str]:
    """Names safe for anonymeter's polars queries: letters, digits and ``_`` only, unique.

    >>> column_names(["mean radius", "BMI", "mean-radius"])
    ['mean_radius', 'BMI', 'mean_radius_2']
    """
    out: list[str] = []
    for name in names:
        safe = re.sub(r"\W", "_", name.strip()) or "col"
        safe = f"c_{safe}" if safe[0].isdigit() else safe
        base, k = safe, 2
        while safe in out:
            safe, k = f"{base}_{k}", k + 1
        out.append(safe)
    return out


def write_table(path: str | os.PathLike, table: torch.Tensor | np.ndarray,
                names: Sequence[str], *, integer_columns: Sequence[int] = ()) -> Path:
    """Write ``table`` (rows = records) as a CSV with a header of :func:`column_names`.

    Float cells are written with ``repr`` of the float64 value (exact, shortest form);
    ``integer_columns`` (the label) must hold whole numbers and are written as integers.
    """
    values = np.asarray(torch.as_tensor(np.asarray(table)).double())
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"table of shape {values.shape} does not match {len(names)} names.")
    ints = set(integer_columns)
    for c in ints:
        if not np.all(values[:, c] == np.round(values[:, c])):
            raise ValueError(f"column {names[c]!r} is declared integer but holds fractions.")
    p = Path(path)
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(column_names(names))
        for row in values.tolist():
            w.writerow([str(int(round(v))) if c in ints else repr(v) for c, v in enumerate(row)])
    return p


def read_table(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The header and float64 values of a CSV that :func:`write_table` wrote."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)


def side_python(root: str | os.PathLike) -> Path | None:
    """The side venv's python under ``root`` (the repository), or None when it is absent."""
    py = Path(root) / VENV / "bin" / "python"
    return py if py.is_file() else None


def run_anonymeter(python: str | os.PathLike, script: str | os.PathLike,  # long: argv
                   original: torch.Tensor, control: torch.Tensor,
                   releases: dict[str, torch.Tensor], names: Sequence[str], *, secret: str,
                   n_attacks: int = 500, n_cols: int = 3, split: int | None = None,
                   seed: int = 0, jobs: int = 1, timeout: float = 1800) -> dict:
    """Run ``script`` (``benchmarks/anonymeter_risks.py``) with ``python`` on the tables.

    ``names`` names the columns (``secret`` among them; it is written as integers).
    Returns ``{release: {"singling_out": ..., "linkability": ..., "inference": ...},
    "_meta": ...}`` as the script prints it. One process for all releases (numba compiles
    once). Raises ``RuntimeError`` with the script's stderr when it fails.
    """
    safe = column_names(names)
    label = safe[list(names).index(secret)]
    ints = [list(names).index(secret)]
    split = len(safe) // 2 if split is None else split
    with tempfile.TemporaryDirectory(prefix="anonymeter-") as d:
        folder = Path(d)
        ori = write_table(folder / "original.csv", original, names, integer_columns=ints)
        con = write_table(folder / "control.csv", control, names, integer_columns=ints)
        keys = {f"r{i}": name for i, name in enumerate(releases)}
        syn = [f"{k}={write_table(folder / f'{k}.csv', releases[v], names, integer_columns=ints)}"
               for k, v in keys.items()]
        argv = [str(python), str(script), "--original", str(ori), "--control", str(con),
                "--secret", label, "--n-attacks", str(n_attacks), "--n-cols", str(n_cols),
                "--split", str(split), "--seed", str(seed), "--jobs", str(jobs),
                "--synthetic", *syn]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "NUMBA_NUM_THREADS": str(max(jobs, 1))})
    if run.returncode != 0:
        raise RuntimeError(f"anonymeter_risks.py failed ({run.returncode}):\n"
                           f"{run.stderr[-3000:]}")
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    return {keys.get(k, k): v for k, v in doc.items()}
