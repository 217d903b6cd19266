"""ppdl_nb.encrypt: private inference of small CNNs, against plain torch.

Virtual workers (2 and 3 parties, fused and round by round), the model owner's worker
sharing its own weights, and one kernel-worker case.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ppdl_nb
from ppdl_nb.tensors.private_model import PrivateModel, encrypt, fold_layers
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.workers.transport.virtual import VirtualNetwork

TOL = 1e-3  # 16 fractional bits (2^-16 ~ 1.5e-5): weights and inputs encoded, each
# product truncated to one ulp, sums over up to 27 terms (measured: ~2.4e-5)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test model only
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(27, 10))
    with torch.no_grad():  # a BatchNorm with statistics worth folding
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model.eval()


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


def workers(n_parties: int, fused: bool):
    net = VirtualNetwork()
    parties = [ppdl_nb.VirtualWorker(f"p{i}", network=net) for i in range(n_parties)]
    dealer = ppdl_nb.VirtualWorker("dealer", network=net)
    session_for(parties, dealer).fused = fused
    return parties, dealer


def check(private: torch.Tensor, plain: torch.Tensor) -> None:
    assert (private - plain.double()).abs().max() < TOL
    assert torch.equal(private.argmax(1), plain.argmax(1))


@pytest.mark.parametrize(("n", "fused"), [(2, False), (3, True)])
def test_cnn_matches_torch(n, fused):
    model, x = cnn(), images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parties, dealer = workers(n, fused)
    pm = encrypt(model, parties=parties, dealer=dealer)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    assert isinstance(pm, PrivateModel) and "Conv2d -> MaxPool2d -> ReLU" in repr(pm)
    out = pm(ppdl_nb.share(x, *parties, dealer=dealer))
    check(out.get(), model(x).detach())
    layers = [s["layer"] for s in pm.last_forward]
    assert layers == ["Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear"]  # ReLU after pool
    rounds = {s["layer"]: s["rounds"] for s in pm.last_forward}
    assert rounds == {"Conv2d": 2, "ReLU": 4, "MaxPool2d": 8, "Flatten": 0, "Linear": 2}
    assert all(s["bytes"] > 0 for s in pm.last_forward if s["rounds"])
    assert all(s["seconds"] >= 0 for s in pm.last_forward)


def test_model_owner_shares_its_weights_and_only_the_data_owner_opens():
    net = VirtualNetwork()
    alice, bob, dave = (ppdl_nb.VirtualWorker(n, network=net) for n in ("alice", "bob", "dave"))
    model, x = cnn(2), images(3, seed=4)
    pm = encrypt(model, parties=(alice, bob), dealer=dave, owner=bob, allow=("alice",))
    assert all(w.child.shares[0].location is alice for ws in pm.weights for w in ws)
    data = ppdl_nb.share(ppdl_nb.send(x, alice, private=True), alice, bob, dealer=dave)
    out = pm(data)
    with pytest.raises(PermissionError):
        out.get()  # the notebook may not open it
    at_alice = out.reveal_to(alice)
    alice.owner.release(at_alice.id_at_location, to="me")  # alice chooses to show us
    check(at_alice.get(), model(x).detach())


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return x + self.fc(x)


class Chain(nn.Module):  # a custom module whose forward is a plain chain
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def test_layers_supported_and_refused():
    assert [type(m).__name__ for m in fold_layers(Chain())] == [
        "Conv2d", "ReLU", "Flatten", "Linear"]
    bn = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    with torch.no_grad():
        bn[1].running_mean.fill_(0.3)
        bn[1].running_var.fill_(2.0)
    x = torch.randn(4, 3)
    torch.testing.assert_close(fold_layers(bn)(x), bn(x))
    for bad, name in [(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), "Sigmoid"),
                      (Residual(), "not a plain chain"),
                      (nn.Sequential(nn.ReLU(), nn.BatchNorm1d(2)), "BatchNorm1d not right"),
                      (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode")]:
        with pytest.raises(TypeError, match=name) as err:
            fold_layers(bad)
        assert "Linear, Conv2d, ReLU" in str(err.value)
    parties, dealer = workers(2, False)
    pm = encrypt(nn.Linear(2, 2), parties=parties, dealer=dealer)
    with pytest.raises(TypeError, match="shared input"):
        pm(torch.ones(1, 2))


def test_avg_pool_and_plot():
    torch.manual_seed(3)  # test model only
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32, 4)).eval()
    parties, dealer = workers(2, True)
    pm = encrypt(model, parties=parties, dealer=dealer)
    x = images(2, seed=5)
    check(pm(ppdl_nb.share(x, *parties, dealer=dealer)).get(), model(x).detach())
    from ppdl_nb.viz.mpc_plots import plot_private_forward

    fig = plot_private_forward(pm.last_forward)
    assert [ax.get_ylabel() for ax in fig.axes] == ["rounds", "bytes sent", "seconds"]


def test_kernel_workers(kernel_trio):
    alice, bob, charlie = kernel_trio
    model, x = cnn(5), images(2, seed=6)
    pm = encrypt(model, parties=(alice, bob), dealer=charlie, owner=bob, allow=("me",))
    out = pm(ppdl_nb.share(x, alice, bob, dealer=charlie))
    check(out.get(), model(x).detach())
    assert sum(s["rounds"] for s in pm.last_forward) == 16
