"""Class 1, aliasing and side effects: private data must not reach a public object through
storage sharing, in-place ops, ``out=``, autograd or module state.

Each attack mixes the owner's private tensor into something the notebook may still fetch
(a view taken before the in-place op, an ``out=`` target, a public tensor's ``.grad``, a
public model's weights or running statistics), then fetches it.
"""

from __future__ import annotations

import pytest
import torch

import ppdl_nb

from .attacks import SECRET, Ref, attempt, call, contains_secret, private_on


def _fetch(ptr):
    return attempt(ptr.get)


VIEWS = {
    "view": lambda b: b.view(2, 3),
    "reshape": lambda b: b.reshape(2, 3),
    "getitem-slice": lambda b: b[:, :],
    "transpose-twice": lambda b: b.t().t(),
    "flatten-view": lambda b: b.flatten().view(2, 3),
}


@pytest.mark.parametrize("make_view", [
    pytest.param(f, id=name)
    for name, f in VIEWS.items()
])
def test_a_view_of_a_public_tensor_does_not_reveal_a_private_in_place_update(alice, make_view):
    x = private_on(alice)
    b = ppdl_nb.send(torch.zeros(2, 3), alice)
    v = make_view(b)
    b.add_(x)
    assert not contains_secret(_fetch(v)), "the private value came back through a view"


def test_an_in_place_op_on_a_view_does_not_leak_through_its_base(alice):
    x = private_on(alice)
    base = ppdl_nb.send(torch.zeros(6), alice)
    view = base.view(2, 3)
    view.add_(x)
    assert not contains_secret(_fetch(base)), "the private value came back through the base"


def test_out_argument_makes_its_target_private(alice):
    x = private_on(alice)
    target = ppdl_nb.send(torch.zeros(2, 3), alice)
    attempt(lambda: call(alice, "torch.add", Ref(x.id_at_location), 0,
                         out=Ref(target.id_at_location)))
    assert not contains_secret(_fetch(target)), "the private value came back through out="


def test_out_argument_into_a_view_does_not_leak_through_its_base(alice):
    x = private_on(alice)
    base = ppdl_nb.send(torch.zeros(6), alice)
    view = base.view(2, 3)
    attempt(lambda: call(alice, "torch.mul", Ref(x.id_at_location), 1.0,
                         out=Ref(view.id_at_location)))
    assert not contains_secret(_fetch(base)), "the private value came back through the base"


def test_the_gradient_of_a_public_tensor_is_not_public_after_a_private_backward(alice):
    x = private_on(alice)
    w = ppdl_nb.send(torch.ones(2, 3).requires_grad_(), alice)
    torch.mul(w, x).sum().backward()  # d/dw sum(w * x) = x
    assert not contains_secret(_fetch(w.grad)), "the private value came back as w.grad"


def test_a_gradient_accumulated_into_a_public_copy_stays_private(alice):
    x = private_on(alice)
    w = ppdl_nb.send(torch.ones(2, 3).requires_grad_(), alice)
    acc = ppdl_nb.send(torch.zeros(2, 3), alice)
    torch.mul(w, x).sum().backward()
    attempt(lambda: call(alice, "torch.add", Ref(acc.id_at_location), call_grad(alice, w),
                         out=Ref(acc.id_at_location)))
    assert not contains_secret(_fetch(acc)), "the private gradient came back through a copy"


def call_grad(alice, w):
    return Ref(call(alice, "attr", Ref(w.id_at_location), "grad")["id"])


def test_a_public_models_parameter_gradients_stay_private(alice):
    x = private_on(alice)
    model = ppdl_nb.send(torch.nn.Linear(3, 1, bias=False), alice)
    model(x).sum().backward()  # d/dW sum(x @ W.T) = column sums of x
    weight, = model.parameters()
    got = _fetch(weight.grad)
    assert not contains_secret(got, SECRET.sum(0, keepdim=True)), (
        "the private column sums came back as the weight's gradient")


def test_a_public_model_trained_on_private_data_is_not_fetchable(alice):
    x = private_on(alice)
    start = torch.nn.Linear(3, 1, bias=False)
    model = ppdl_nb.send(start, alice)
    model(x).sum().backward()
    params = model.parameters()
    call(alice, "optim.sgd_step", 1.0, *(Ref(p.id_at_location) for p in params))
    got = _fetch(model)
    if isinstance(got, torch.nn.Module):
        moved = start.weight.detach() - got.weight.detach()  # = lr * grad = column sums
        assert not torch.allclose(moved, SECRET.sum(0, keepdim=True)), (
            "the weights moved by exactly the private gradient")
    else:
        assert isinstance(got, PermissionError), got


def test_an_in_place_update_of_a_parameter_does_not_leak_through_the_model(alice):
    x = private_on(alice)
    model = ppdl_nb.send(torch.nn.Linear(3, 2, bias=False), alice)
    weight, = model.parameters()  # a pointer to the model's own weight tensor
    attempt(lambda: call(alice, "Tensor.requires_grad_", Ref(weight.id_at_location), False))
    attempt(lambda: call(alice, "Tensor.zero_", Ref(weight.id_at_location)))
    attempt(lambda: call(alice, "Tensor.add_", Ref(weight.id_at_location),
                         Ref(x.id_at_location)))
    got = _fetch(model)
    assert not contains_secret(got), "the private value came back as the model's weight"


def test_running_statistics_do_not_carry_private_means(alice):
    x = private_on(alice)
    model = ppdl_nb.send(torch.nn.Sequential(torch.nn.BatchNorm1d(3)), alice)
    model(x)
    got = _fetch(model)
    if isinstance(got, torch.nn.Module):
        mean = got[0].running_mean / 0.1  # momentum 0.1 from a zero start
        assert not torch.allclose(mean, SECRET.mean(0), atol=1e-5), (
            "the private column means came back as running statistics")
    else:
        assert isinstance(got, PermissionError), got


def test_sanity_the_private_tensor_itself_is_refused(alice):
    x = private_on(alice)
    with pytest.raises(PermissionError):
        x.get()
    with pytest.raises(PermissionError):
        (x + 1).get()
