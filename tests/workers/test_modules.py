"""Models travel as architecture + weights and are rebuilt from an allowlist."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppdl_nb import ModulePointer, send
from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core.modules import ModelPayloadError, module_from_spec, module_to_spec


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = x.view(x.shape[0], -1)
        return F.log_softmax(self.fc(x) * self.scale, dim=1)


MODELS = {
    "custom": (Net, torch.randn(2, 1, 6, 6)),
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2)),
            torch.randn(4, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_roundtrip_matches_the_original(name):
    make, x = MODELS[name]
    model = make()
    rebuilt = module_from_spec(codec.decode(codec.encode(module_to_spec(model))))
    torch.testing.assert_close(rebuilt(x), model(x))
    assert dict(rebuilt.named_parameters()).keys() == dict(model.named_parameters()).keys()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_module_pointer_call_and_get(alice, name):
    make, x = MODELS[name]
    model = make()
    mp = send(model, alice)
    assert isinstance(mp, ModulePointer)
    torch.testing.assert_close(mp(send(x, alice)).get(), model(x))
    back = mp.get()
    assert type(back) is type(model)  # the user's own class comes back
    torch.testing.assert_close(back(x), model(x))


def _hostile(**node):
    return {"format": 1, "layers": {}, "state": {}, "params": [],
            "nodes": [{"name": "x", "op": "placeholder", "target": "x"},
                      {"name": "y", **node, "args": ({"node": "x"},), "kwargs": {}},
                      {"name": "out", "op": "output", "target": "output",
                       "args": ({"node": "y"},), "kwargs": {}}]}


@pytest.mark.parametrize(
    "spec",
    [
        _hostile(op="call_function", target="builtins.eval"),
        _hostile(op="call_function", target="torch.load"),
        _hostile(op="call_function", target="torch.ops.aten.from_file"),
        _hostile(op="call_method", target="__reduce_ex__"),
        _hostile(op="get_attr", target="__class__.__init__.__globals__"),
        _hostile(op="call_module", target="os"),
        {"format": 1, "nodes": [], "state": {},
         "layers": {"l": {"type": "Pickle", "kwargs": {}}}},
        {"format": "torch.export", "archive": b"PK\x03\x04"},
    ],
)
def test_hostile_model_payloads_are_refused(alice, spec):
    with pytest.raises(ValueError, match="not allowlisted|unknown|private attributes|format"):
        alice.request({"kind": "store_module", "spec": spec})
    assert alice.ping() == "pong"


def test_untraceable_or_unknown_layers_explain_themselves():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ModelPayloadError, match="could not be traced"):
        module_to_spec(Branchy())
    with pytest.raises(ModelPayloadError, match="cannot travel"):
        module_to_spec(nn.Sequential(nn.LSTM(2, 2)))
