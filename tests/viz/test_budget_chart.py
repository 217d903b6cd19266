"""Budget pictures: the ledgers read from the owners, as text and as bars."""

from __future__ import annotations

import pytest

import ppdl_nb
from ppdl_nb.dp import remote
from ppdl_nb.viz.budget import Ledger, ledgers, plot_budgets
from ppdl_nb.workers.transport.virtual import VirtualNetwork


@pytest.fixture
def owners(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    net = VirtualNetwork()
    hospital, clinic = (ppdl_nb.VirtualWorker(n, network=net) for n in ("hospital", "clinic"))
    records = remote(hospital).load("breast_cancer", epsilon=1.0, delta=1e-5)
    records.count(epsilon=0.25)
    records.mean(column=0, bounds=(0, 30), epsilon=0.5)
    return hospital, clinic


def test_ledgers_mirror_what_each_owner_charged(owners):
    hospital, clinic = owners
    assert ledgers([clinic]) == []
    (book,) = ledgers([hospital, clinic])
    assert (book.worker, book.dataset, book.total_epsilon) == ("hospital", "breast_cancer", 1.0)
    assert [what.split()[0] for what, _, _ in book.history] == ["count", "mean"]
    assert book.spent_epsilon == pytest.approx(0.75)
    assert book.remaining_epsilon == pytest.approx(0.25)
    text = book.text()
    assert text.splitlines()[0] == "hospital / breast_cancer"
    assert "count of breast_cancer" in text and "epsilon left 0.25" in text


def test_bars_show_each_release_and_the_remainder():
    books = [Ledger("hospital", "breast_cancer", 1.0, 1e-5,
                    (("count of x", 0.25, 0.0), ("mean of x", 0.5, 0.0))),
             Ledger("clinic", "digits", 2.0, 1e-5, ())]
    fig = plot_budgets(books)
    (ax,) = fig.axes
    widths = [round(p.get_width(), 6) for p in ax.patches]
    assert widths == [0.25, 0.5, 0.25, 2.0]  # hospital's releases + rest, clinic's rest
    assert [t.get_text() for t in ax.get_yticklabels()] == ["hospital / breast_cancer",
                                                            "clinic / digits"]
    assert {"0.75 / 1", "0 / 2", "mean"} <= {t.get_text() for t in ax.texts}


def test_nothing_to_draw_says_how_to_get_a_budget():
    with pytest.raises(ValueError, match=r"remote\(worker\).load"):
        plot_budgets([])
