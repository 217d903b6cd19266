"""The CSV exchange with anonymeter's side venv, checked without that venv: the tables
round-trip exactly, the label is written as integers, the release names come back, and
the benchmark skips anonymeter's columns cleanly (with the command) when the venv is
absent."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ppdl_nb.datasets import load_breast_cancer
from ppdl_nb.synth.anonymeter_io import (
    MAKE_VENV,
    column_names,
    read_table,
    run_anonymeter,
    side_python,
    write_table,
)
from ppdl_nb.synth.tabular import scale_columns

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _table():
    d = load_breast_cancer()
    x = scale_columns(d.x, d.x.min(0).values, d.x.max(0).values)
    return torch.cat([x, d.y[:, None].float()], 1), [*d.feature_names, "target"]


def test_csv_round_trips_values_and_schema(tmp_path):
    table, names = _table()
    path = write_table(tmp_path / "t.csv", table, names, integer_columns=[len(names) - 1])
    header, values = read_table(path)
    assert header == column_names(names) and len(set(header)) == len(header)
    assert all(h.replace("_", "").isalnum() for h in header)  # "mean radius" -> mean_radius
    assert values.shape == tuple(table.shape)
    assert torch.equal(torch.from_numpy(values), table.double())  # bit-exact float32 values
    labels = [line.rsplit(",", 1)[1] for line in path.read_text().splitlines()[1:]]
    assert set(labels) == {"0", "1"}  # integers, so every table gives anonymeter one dtype
    floats = path.read_text().splitlines()[1].split(",")[:-1]
    assert all("." in v or "e" in v for v in floats)  # never parsed as an integer column


def test_write_table_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        write_table(tmp_path / "a.csv", torch.zeros(3, 2), ["a"])
    with pytest.raises(ValueError, match="declared integer"):
        write_table(tmp_path / "b.csv", torch.tensor([[0.5, 1.0]]), ["a", "y"],
                    integer_columns=[0])


def test_side_python_is_found_only_where_it_is(tmp_path):
    assert side_python(tmp_path) is None
    py = tmp_path / ".venv-anonymeter" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("")
    assert side_python(tmp_path) == py
    assert "anonymeter==1.1.0" in MAKE_VENV and "torch" not in MAKE_VENV


def test_run_anonymeter_passes_tables_and_names_back(tmp_path):
    """A stand-in for anonymeter_risks.py (run by this python) reads what it is given."""
    fake = tmp_path / "fake_risks.py"
    fake.write_text(textwrap.dedent("""
        import argparse, csv, json
        p = argparse.ArgumentParser()
        for a in ("--original", "--control", "--secret", "--n-attacks", "--n-cols",
                  "--split", "--seed", "--jobs"):
            p.add_argument(a)
        p.add_argument("--synthetic", nargs="+")
        a = p.parse_args()
        rows = lambda f: list(csv.reader(open(f)))
        out = {}
        for item in a.synthetic:
            name, _, path = item.partition("=")
            out[name] = {"header": rows(path)[0], "n": len(rows(path)) - 1,
                         "original": len(rows(a.original)) - 1, "secret": a.secret,
                         "split": a.split, "n_attacks": a.n_attacks}
        print("noise first"); print(json.dumps(out))
    """))
    table, names = _table()
    releases = {"copy, eps=inf": table[:50], "half": table[50:75]}
    out = run_anonymeter(sys.executable, fake, table[:100], table[100:200], releases, names,
                         secret="target", n_attacks=77)
    assert list(out) == list(releases)
    assert out["copy, eps=inf"]["n"] == 50 and out["half"]["n"] == 25
    assert out["half"]["header"] == column_names(names) and out["half"]["secret"] == "target"
    assert out["half"]["original"] == 100 and out["half"]["split"] == str(len(names) // 2)
    assert out["half"]["n_attacks"] == "77"
    fake.write_text("import sys; sys.exit('boom')")
    with pytest.raises(RuntimeError, match="boom"):
        run_anonymeter(sys.executable, fake, table[:10], table[10:20], {"a": table[:5]},
                       names, secret="target")


def test_benchmark_skips_anonymeter_without_the_venv(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_synth

    monkeypatch.setattr(bench_synth, "ROOT", tmp_path)
    args = type("A", (), {"no_anonymeter": False})()
    table, names = _table()
    assert bench_synth.anonymeter_side(table, table, {"r": (table, 1.0)}, names, args) == {}
    assert MAKE_VENV in capsys.readouterr().out
    json.dumps(bench_synth.ATTACKS)  # recorded in the benchmark's JSON
