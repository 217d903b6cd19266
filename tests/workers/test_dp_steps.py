"""The data owner's DP steps, worker side: the ledger survives a restart and cannot be
raised, the data stays private, the worker refuses what it cannot answer, PATE teachers
train where the data is. (The notebook's API over them: tests/dp/test_remote.py.)"""

from __future__ import annotations

import pytest

import ppdl_nb
from ppdl_nb.dp.worker_steps import budget, budgets, load, query, teacher_votes
from ppdl_nb.workers.transport.virtual import VirtualNetwork


@pytest.fixture
def owner(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    return ppdl_nb.VirtualWorker("hospital", network=VirtualNetwork())


def test_the_ledger_survives_a_restart_and_cannot_be_raised(owner):
    load.on(owner, dataset="breast_cancer", epsilon=1.0, delta=1e-5)
    query.on(owner, dataset="breast_cancer", kind="count", epsilon=0.75)
    owner.restart()
    again = load.on(owner, dataset="breast_cancer", epsilon=100.0, delta=1e-5)
    assert again["budget"]["total_epsilon"] == 1.0
    assert again["budget"]["remaining_epsilon"] == pytest.approx(0.25)


def test_the_data_stays_private_and_unknown_datasets_are_refused(owner):
    loaded = load.on(owner, dataset="digits", epsilon=1.0, delta=0.0)
    with pytest.raises(PermissionError):
        owner.request({"kind": "fetch", "id": loaded["x"]["id"]})
    with pytest.raises(KeyError, match="loads only"):
        load.on(owner, dataset="/etc/passwd", epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="clipping bounds"):
        query.on(owner, dataset="digits", kind="sum", epsilon=0.1)
    with pytest.raises(ValueError, match="unknown query 'median'"):
        query.on(owner, dataset="digits", kind="median", epsilon=0.1)
    assert budgets.on(owner)["digits"]["spent_epsilon"] == 0.0


def _digits_owners(n: int, budget: float):
    """n virtual data owners, each holding a disjoint part of the first 600 digits."""
    from ppdl_nb.datasets import load_digits
    from ppdl_nb.dp.worker_steps import attach_dataset

    x, y = load_digits()
    net = VirtualNetwork()
    owners = []
    for i in range(n):
        w = ppdl_nb.VirtualWorker(f"teacher{i}", network=net)
        attach_dataset(w.owner, "digits_part", x[:600][i::n], y[:600][i::n], epsilon=budget,
                       delta=1e-5)
        owners.append(w)
    return owners, x[600:800], y[600:800]


def test_pate_teachers_train_on_their_workers_and_return_only_votes(tmp_path, monkeypatch):
    import torch

    from ppdl_nb.dp.pate import gnmax_epsilon, noisy_max, votes_from_workers

    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    cost = gnmax_epsilon(queries=200, noise_std=2.0, delta=1e-5)
    owners, public_x, public_y = _digits_owners(3, budget=cost * 1.5)
    before = [w.info()["objects"] for w in owners]
    model = torch.nn.Linear(64, 10)
    weights = model.weight.detach().clone()
    votes = votes_from_workers(owners, dataset="digits_part", model=model, public=public_x,
                               n_classes=10, noise_std=2.0, delta=1e-5, epochs=20, batch_size=32,
                               lr=0.1, seed=0)
    assert votes.shape == (200, 10) and (votes.sum(1) == 3).all()  # one vote per teacher
    # Teachers trained on 200 digits each agree with the truth far above chance (10%).
    assert (votes.argmax(1) == public_y).float().mean() > 0.7
    labels = noisy_max(votes, noise_std=2.0)
    assert labels.shape == (200,)
    for w, n_before in zip(owners, before, strict=True):
        ledger = budget.on(w, dataset="digits_part")
        assert ledger["spent_epsilon"] == pytest.approx(cost)
        assert ledger["history"][0][0].startswith("PATE votes on 200 queries")
        assert w.info()["objects"] == n_before  # the teacher and its weights were not kept
    assert torch.equal(model.weight, weights)  # the notebook's model was only described


def test_pate_votes_refused_beyond_the_owners_budget(tmp_path, monkeypatch):
    import torch

    from ppdl_nb.dp.pate import gnmax_epsilon, votes_from_workers

    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    cost = gnmax_epsilon(queries=200, noise_std=2.0, delta=1e-5)
    owners, public_x, _ = _digits_owners(2, budget=cost / 2)
    with pytest.raises(PermissionError, match="PATE votes"):
        votes_from_workers(owners, dataset="digits_part", model=torch.nn.Linear(64, 10),
                           public=public_x, n_classes=10, noise_std=2.0, delta=1e-5, epochs=1,
                           batch_size=32, lr=0.1)
    with pytest.raises(KeyError, match="holds no dataset"):
        teacher_votes.on(owners[0], dataset="nope", spec={}, public=public_x, n_classes=10,
                         noise_std=2.0, delta=1e-5, epochs=1, batch_size=32, lr=0.1)


def test_pate_teacher_with_the_wrong_output_size_costs_nothing(tmp_path, monkeypatch):
    import torch

    from ppdl_nb.dp.pate import votes_from_workers

    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    owners, public_x, _ = _digits_owners(1, budget=1000.0)
    with pytest.raises(ValueError, match="n_classes=5"):
        votes_from_workers(owners, dataset="digits_part", model=torch.nn.Linear(64, 10),
                           public=public_x, n_classes=5, noise_std=2.0, delta=1e-5, epochs=1,
                           batch_size=32, lr=0.1)
    assert budget.on(owners[0], dataset="digits_part")["spent_epsilon"] == 0.0
