"""The op-by-op teaching path gives the same model as plain torch, at a cost in messages."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from fl_helpers import data, model

from ppdl_nb.fl import FederatedDataset
from ppdl_nb.fl.by_pointers import train_by_pointers
from ppdl_nb.fl.local import flat_weights


def _plain(start, parts, *, lr, batch_size):
    total, rows = torch.zeros_like(flat_weights(start)), 0
    for x, y in parts:
        m = copy.deepcopy(start)
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        for i in range(0, len(x), batch_size):
            opt.zero_grad()
            F.cross_entropy(m(x[i:i + batch_size]), y[i:i + batch_size]).backward()
            opt.step()
        total += (flat_weights(m) - flat_weights(start)) * len(x)
        rows += len(x)
    return flat_weights(start) + total / rows


def test_training_by_pointers_matches_plain_torch(trio):
    x, y = data(90)
    fed = FederatedDataset.from_tensors(x, y, trio, seed=2, private=False, test=(x, y))
    parts = [(c.x.get(), c.y.get()) for c in fed.clients]
    fed = FederatedDataset.from_tensors(x, y, trio, seed=2, private=False, test=(x, y))
    start = model()
    run = train_by_pointers(start, fed, rounds=1, batch_size=16, lr=0.1)
    torch.testing.assert_close(flat_weights(run.model), _plain(start, parts, lr=0.1,
                                                               batch_size=16), atol=1e-6, rtol=0)
    batches = sum(-(-c.rows // 16) for c in fed.clients)
    assert run.history.last["messages"] >= 5 * batches  # forward, loss, backward, step, get


def test_private_data_is_refused_with_the_fast_path_named(trio):
    x, y = data(30)
    fed = FederatedDataset.from_tensors(x, y, trio[:1])
    with pytest.raises(PermissionError, match="fit_federated"):
        train_by_pointers(model(), fed)
