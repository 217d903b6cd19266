from __future__ import annotations

import pytest
import torch
from mpc_helpers import PARTY_COUNTS, full_range

from ppdl_nb.mpc.prg import PRG, new_seed
from ppdl_nb.mpc.sharing import (
    add,
    add_public,
    mul_public,
    neg,
    pack,
    reconstruct,
    seeded_share,
    share,
    share_from_seeds,
    sub,
    unpack,
    zero_share,
)


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_share_reconstruct(n):
    x = full_range((4, 3), 0)
    shares = share(x, n, PRG())
    assert len(shares) == n and all(s.dtype == torch.int64 for s in shares)
    assert torch.equal(reconstruct(shares), x)


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_linear_ops_are_local(n):
    g = PRG()
    x, y = full_range((6,), 1), full_range((6,), 2)
    xs, ys = share(x, n, g), share(y, n, g)
    assert torch.equal(reconstruct([add(a, b) for a, b in zip(xs, ys, strict=True)]), x + y)
    assert torch.equal(reconstruct([sub(a, b) for a, b in zip(xs, ys, strict=True)]), x - y)
    assert torch.equal(reconstruct([neg(a) for a in xs]), -x)
    c = torch.tensor(12345, dtype=torch.int64)
    assert torch.equal(reconstruct([add_public(i, s, c) for i, s in enumerate(xs)]), x + c)
    assert torch.equal(reconstruct([mul_public(s, -7) for s in xs]), x * -7)
    # a public constant that broadcasts: every party's share gets the result's shape
    row = torch.arange(6, dtype=torch.int64)
    outs = [add_public(i, s.reshape(6, 1), row) for i, s in enumerate(xs)]
    assert all(o.shape == (6, 6) for o in outs)


def test_public_constants_must_be_encoded():
    s = share(torch.zeros(3, dtype=torch.int64), 2, PRG())
    with pytest.raises(TypeError, match="encode"):
        add_public(0, s[0], torch.tensor([0.5]))
    with pytest.raises(TypeError, match="encode"):
        mul_public(s[0], 0.5)


def test_share_refuses_non_crypto_generators_and_bad_counts():
    x = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(TypeError, match="PRG"):
        share(x, 2, torch.Generator())
    with pytest.raises(ValueError, match="n_parties >= 2"):
        share(x, 1, PRG())
    with pytest.raises(TypeError, match="int64"):
        share(torch.zeros(2), 2, PRG())


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_a_single_share_is_independent_of_the_secret(n):
    # The view of party 0 for secret 0 and for secret 2^63-1: each bit balanced either way.
    counts = []
    for secret in (0, 2**63 - 1):
        x = torch.full((50_000,), secret, dtype=torch.int64)
        shares = share(x, n, PRG())
        for view in (shares[0], shares[-1]):
            counts.append([int(((view >> b) & 1).sum()) for b in (0, 31, 62, 63)])
    for row in counts:
        for ones in row:
            assert abs(ones - 25_000) < 700  # ~6 sigma


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_zero_sharing_from_pairwise_seeds(n):
    seeds = {(i, j): new_seed() for i in range(n) for j in range(i + 1, n)}
    zs = []
    for i in range(n):
        mine = {j: seeds[min(i, j), max(i, j)] for j in range(n) if j != i}
        zs.append(zero_share(i, mine, b"round-1", (3, 2)))
    assert torch.equal(reconstruct(zs), torch.zeros(3, 2, dtype=torch.int64))
    assert all(bool((z != 0).all()) for z in zs)
    with pytest.raises(ValueError, match="itself"):
        zero_share(0, {0: new_seed()}, b"x", (1,))


def test_pack_unpack_one_message_per_round():
    a, b = full_range((2, 3), 3), full_range((4,), 4)
    flat = pack([a, b])
    assert flat.shape == (10,)
    back = unpack(flat, [a.shape, b.shape])
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    with pytest.raises(ValueError, match="expected 9"):
        unpack(flat, [(9,)])
    assert pack([]).numel() == 0
    with pytest.raises(ValueError):
        reconstruct([])


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_input_sharing_sends_one_tensor(n):
    x = full_range((5, 2), 11)
    seeds = [new_seed() for _ in range(n - 1)]
    last = share_from_seeds(x, seeds, b"input-1")
    shares = [seeded_share(s, b"input-1", x.shape) for s in seeds] + [last]
    assert torch.equal(reconstruct(shares), x)
    assert not torch.equal(seeded_share(seeds[0], b"input-2", x.shape), shares[0])
    with pytest.raises(TypeError, match="label"):
        seeded_share(seeds[0], b"", x.shape)
