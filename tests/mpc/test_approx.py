"""Approximations (exp, reciprocal, inv_sqrt, log, sigmoid, tanh, softmax) against the
accuracy table that docs/MPC_APPROX.md shows, for 2 and 3 parties."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch
from mpc_helpers import roundtrip

from ppdl_nb.mpc import approx, approx_nn, approx_party, approx_table
from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.approx import ApproxConfig
from ppdl_nb.mpc.sim_ops import SimOps, run_simulated

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "MPC_APPROX.md"
REFERENCE = {
    "exp": torch.exp, "reciprocal": torch.reciprocal, "inv_sqrt": torch.rsqrt,
    "log": torch.log, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, -1),
}
GRID = 4001


def _inputs(row: approx_table.Accuracy, seed: int) -> torch.Tensor:
    if row.name != "softmax":
        return torch.linspace(row.lo, row.hi, GRID, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    shape = (GRID // approx_table.SOFTMAX_CLASSES, approx_table.SOFTMAX_CLASSES)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * (row.hi - row.lo) + row.lo
    x[0], x[1, :2] = 0.0, torch.tensor([row.lo, row.hi])  # all equal; the widest spread
    if not row.needs:
        x += torch.rand((shape[0], 1), generator=g, dtype=torch.float64) * 100 - 50
    return x


def measure(row: approx_table.Accuracy, n_parties: int, seed: int = 0):
    """(max abs error, max rel error where |f| >= REL_FLOOR, rounds) of one row."""
    x = _inputs(row, seed)
    ops = SimOps(comparison=bool(row.needs))
    fn = getattr(approx_nn if hasattr(approx_nn, row.name) else approx, row.name)
    ys, traffic = run_simulated(fn, sim.share_float(x, n_parties), ops=ops)
    want = REFERENCE[row.name](roundtrip(x))
    err = (sim.reveal(ys) - want).abs()
    big = want.abs() >= approx_table.REL_FLOOR
    return float(err.max()), float((err[big] / want[big].abs()).max()), traffic.rounds


def test_the_page_shows_the_table():
    assert approx_table.markdown() in DOC.read_text(), (
        "docs/MPC_APPROX.md and ppdl_nb.mpc.approx_table disagree: paste "
        "approx_table.markdown() into the page")


@pytest.mark.parametrize("n_parties", [2, 3])
@pytest.mark.parametrize("row", approx_table.ACCURACY, ids=lambda r: f"{r.label}{r.lo:g}")
def test_errors_and_rounds_are_as_documented(row, n_parties):
    max_abs, max_rel, rounds = measure(row, n_parties, seed=n_parties)
    assert rounds == row.rounds
    assert max_abs <= row.max_abs and max_rel <= row.max_rel, (max_abs, max_rel)
    # and the table is not stale the other way: its bounds are close to what we measure
    # (the relative error hangs on a few inputs near |f| = REL_FLOOR: a wider margin)
    assert max_abs >= row.max_abs / 5 and max_rel >= row.max_rel / 20, (max_abs, max_rel)


def test_fewer_iterations_are_less_accurate():
    x = sim.share_float(torch.tensor([5.0, 50.0]), 2)
    few = ApproxConfig(reciprocal_iterations=4, exp_degree=1)
    ys, traffic = run_simulated(approx.reciprocal, x, few, ops=SimOps(comparison=False))
    assert (sim.reveal(ys) - torch.tensor([0.2, 0.02])).abs().max() > 1e-3
    assert traffic.rounds == 16 + 4 * 4  # CrypTen's exp: 8 squarings


def test_exp_at_the_edges_of_its_domain():
    x = torch.tensor([-256.0, -20.0, 0.0, 20.0], dtype=torch.float64)
    ys, _ = run_simulated(approx.exp, sim.share_float(x, 3))
    got, want = sim.reveal(ys), torch.exp(x)
    assert (got[:3] - want[:3]).abs().max() < 1e-4
    assert abs(got[3] / want[3] - 1) < 1e-3


def test_softmax_along_another_dim_and_shapes():
    x = torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]], dtype=torch.float64)
    ys, _ = run_simulated(approx_nn.softmax, sim.share_float(x, 2), dim=0)
    assert sim.reveal(ys).shape == x.shape
    assert (sim.reveal(ys) - torch.softmax(x, 0)).abs().max() < 1e-4


@pytest.mark.parametrize("bad", [
    {"exp_iterations": 0}, {"exp_degree": 4}, {"exp_max": 25.0}, {"work_bits": 40},
    {"reciprocal_range": (0.0, 1.0)}, {"log_range": (2.0, 1.0)}, {"softmax_spread": -1.0},
    {"reciprocal_iterations": 1.5},
])
def test_config_is_checked(bad):
    with pytest.raises(ValueError):
        ApproxConfig(**bad)


def test_a_range_too_wide_for_exact_truncation_is_refused():
    wide = dataclasses.replace(approx.DEFAULT, reciprocal_range=(1e-9, 1.0))
    with pytest.raises(ValueError, match="range"):
        run_simulated(approx.reciprocal, sim.share_float(torch.tensor([0.5]), 2), wide)


class YieldingOps(SimOps):
    """Ops whose protocol steps yield before they run, as a real party's do."""

    def mul(self, x, y, shift):
        yield ("open", "mul")
        return (yield from super().mul(x, y, shift))

    def square(self, x, shift):
        yield ("open", "square")
        return (yield from super().square(x, shift))

    def truncate(self, x, shift):
        yield ("open", "truncate")
        return (yield from super().truncate(x, shift))


def test_the_same_recipe_runs_with_ops_that_yield():
    xs = sim.share_float(torch.tensor([-1.0, 0.5, 1.8]), 2)
    ops = YieldingOps(comparison=False)
    gen, steps = approx_nn.tanh(ops, xs), 0
    try:
        while True:
            gen.send(None)
            steps += 1
    except StopIteration as stop:
        ys = stop.value
    assert (sim.reveal(ys) - torch.tanh(torch.tensor([-1.0, 0.5, 1.8]))).abs().max() < 1e-4
    assert 0 < steps < ops.traffic.rounds  # one yield per step; a product is 2 rounds
    with pytest.raises(RuntimeError, match="yielded"):
        run_simulated(approx_nn.tanh, xs, ops=YieldingOps(comparison=False))


def test_comparison_is_optional():
    ops = SimOps(comparison=False)
    assert not ops.supports("ge0") and not ops.supports("max")
    with pytest.raises(NotImplementedError, match="comparison=False"):
        next(ops.ge0([torch.zeros(1, dtype=torch.int64)] * 2))
    assert SimOps().supports("ge0") and SimOps().supports("max")


def test_with_comparison_sigmoid_takes_any_sign_and_softmax_any_spread():
    x = torch.tensor([[-60.0, -3.0, 0.0, 0.5, 40.0]], dtype=torch.float64)
    ys, _ = run_simulated(approx_nn.sigmoid, sim.share_float(x, 3))
    assert (sim.reveal(ys) - torch.sigmoid(x)).abs().max() < 1e-4
    ys, _ = run_simulated(approx_nn.softmax, sim.share_float(x, 3))
    assert (sim.reveal(ys) - torch.softmax(x, -1)).abs().max() < 1e-4


# ---- one party's protocol (what workers run) ---------------------------------------------
@pytest.mark.parametrize("n_parties", [2, 3])
@pytest.mark.parametrize("row", approx_table.ACCURACY, ids=lambda r: f"{r.label}{r.lo:g}")
def test_each_party_alone_computes_the_same(row, n_parties):
    x = _inputs(row, seed=5)[:200]
    xs = sim.share_float(x, n_parties)
    params = {"comparison": bool(row.needs)}
    traffic = sim.Traffic()
    ys = sim.run_parties([approx_party.party_op(row.name, i, [xs[i]], params)
                          for i in range(n_parties)], traffic)
    assert traffic.rounds == row.rounds
    err = (sim.reveal(ys) - REFERENCE[row.name](roundtrip(x))).abs()
    assert float(err.max()) <= row.max_abs


def test_the_dealer_requests_are_planned_from_shapes_alone():
    params = {"config": {"reciprocal_iterations": 3}, "comparison": False}
    plan = approx_party.requests("reciprocal", [[4]], params)
    assert [k for k, _ in plan].count("mul") == 2 * 3 + 1  # Newton's 2 products, exp's t^3
    assert all(p.get("shape", p.get("x_shape")) == [4] for _, p in plan)
    seen = []
    xs = sim.share_float(torch.tensor([0.5, 1.0, 7.0, 90.0]), 2)
    sim.run_parties([approx_party._recording(approx_party.party_op(
        "reciprocal", 0, [xs[0]], params), seen),
        approx_party.party_op("reciprocal", 1, [xs[1]], params)])
    assert seen == plan


def test_party_op_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="no approximation"):
        approx_party.party_op("gelu", 0, [torch.zeros(1, dtype=torch.int64)], {})
    with pytest.raises(ValueError, match="one input"):
        approx_party.party_op("exp", 0, [], {})
