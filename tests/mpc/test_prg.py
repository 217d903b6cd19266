from __future__ import annotations

import pytest
import torch

from ppdl_nb.mpc.prg import PRG, SEED_BYTES, fixed_seeds, new_seed

SEED = bytes(range(32))


def test_same_seed_and_label_give_the_same_stream():
    a, b = PRG(SEED, label=b"x"), PRG(SEED, label=b"x")
    assert torch.equal(a.int64((5, 7)), b.int64((5, 7)))
    assert torch.equal(a.int64((3,)), b.int64((3,)))
    assert a.bytes_drawn == b.bytes_drawn == 8 * 38


def test_labels_and_seeds_separate_streams():
    base = PRG(SEED, label=b"x").int64((64,))
    assert not torch.equal(base, PRG(SEED, label=b"y").int64((64,)))
    assert not torch.equal(base, PRG(bytes(32), label=b"x").int64((64,)))


def test_stream_continues_across_calls():
    whole = PRG(SEED).int64((10,))
    g = PRG(SEED)
    assert torch.equal(torch.cat([g.int64((4,)), g.int64((6,))]), whole)


def test_fresh_seeds_differ_and_fixed_seeds_is_reproducible():
    assert new_seed() != new_seed() and len(new_seed()) == SEED_BYTES
    with fixed_seeds(b"test"):
        first = [new_seed(), PRG().int64((4,))]
    with fixed_seeds(b"test"):
        second = [new_seed(), PRG().int64((4,))]
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert new_seed() != first[0]  # outside the hook, randomness is fresh again


def test_output_looks_uniform():
    x = PRG(SEED).int64((200_000,))
    # every bit position balanced within 5 sigma (sigma = sqrt(n)/2 ~ 224)
    for bit in (0, 1, 17, 31, 32, 62, 63):
        ones = int(((x >> bit) & 1).sum())
        assert abs(ones - 100_000) < 1200, bit
    bits = PRG(SEED).bits((10_000,))
    assert set(bits.unique().tolist()) == {0, 1}


def test_bad_seeds_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        PRG(b"short")
    with pytest.raises(TypeError):
        PRG(SEED, label="text")
    with pytest.raises(ValueError):
        PRG(SEED).int64((-1,))
    with pytest.raises(TypeError):
        with fixed_seeds("not bytes"):
            pass
    assert "hidden" in repr(PRG(SEED))
    assert PRG(SEED).int64((0, 3)).shape == (0, 3)
