"""Pointers behave like the tensors they point to: differential tests against torch.

Parametrized over worker kinds through the ``trio`` fixture (virtual and kernel)."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import ppdl_nb
from ppdl_nb import PointerTensor, WorkerMismatchError, send

X = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
W = torch.tensor([[0.5, 1.0], [-1.0, 2.0], [0.25, -0.5]])

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b.abs() + 1),
    "pow": lambda a, b: a.abs() ** 2,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "max": lambda a, b: torch.maximum(a, b),
    "where": lambda a, b: torch.where(a > 0, a, b),
}
UNARY = {
    "neg": lambda a: -a,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "softmax": lambda a: F.softmax(a, dim=1),
    "log_softmax": lambda a: F.log_softmax(a, dim=-1),
    "sum": lambda a: a.sum(),
    "mean0": lambda a: a.mean(dim=0),
    "argmax": lambda a: a.argmax(dim=1),
    "getitem": lambda a: a[1, 1:],
    "getitem_mask": lambda a: a[a > 0],
    "view": lambda a: a.view(3, 2),
    "transpose": lambda a: a.t(),
    "T": lambda a: a.T,
    "reshape": lambda a: torch.reshape(a, (-1,)),
    "abs_exp": lambda a: torch.exp(a.abs() * -1),
    "clamp": lambda a: a.clamp(-1, 1),
    "tanh": torch.tanh,
    "cat": lambda a: torch.cat([a, a], dim=0),
    "stack": lambda a: torch.stack([a, a]),
}


def _check(ptr, expected):
    assert isinstance(ptr, PointerTensor)
    assert ptr.shape == expected.shape and ptr.dtype == expected.dtype  # known locally
    got = ptr.get()
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_match_torch(alice, name):
    y = X.flip(0)
    _check(BINARY[name](send(X, alice), send(y, alice)), BINARY[name](X, y))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_match_torch(alice, name):
    _check(UNARY[name](send(X, alice)), UNARY[name](X))


def test_matmul_linear_and_mixed_local_operands(alice):
    x, w = send(X, alice), send(W, alice)
    _check(x @ w, X @ W)
    _check(torch.matmul(x, w), X @ W)
    _check(F.linear(x, w.t()), F.linear(X, W.t()))
    _check(x * torch.tensor(2.0), X * 2)  # a public local tensor travels with the op
    _check(3 - x, 3 - X)


def test_conv_and_pool(alice):
    img, k = torch.randn(2, 1, 6, 6), torch.randn(3, 1, 3, 3)
    _check(F.max_pool2d(F.conv2d(send(img, alice), send(k, alice)), 2),
           F.max_pool2d(F.conv2d(img, k), 2))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_random_shapes(shape):
    net = ppdl_nb.workers.transport.virtual.VirtualNetwork()
    w = ppdl_nb.VirtualWorker("hypo", network=net)
    a, b = torch.randn(shape), torch.randn(shape)
    _check(send(a, w) * send(b, w) + 1, a * b + 1)
    _check(send(a, w).sum(dim=-1), a.sum(dim=-1))


def test_tuple_results_become_tuples_of_pointers(alice):
    values, idx = torch.max(send(X, alice), dim=1)
    _check(values, X.max(dim=1).values)
    _check(idx, X.max(dim=1).indices)


def test_get_removes_and_copy_keeps(alice):
    x = send(X, alice)
    c = x.copy()
    assert c.id_at_location != x.id_at_location
    torch.testing.assert_close(x.get(), X)
    with pytest.raises(ValueError, match="fetched"):
        x.get()
    torch.testing.assert_close(c.get(), X)


def test_move_goes_worker_to_worker(trio):
    alice, bob, _ = trio
    x = send(X, alice)
    before = alice.bytes_received
    x.move(bob)
    assert x.location.name == "bob"
    assert alice.bytes_received - before < 1000  # the data did not pass through the notebook
    torch.testing.assert_close((x + 1).get(), X + 1)


def test_pointer_to_pointer_and_get_unwinds_one_level(trio):
    alice, bob, _ = trio
    x = send(X, bob)
    xx = x.send(alice)  # me -> alice -> bob
    links = ppdl_nb.chain_of(xx)
    assert [(link.holder, link.target) for link in links] == [("me", "alice"), ("alice", "bob")]
    y = xx + xx  # alice asks bob to compute
    assert [link.target for link in ppdl_nb.chain_of(y)] == ["alice", "bob"]
    inner = y.get()  # unwinds one level: now me -> bob
    assert isinstance(inner, PointerTensor) and inner.location.name == "bob"
    torch.testing.assert_close(inner.get(), X + X)


def test_ops_on_different_workers_name_both(trio):
    alice, bob, _ = trio
    with pytest.raises(WorkerMismatchError, match="alice.*bob"):
        send(X, alice) + send(X, bob)


def test_chain_repr_one_line_per_link(alice):
    x = send(torch.ones(3), alice)
    text = repr(x)
    assert text.startswith(f"PointerTensor me:{x.local_id} -> alice:{x.id_at_location}")
    assert text.endswith("[shape (3,), float32]")


def test_unsupported_functions_are_refused_clearly(alice):
    x = send(X, alice)
    with pytest.raises(TypeError, match="not supported on pointers"):
        torch.fft.fft(x)
    with pytest.raises(TypeError, match="cannot branch"):
        bool(x > 0)


def test_remote_errors_carry_the_workers_traceback(alice):
    with pytest.raises(RuntimeError) as info:
        send(X, alice) @ send(X, alice)  # (2,3) @ (2,3)
    assert info.value.worker == "alice"
    assert "traceback on worker alice" in "".join(getattr(info.value, "__notes__", []))


def test_a_remote_key_error_reads_like_its_message(alice):
    with pytest.raises(KeyError) as info:
        alice.step("dp.budget", dataset="nothing_here")
    assert str(info.value).startswith(
        "[on worker alice] alice holds no dataset 'nothing_here'; load it first (known: ")


def test_remote_autograd(alice):
    w = send(torch.tensor([1.0, 2.0]).requires_grad_(), alice)
    loss = (w * w).sum()
    loss.backward()
    torch.testing.assert_close(w.grad.get(), torch.tensor([2.0, 4.0]))


# ---- privacy -------------------------------------------------------------------------
def test_private_data_is_refused_and_privacy_is_contagious(trio):
    alice, bob, _ = trio
    x = send(X, alice, private=True)
    for attempt in (lambda: x.get(), lambda: (x * 1).get(), lambda: x.copy().get(),
                    lambda: (x.sum() + 0).get(), lambda: (x * 1).move(bob)):
        with pytest.raises(PermissionError, match="private to alice"):
            attempt()
    assert (x * 2).private
    with pytest.raises(PermissionError, match="no one may fetch it, not 'me'. Ask the data "
                                              r"owner to release it \(on alice"):
        x.get()


def test_owner_may_allow_a_requester(trio):
    alice, _, _ = trio
    x = send(X, alice, private=True, allow=("me",))
    torch.testing.assert_close((x * 2).get(), X * 2)


# ---- lifetime ------------------------------------------------------------------------
def test_store_returns_to_baseline_after_10000_pointers(alice):
    gc.collect()  # earlier tests' pointers, on session-scoped kernel workers
    alice.flush()
    baseline = alice.info()["objects"]
    x = send(torch.ones(4), alice)
    for _ in range(10_000):
        y = x + 1  # each request carries the deletes of the pointers dropped before it
        del y
    del x
    gc.collect()
    alice.flush()
    assert alice.info()["objects"] == baseline


def test_an_in_place_op_with_private_input_makes_its_target_private(alice):
    public = ppdl_nb.send(torch.zeros(3), alice)
    secret = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), alice, private=True)
    public.add_(secret)
    with pytest.raises(PermissionError):
        public.get()


def test_pointer_methods_are_declared_and_allowlisted():
    from ppdl_nb.tensors.remote_methods import RemoteMethod, TensorMethods
    from ppdl_nb.workers.core.ops import OPS

    declared = {n for n, v in vars(TensorMethods).items() if isinstance(v, RemoteMethod)}
    assert {"__add__", "__getitem__", "sum", "relu", "view", "add_", "zero_"} <= declared
    assert {f"Tensor.{n}" for n in declared} <= set(OPS)
    assert PointerTensor.sum.__doc__.startswith("Remote ``torch.Tensor.sum``")
    with pytest.raises(TypeError, match="not an allowlisted operation"):
        RemoteMethod().__set_name__(PointerTensor, "numpy")


def test_in_place_methods_return_the_same_pointer(alice):
    x = send(X.clone(), alice)
    assert x.add_(1) is x and x.mul_(2) is x
    torch.testing.assert_close(x.get(), (X + 1) * 2)
    assert len({send(X, alice), send(X, alice)}) == 2  # pointers hash by identity


def test_a_model_comes_back_as_a_new_module_or_into_the_one_given(alice):
    import copy

    from ppdl_nb.tensors.optim import SGD

    torch.manual_seed(0)
    net, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
    before = copy.deepcopy(net)
    expected = copy.deepcopy(net)  # one SGD step on the sum of outputs, locally
    expected(x).sum().backward()
    torch.optim.SGD(expected.parameters(), lr=0.5).step()

    def trained_remotely():
        ptr = ppdl_nb.send(net, alice)
        SGD(ptr.parameters(), lr=0.5).zero_grad()
        ptr(ppdl_nb.send(x, alice)).sum().backward()
        SGD(ptr.parameters(), lr=0.5).step()
        return ptr

    plain = trained_remotely().get()
    assert plain is not net and torch.equal(net.weight, before.weight)  # the sent one kept
    torch.testing.assert_close(plain.weight, expected.weight)
    assert trained_remotely().get(into=net) is net
    torch.testing.assert_close(net.weight, expected.weight)
    with pytest.raises(ValueError, match="does not fit into="):
        ppdl_nb.send(torch.nn.Linear(4, 2), alice).get(into=net)
    with pytest.raises(TypeError, match="into= takes the torch.nn.Module"):
        ppdl_nb.send(net, alice).get(into="net")
