"""The honest-but-curious model, tested: each party's whole view of a run.

alice secret-shares her private tensor with bob and charlie (dealer: dave); the notebook
shares a tensor of its own; they multiply and matmul, compare and take a ReLU (secure
comparison: its openings include XOR-shared bits, packed into bytes). We record every message each
party receives (the notebook included) and what each holds at the end, then check:

* nobody (notebook included) holds two shares of a secret; the notebook holds none;
  the dealer holds no share at all;
* no computing party, nor the notebook, ever sees a Beaver triple component (a, b or c)
  in the clear (recomputed here from the dealer's seeds);
* each party's view is indistinguishable when alice's secret changes: the same messages
  with the same shapes, and ring values that pass a two-sample test.

Routing shares through the notebook, or letting the dealer compute, breaks the first two.
Both ways of running a product are checked: round by round (the notebook starts each
round) and fused (one request per party, all at once, the parties running both
openings themselves; here on virtual workers called from several threads), the latter
also with the dealer's randomness dealt ahead (the offline phase).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.mpc.bits import xor_reconstruct
from ppdl_nb.mpc.comparison import cmp_spec
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.tensors.spdz.state import spdz_state
from ppdl_nb.workers.core import codec
from ppdl_nb.workers.transport.virtual import VirtualNetwork

NAMES = ("alice", "bob", "charlie", "dave")
RINGS = {torch.int64: np.uint64, torch.int32: np.uint32, torch.int16: np.uint16,
         torch.uint8: np.uint8}  # uint8: packed XOR-shared bits (masked openings)
Y = torch.linspace(-3, 3, 64).reshape(8, 8)


def _tensors(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []


def _structure(tree: Any, session: str) -> Any:
    """The view with ring values and random bytes blanked out; all else verbatim."""
    if isinstance(tree, torch.Tensor):
        if tree.dtype in RINGS:  # shares: int64, or int16/int32 for shares mod 2^16/2^32
            # (or words of XOR-shared bits), uint8 for packed bits
            return ("ring", str(tree.dtype), tuple(tree.shape))
        return ("tensor", str(tree.dtype), tree.tolist())
    if isinstance(tree, bytes):
        return ("bytes", len(tree))
    if isinstance(tree, str):
        return tree.replace(session, "SESSION")
    if isinstance(tree, dict):
        return {k: _structure(v, session) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_structure(v, session) for v in tree]
    return tree


def run(secret: torch.Tensor, fused: bool, ahead: bool = False) -> dict[str, Any]:
    net = VirtualNetwork()
    workers = {n: ppdl_nb.VirtualWorker(n, network=net) for n in NAMES}
    views: dict[str, list[Any]] = {n: [] for n in (*NAMES, "me")}
    for name, w in workers.items():
        server = w.owner
        original = server.handle

        def handle(frames, caller, _orig=original, _name=name, _server=server):
            views[_name].append(codec.decode(list(frames), context=_server))
            return _orig(frames, caller)

        server.handle = handle
        original_rt = w._roundtrip

        def roundtrip(frames, timeout, _orig=original_rt, _ctx=w.context):
            reply = _orig(frames, timeout)
            views["me"].append(codec.decode(list(reply), context=_ctx))
            return reply

        w._roundtrip = roundtrip
    alice, bob, charlie, dave = (workers[n] for n in NAMES)
    x_ptr = ppdl_nb.send(secret, alice, private=True)
    views["me"].clear()  # the notebook handing alice her data is set-up, not the protocol
    session_for([bob, charlie], dave).fused = fused
    xs = ppdl_nb.share(x_ptr, bob, charlie, dealer=dave)
    ys = ppdl_nb.share(Y, bob, charlie, dealer=dave)
    if ahead:  # offline phase: the dealer deals before the products run (one dry run)
        xs.child.session.deal_ahead(lambda: [xs * ys, xs @ ys], times=1)
    products = [xs * ys, xs @ ys, xs > ys, xs.relu()]
    session = xs.child.session
    held = {n: [e.obj for e in (w.owner.store.entry(i) for i in w.owner.store.ids())]
            for n, w in workers.items()}
    return {"views": views, "held": held, "xs": xs, "ys": ys, "session": session,
            "workers": workers, "products": products}


def _share_values(shared) -> list[torch.Tensor]:
    return [s.location.owner.store.entry(s.id_at_location).obj for s in shared.child.shares]


def _holds(tensors: list[torch.Tensor], target: torch.Tensor) -> bool:
    return any(t.shape == target.shape and t.dtype == target.dtype and torch.equal(t, target)
               for t in tensors)


def _triples(result: dict[str, Any]) -> list[torch.Tensor]:
    """Every triple component (a, b, c) the dealer made, rebuilt from its seeds."""
    dave = result["workers"]["dave"].owner
    seeds = spdz_state(dave).dealer_session("dave", result["session"].id).seeds
    out = []
    for msg in result["views"]["dave"]:
        if msg.get("name") != "mpc.deal":
            continue
        for label, kind, params in msg["kwargs"]["requests"]:
            corr = mpc.deal(kind, seeds, label, **params)
            parts = [mpc.expand(kind, seeds[i], label, i, len(seeds),
                                corr if i == len(seeds) - 1 else None, **params)
                     for i in range(len(seeds))]
            xor = _xor_shared(kind, params)
            opened = [xor_reconstruct([p[j] for p in parts]) if xor[j] else
                      mpc.reconstruct([p[j] for p in parts]) for j in range(len(parts[0]))]
            if kind == "trunc":  # msb(r) is shared modulo 2^f
                opened[2] &= (1 << params["frac_bits"]) - 1
                assert set(opened[2].unique().tolist()) <= {0, 1}
            out.extend(opened)
    return out


def _xor_shared(kind: str, params: dict[str, Any]) -> list[bool]:
    """Which of a request's values are XOR-shared bit words (a comparison's)."""
    if kind != "cmp":
        return [False] * 8
    bases, derived, _ = cmp_spec(**params)
    return [width > 0 for _, width in (*bases, *derived)]


@pytest.fixture(scope="module", params=[(False, False), (True, False), (True, True)],
                ids=["rounds", "fused", "fused-dealt-ahead"])
def runs(request):
    torch.manual_seed(1)
    fused, ahead = request.param
    first = run(torch.randn(8, 8) * 10, fused, ahead)
    second = run(torch.full((8, 8), 42.0), fused, ahead)
    assert first["session"].fused is fused
    return first, second


def test_nobody_holds_two_shares_and_the_dealer_and_notebook_hold_none(runs):
    result = runs[0]
    secrets = {"x": _share_values(result["xs"]), "y": _share_values(result["ys"])}
    for party in ("me", "bob", "charlie", "dave"):
        seen = [t for v in result["views"][party] for t in _tensors(v)]
        seen += [t for t in result["held"].get(party, []) if isinstance(t, torch.Tensor)]
        for name, shares in secrets.items():
            count = sum(_holds(seen, s) for s in shares)
            limit = 1 if party in ("bob", "charlie") else 0
            assert count <= limit, f"{party} holds {count} shares of {name}"
    assert not any(isinstance(t, torch.Tensor) and t.dtype == torch.int64
                   for t in result["held"]["dave"]), "the dealer holds shares"


def test_no_party_sees_a_triple_in_the_clear(runs):
    result = runs[0]
    triples = _triples(result)
    assert len(triples) >= 6  # mul and matmul: a, b, c each (plus truncation masks)
    for party in ("me", "bob", "charlie"):
        seen = [t for v in result["views"][party] for t in _tensors(v)]
        seen += [t for t in result["held"].get(party, []) if isinstance(t, torch.Tensor)]
        for component in triples:
            assert not _holds(seen, component), f"{party} saw a triple component in clear"


def test_views_are_indistinguishable_for_two_secrets(runs):
    first, second = runs
    bits = [t for v in first["views"]["bob"] for t in _tensors(v) if t.dtype == torch.uint8]
    assert sum(t.numel() for t in bits) >= 2 * (224 + 48 + 8)  # two comparisons' openings
    for party in ("me", "alice", "bob", "charlie", "dave"):
        if party == "alice":
            continue  # alice is the owner of the secret: her view contains it
        # the same messages (fused: threads may deliver them in another order)
        s1 = sorted(map(repr, _structure(first["views"][party], first["session"].id)))
        s2 = sorted(map(repr, _structure(second["views"][party], second["session"].id)))
        assert s1 == s2, f"{party}'s view differs in more than random values"
        ring1 = _ring_sample(first["views"][party])
        ring2 = _ring_sample(second["views"][party])
        assert len(ring1) == len(ring2)
        if len(ring1) < 50:  # the notebook and the dealer receive (almost) no ring values
            continue
        assert stats.ks_2samp(ring1, ring2).pvalue > 1e-4, party
        assert stats.kstest(ring1, "uniform").pvalue > 1e-4, party


def _ring_sample(view: list[Any]) -> np.ndarray:
    """Every ring value a party received, as a fraction of its ring's size (uniform on
    [0, 1) when it is a share or a masked value)."""
    values = [t.reshape(-1).numpy().view(RINGS[t.dtype]).astype(np.float64)
              / 2.0 ** (8 * t.element_size())
              for v in view for t in _tensors(v) if t.dtype in RINGS]
    if not values:
        return np.array([])
    return np.concatenate(values)


def test_sanity_the_protocol_computed_the_right_thing(runs):
    # the owner can open the results (privacy is contagious: only alice may)
    result = runs[0]
    for p in result["products"]:
        with pytest.raises(PermissionError):
            p.get()
    assert re.fullmatch(r"[0-9a-f]{16}", result["session"].id)
