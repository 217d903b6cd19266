"""%ppdl budget: the owners' ledgers as text and a chart."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import ppdl_nb
from ppdl_nb.dp import remote
from ppdl_nb.workers.transport.virtual import VirtualNetwork


@pytest.fixture
def owner(ip, tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    worker = ppdl_nb.VirtualWorker("mg_owner", network=VirtualNetwork())
    remote(worker).load("digits", epsilon=2.0, delta=1e-5).count(epsilon=0.5)
    return worker


def test_budget_prints_the_ledger_and_draws_it(ip, owner, capsys):
    fig = ip.run_line_magic("ppdl", "budget mg_owner")
    out = capsys.readouterr().out
    assert out.startswith("mg_owner / digits") and "epsilon left 1.5" in out
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["mg_owner / digits"]
    assert ip.run_line_magic("ppdl", "budget --text mg_owner") is None
    assert "count of digits" in capsys.readouterr().out


def test_budget_of_every_worker_includes_the_owner(ip, owner, capsys):
    ip.run_line_magic("ppdl", "budget --text")
    assert "mg_owner / digits" in capsys.readouterr().out


def test_budget_without_datasets_and_of_unknown_workers(ip, capsys):
    empty = ppdl_nb.VirtualWorker("mg_empty", network=VirtualNetwork())  # noqa: F841
    assert ip.run_line_magic("ppdl", "budget mg_empty") is None
    assert "no worker holds a dataset with a budget" in capsys.readouterr().out
    with pytest.raises(UsageError, match="not connected to a worker named 'mg_ghost'"):
        ip.run_line_magic("ppdl", "budget mg_ghost")
