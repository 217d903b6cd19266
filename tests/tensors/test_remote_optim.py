"""Remote optimizers (issue 18, item 9): torch.optim's arithmetic, run on the worker."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ppdl_nb
from ppdl_nb.tensors.optim import SGD, Adam

CASES = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    (Adam, torch.optim.Adam, {"lr": 0.05}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
]


def _model() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))


@pytest.mark.parametrize(("remote_cls", "torch_cls", "options"), CASES)
def test_remote_steps_equal_torch_optim(remote_cls, torch_cls, options):
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    local = _model()
    local_opt = torch_cls(local.parameters(), **options)
    worker = ppdl_nb.VirtualWorker("opt_alice")
    model_ptr = ppdl_nb.send(_model(), worker)
    x_ptr, y_ptr = ppdl_nb.send(x, worker), ppdl_nb.send(y, worker)
    opt = remote_cls(model_ptr.parameters(), **options)
    for _ in range(5):
        local_opt.zero_grad()
        F.mse_loss(local(x), y).backward()
        local_opt.step()
        opt.zero_grad()
        F.mse_loss(model_ptr(x_ptr), y_ptr).backward()
        opt.step()
    trained = model_ptr.get()
    for mine, theirs in zip(trained.parameters(), local.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-5)


def test_the_state_stays_on_the_worker_and_private_data_stays_private():
    worker = ppdl_nb.VirtualWorker("opt_owner")
    model_ptr = ppdl_nb.send(_model(), worker)
    x = ppdl_nb.send(torch.randn(8, 4), worker, private=True)
    y = ppdl_nb.send(torch.randn(8, 1), worker, private=True)
    opt = Adam(model_ptr, lr=0.01)  # a ModulePointer itself is accepted
    F.mse_loss(model_ptr(x), y).backward()
    opt.step()
    state = opt.state[0]
    assert state["m"].location is worker and state["v"].location is worker
    with pytest.raises(PermissionError):  # moments of private gradients are private
        state["m"].get()
    assert repr(opt) == "Adam(4 parameters on opt_owner, lr=0.01)"


def test_mistakes_say_what_to_do():
    with pytest.raises(TypeError, match="for local parameters use torch.optim.SGD"):
        SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    worker = ppdl_nb.VirtualWorker("opt_w")
    params = ppdl_nb.send(torch.nn.Linear(2, 1), worker).parameters()
    with pytest.raises(ValueError, match="lr must be a number >= 0"):
        Adam(params, lr=-1)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0.0, 1.0\)"):
        SGD(params, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)
    other = ppdl_nb.send(torch.nn.Linear(2, 1), ppdl_nb.VirtualWorker("opt_v")).parameters()
    with pytest.raises(ValueError, match="several workers"):
        SGD([*params, *other], lr=0.1)
