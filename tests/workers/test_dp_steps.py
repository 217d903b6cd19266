"""Budgets kept by the data owner: queries are charged on the worker, refusals say what is
left, and the ledger survives a restart."""

from __future__ import annotations

import pytest

import ppdl_nb
from ppdl_nb.workers.virtual import VirtualNetwork


@pytest.fixture
def owner(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    return ppdl_nb.VirtualWorker("hospital", network=VirtualNetwork())


def test_queries_are_charged_and_refused_beyond_the_budget(owner):
    loaded = owner.step("dp.load", dataset="breast_cancer", epsilon=1.0, delta=1e-5)
    assert loaded["rows"] == 569
    mean = owner.step("dp.query", dataset="breast_cancer", kind="mean", column=0, lower=0,
                      upper=30, epsilon=0.5)
    assert 5 < mean < 25  # mean radius is about 14; Laplace noise at this epsilon is small
    ledger = owner.step("dp.budget", dataset="breast_cancer")
    assert ledger["spent_epsilon"] == pytest.approx(0.5)
    assert ledger["history"][0][0].startswith("mean of breast_cancer")
    with pytest.raises(PermissionError, match="only \\(epsilon=0.5"):
        owner.step("dp.query", dataset="breast_cancer", kind="count", epsilon=0.6)
    assert owner.step("dp.budget", dataset="breast_cancer")["spent_epsilon"] == pytest.approx(0.5)


def test_the_ledger_survives_a_restart_and_cannot_be_raised(owner):
    owner.step("dp.load", dataset="breast_cancer", epsilon=1.0, delta=1e-5)
    owner.step("dp.query", dataset="breast_cancer", kind="count", epsilon=0.75)
    owner.restart()
    again = owner.step("dp.load", dataset="breast_cancer", epsilon=100.0, delta=1e-5)
    assert again["budget"]["total_epsilon"] == 1.0
    assert again["budget"]["remaining_epsilon"] == pytest.approx(0.25)


def test_the_data_stays_private_and_unknown_datasets_are_refused(owner):
    loaded = owner.step("dp.load", dataset="digits", epsilon=1.0, delta=0.0)
    with pytest.raises(PermissionError):
        owner.request({"kind": "fetch", "id": loaded["x"]["id"]})
    with pytest.raises(KeyError, match="loads only"):
        owner.step("dp.load", dataset="/etc/passwd", epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="clipping bounds"):
        owner.step("dp.query", dataset="digits", kind="sum", epsilon=0.1)
