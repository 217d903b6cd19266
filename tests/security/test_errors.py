"""Class 2, errors as a side channel: whether an op on private inputs fails, the error's
type and its message, and result shapes must not depend on the private values.

Each test runs the same attack against two secrets on fresh workers and compares what
the notebook sees: ("ok", metadata) or ("error", type, message).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ppdl_nb
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.transport.virtual import VirtualNetwork, VirtualWorker

from .attacks import attempt, contains_secret, outcome


def _alice() -> VirtualWorker:
    return VirtualWorker("alice", network=VirtualNetwork())


def _observe(attack, secret: torch.Tensor):
    """What the notebook sees of ``attack(alice, private pointer)`` for one secret."""
    alice = _alice()
    x = ppdl_nb.send(secret, alice, private=True)
    return outcome(lambda: attack(alice, x))


def _meta(ptrs):
    ptrs = ptrs if isinstance(ptrs, tuple) else (ptrs,)
    return [dict(p.meta) for p in ptrs]


ATTACKS = {
    # index a public tensor with an index computed from a private value
    "getitem": (lambda a, x: ppdl_nb.send(torch.arange(5), a)[x].meta,
                torch.tensor([7]), torch.tensor([2])),
    "getitem-derived": (lambda a, x: ppdl_nb.send(torch.arange(5), a)[(x * 3).long()].meta,
                        torch.tensor([3.0]), torch.tensor([1.0])),
    "nll_loss-target": (lambda a, x: F.nll_loss(ppdl_nb.send(torch.zeros(1, 3), a), x).meta,
                        torch.tensor([7]), torch.tensor([1])),
    "one_hot": (lambda a, x: F.one_hot(x, 3).meta, torch.tensor([5]), torch.tensor([1])),
    "embedding": (lambda a, x: F.embedding(x, ppdl_nb.send(torch.zeros(4, 2), a)).meta,
                  torch.tensor([9]), torch.tensor([0])),
}


@pytest.mark.parametrize("name", [
    pytest.param(n) for n in ATTACKS
])
def test_whether_an_op_on_private_inputs_fails_does_not_depend_on_the_secret(name):
    attack, bad, good = ATTACKS[name]
    seen_bad, seen_good = _observe(attack, bad), _observe(attack, good)
    assert seen_bad[:2] == seen_good[:2], (
        f"the notebook tells the secrets apart: {seen_bad[:2]} vs {seen_good[:2]}")
    assert seen_bad == seen_good, "the refusal's message differs with the secret"


@pytest.mark.parametrize("name", [
    pytest.param(n)
    for n in ("getitem", "nll_loss-target")
])
def test_error_messages_carry_no_private_values(name):
    attack, bad, _ = ATTACKS[name]
    alice = _alice()
    x = ppdl_nb.send(bad, alice, private=True)
    got = attempt(lambda: attack(alice, x))
    secret_text = str(int(bad.flatten()[0]))
    if isinstance(got, BaseException):
        message = str(got).split("--- traceback on worker")[0]
        assert f" {secret_text} " not in f" {message} ".replace(",", " "), (
            f"the error message prints the private value {secret_text}: {message!r}")
        traceback = str(got).split("--- traceback on worker")[-1]
        assert f"index {secret_text}" not in traceback and f"Target {secret_text}" not in (
            traceback), "the remote traceback prints the private value"
    assert not contains_secret(got, bad.double())


SHAPE_ATTACKS = {
    "boolean-mask": lambda a, x: _meta(ppdl_nb.send(torch.arange(6.0), a)[x > 0]),
    "where-nonzero": lambda a, x: _meta(torch.where(x > 0)),
    "mask-of-private": lambda a, x: _meta(x[x > 0]),
}


@pytest.mark.parametrize("name", [
    pytest.param(n)
    for n in SHAPE_ATTACKS
])
def test_result_shapes_do_not_depend_on_private_values(name):
    attack = SHAPE_ATTACKS[name]
    one = _observe(attack, torch.tensor([1.0, -1.0, -1.0, -1.0, -1.0, -1.0]))
    five = _observe(attack, torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0]))
    assert one == five, f"the notebook counts private positives: {one} vs {five}"


def test_a_private_index_cannot_be_recovered_by_probing():
    secret = torch.tensor([6])
    alice = _alice()
    x = ppdl_nb.send(secret, alice, private=True)
    found = None
    for size in range(1, 12):  # "is the secret < size?" asked through IndexError
        got = attempt(lambda s=size: ppdl_nb.send(torch.arange(s), alice)[x].meta)
        if not isinstance(got, BaseException):
            found = size - 1
            break
    assert found != int(secret), "probing by error occurrence recovered the private index"


def test_sanity_errors_on_public_inputs_still_explain_themselves():
    alice = _alice()
    p = ppdl_nb.send(torch.arange(5), alice)
    with pytest.raises(IndexError, match="out of bounds"):
        p[ppdl_nb.send(torch.tensor([7]), alice)].get()


def _size_attack(fn, *tail):
    """``fn(public, <private scalar>, *tail)``: a private value where torch wants a size."""
    def attack(a, k):
        p = ppdl_nb.send(torch.arange(6.0), a)
        args = [Ref(p.id_at_location), Ref(k.id_at_location), *tail]
        reply = a.request({"kind": "call", "fn": fn, "args": args, "kwargs": {}})
        return [r["meta"] for r in reply] if isinstance(reply, list) else reply["meta"]
    return attack


def _pad_attack(a, k):
    p = ppdl_nb.send(torch.arange(6.0), a)
    return a.request({"kind": "call", "fn": "F.pad",
                      "args": [Ref(p.id_at_location), [Ref(k.id_at_location), 0]],
                      "kwargs": {}})["meta"]


SIZE_ATTACKS = {  # name: (attack, two private values)
    "repeat": (_size_attack("Tensor.repeat"), (2, 3)),
    "topk": (_size_attack("torch.topk"), (2, 3)),
    "view": (_size_attack("Tensor.view", -1), (2, 3)),
    "chunk": (_size_attack("torch.chunk"), (2, 3)),
    "split": (_size_attack("torch.split"), (2, 3)),
    "pad": (_pad_attack, (2, 3)),
    "flatten-start-dim": (_size_attack("torch.flatten"), (0, 2)),
}


@pytest.mark.parametrize("name", SIZE_ATTACKS)
def test_a_private_value_used_as_a_size_does_not_set_a_shape_or_an_error(name):
    attack, (k1, k2) = SIZE_ATTACKS[name]
    one = _observe(attack, torch.tensor(k1))
    two = _observe(attack, torch.tensor(k2))
    assert one == two, f"the notebook reads the private size: {one} vs {two}"
