"""Federated datasets: workers load and keep their clients' rows; the notebook gets counts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from ppdl_nb import datasets  # noqa: E402
from ppdl_nb.fl import FederatedDataset, heterogeneity, partition, public_split  # noqa: E402


@pytest.mark.parametrize("scheme", ["iid", "label", "dirichlet"])
def test_workers_load_their_own_clients_rows(trio, scheme):
    fed = FederatedDataset.load("digits", trio, clients_per_worker=2, scheme=scheme,
                                alpha=0.3, seed=4, test_rows=300)
    data = datasets.load_digits()
    train, test = public_split(len(data.y), 300, seed=4)
    parts = partition(data.y[train], 6, scheme=scheme, alpha=0.3, seed=4)
    assert fed.sizes == [len(p) for p in parts]
    counts = fed.label_counts()
    for c, p in zip(fed.clients, parts, strict=True):
        assert c.labels == torch.bincount(data.y[train][p], minlength=10).tolist()
        assert c.worker.name == trio[c.id % 3].name
    assert counts.sum() == len(train)
    torch.testing.assert_close(fed.test[0], data.x[test])
    with pytest.raises(PermissionError):
        fed.clients[0].x.get()  # private to its worker
    if scheme == "iid":
        assert heterogeneity(counts) < 0.2
    else:
        assert heterogeneity(counts) > 0.3
    assert len(fed.plot().axes) >= 1
    assert "6 clients (2 on" in repr(fed)


def test_from_tensors_sends_each_part_to_its_worker(trio):
    x, y = torch.randn(90, 4), torch.arange(90) % 3
    fed = FederatedDataset.from_tensors(x, y, trio, clients_per_worker=3, seed=1, private=False)
    got = torch.cat([c.x.get() for c in fed.clients])
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, x.tolist()))
    assert [len(cs) for cs in fed.by_worker().values()] == [3, 3, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"clients_per_worker": 0}, "clients_per_worker"),
    ({"scheme": "weird"}, "scheme"),
    ({"test_rows": 10_000}, "test_rows"),
])
def test_bad_requests_are_explained(trio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FederatedDataset.load("digits", trio, **kwargs)


def test_an_unknown_dataset_is_refused_by_the_worker(trio):
    with pytest.raises(KeyError, match="unknown dataset 'secrets'"):
        FederatedDataset.load("secrets", trio)
