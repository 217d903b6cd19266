from __future__ import annotations

import torch
from mpc_helpers import data, roundtrip

from ppdl_nb.mpc import simulate as sim


def test_traffic_is_counted_per_round():
    t = sim.Traffic()
    xs, ws = sim.share_float(data((8, 4), 1), 3), sim.share_float(data((4, 2), 2), 3)
    out = sim.matmul(xs, ws, traffic=t)
    assert t.rounds == 2 and t.log == ["matmul", "trunc"]
    # round 1: eps (8x4) and delta (4x2) in one message to each of 2 peers; round 2: 8x2
    assert t.bytes_per_party == 2 * 8 * (32 + 8) + 2 * 8 * 16
    assert t.dealer_bytes == 8 * 16 + 10 * 16  # c correction; r_hi (8 B) and r_msb (2 B)
    assert "2 rounds" in str(t)
    want = roundtrip(data((8, 4), 1)) @ roundtrip(data((4, 2), 2))
    assert (sim.reveal(out) - want).abs().max() < 1e-3


def test_untruncated_products_carry_double_fraction():
    xs = sim.share_float(torch.tensor([1.5]), 2)
    raw = sim.mul(xs, xs, frac_bits=0)
    assert sim.reveal(raw, 32).tolist() == [2.25]
