from __future__ import annotations

import json

import pytest
import torch

from ppdl_nb.dp import fixed_seed
from ppdl_nb.dp.budget import PrivacyBudget
from ppdl_nb.dp.queries import dp_count, dp_mean, dp_sum


def test_refusal_says_what_is_left():
    b = PrivacyBudget(epsilon=1.0, delta=1e-5)
    b.charge(0.75, 0.0, "first")
    with pytest.raises(PermissionError, match="0.25") as err:
        b.charge(0.5, 0.0, "second")
    assert "second" in str(err.value)
    assert [c.what for c in b.history] == ["first"]
    b.charge(0.25, 1e-5, "exact fit")
    assert b.remaining_epsilon == 0 and b.remaining_delta == 0


def test_persisted_and_reopened(tmp_path):
    path = tmp_path / "alice" / "budget.json"
    b = PrivacyBudget(epsilon=2.0, delta=1e-5, path=path)
    b.charge(0.5, 1e-6, "count")
    b.charge(0.25, 0.0, "mean")
    again = PrivacyBudget(epsilon=2.0, delta=1e-5, path=path)
    assert [(c.what, c.epsilon) for c in again.history] == [("count", 0.5), ("mean", 0.25)]
    assert again.spent_epsilon == pytest.approx(0.75)
    assert json.loads(path.read_text())["total_epsilon"] == 2.0
    assert "count" in again.report() and "0.75" in repr(again)
    with pytest.raises(ValueError, match="fixed"):
        PrivacyBudget(epsilon=5.0, delta=1e-5, path=path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        PrivacyBudget(epsilon=2.0, delta=1e-5, path=path)


def test_queries_charge_and_are_accurate():
    b = PrivacyBudget(epsilon=30.0, delta=1e-5)
    x = torch.linspace(0, 10, 1001)
    with fixed_seed(1):
        assert dp_count(x, epsilon=10.0, budget=b) == pytest.approx(1001, abs=2)
        assert dp_sum(x, lower=0, upper=10, epsilon=10.0, budget=b) == pytest.approx(5005, abs=20)
        assert dp_mean(x, lower=0, upper=10, epsilon=9.0, delta=1e-6, mechanism="gaussian",
                       budget=b) == pytest.approx(5.0, abs=0.1)
    assert [c.what for c in b.history] == ["count", "sum", "mean"]
    assert b.spent_epsilon == pytest.approx(29.0)


def test_refused_query_releases_nothing():
    b = PrivacyBudget(epsilon=0.1, delta=0.0)
    with pytest.raises(PermissionError):
        dp_sum(torch.ones(3), lower=0, upper=1, epsilon=0.5, budget=b)
    assert b.history == []


def test_query_input_errors():
    with pytest.raises(ValueError, match="lower < upper"):
        dp_sum(torch.ones(3), lower=1, upper=0, epsilon=1.0)
    with pytest.raises(ValueError, match="delta"):
        dp_count(torch.ones(3), epsilon=1.0, mechanism="gaussian")
    with pytest.raises(ValueError, match="mechanism"):
        dp_count(torch.ones(3), epsilon=1.0, mechanism="exponential")
