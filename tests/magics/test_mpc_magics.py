"""The secret-sharing subcommands: shares (share histograms) and trace (message diagrams)."""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError

import ppdl_nb
from ppdl_nb.viz.trace import Trace
from ppdl_nb.workers.transport.virtual import VirtualNetwork


@pytest.fixture
def shared_ns(ip):
    net = VirtualNetwork()
    bob, charlie, dave = (ppdl_nb.VirtualWorker(n, network=net)
                          for n in ("bob", "charlie", "dave"))
    secret = torch.linspace(-5, 5, 200)
    ip.user_ns.update(mg_secret=secret, mg_x=ppdl_nb.share(secret, bob, charlie, dealer=dave))
    yield ip.user_ns
    for name in ("mg_secret", "mg_x", "ppdl_trace", "mg_trace", "mg_y"):
        ip.user_ns.pop(name, None)


def test_shares_plots_each_party_and_the_secret(ip, shared_ns):
    fig = ip.run_line_magic("ppdl", "shares mg_x --bins 16")
    assert [ax.get_title() for ax in fig.axes] == ["bob's share", "charlie's share"]
    assert sum(p.get_height() for p in fig.axes[0].patches) == 200
    fig = ip.run_line_magic("ppdl", "shares mg_x --secret mg_secret")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["secret", "bob's share", "charlie's share", "bob's share vs secret"]


def test_shares_explains_bad_expressions(ip, shared_ns):
    with pytest.raises(UsageError, match="could not evaluate 'mg_missing'"):
        ip.run_line_magic("ppdl", "shares mg_missing")
    with pytest.raises(UsageError, match="expected a shared tensor, got Tensor"):
        ip.run_line_magic("ppdl", "shares mg_secret")


def test_trace_cell_records_the_openings_and_keeps_the_trace(ip, shared_ns, capsys):
    ip.run_cell_magic("ppdl", "trace --out mg_trace", "mg_y = mg_x * mg_x")
    recorded = shared_ns["mg_trace"]
    assert isinstance(recorded, Trace)
    delivers = [r for r in recorded.records if r["kind"] == "mpc.deliver"]
    assert {(r["src"], r["dst"]) for r in delivers} == {("bob", "charlie"), ("charlie", "bob")}
    assert "bob" in capsys.readouterr().out  # the per-party summary
    got = shared_ns["mg_y"].get()
    assert torch.allclose(got, shared_ns["mg_secret"].double() ** 2, atol=1e-3)
    assert ip.run_line_magic("ppdl", "trace --out mg_trace") is recorded


def test_trace_usage_errors(ip, shared_ns):
    with pytest.raises(UsageError, match="run a cell with %%ppdl trace first"):
        ip.run_line_magic("ppdl", "trace --out mg_nothing_here")
    with pytest.raises(UsageError, match="must be a variable name"):
        ip.run_cell_magic("ppdl", "trace --out 1bad", "pass")


def test_trace_of_a_failing_cell_keeps_what_was_sent(ip, shared_ns):
    result = ip.run_cell_magic("ppdl", "trace --table", "mg_y = mg_x * mg_x\n1 / 0")
    assert result is None
    assert any(r["kind"] == "mpc.deliver" for r in shared_ns["ppdl_trace"].records)
