"""The typed remote-DP API: queries released near the truth, budgets charged by the owner,
mistakes refused on the notebook side with the names the user typed, nothing charged."""

from __future__ import annotations

import pytest
import torch

import ppdl_nb
from ppdl_nb.datasets import load_breast_cancer, load_digits
from ppdl_nb.dp import remote
from ppdl_nb.dp.pate import gnmax_epsilon
from ppdl_nb.dp.remote import DataOwner, Ledger, RemoteDataset, teacher_votes
from ppdl_nb.dp.worker_steps import attach_dataset
from ppdl_nb.workers.transport.virtual import VirtualNetwork


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    return ppdl_nb.VirtualWorker("hospital", network=VirtualNetwork())


@pytest.fixture
def records(hospital) -> RemoteDataset:
    return remote(hospital).load("breast_cancer", epsilon=1000.0, delta=1e-5)


def test_handles_read_well(hospital, records):
    assert repr(remote(hospital)) == "DataOwner(hospital)"
    assert repr(records) == "RemoteDataset('breast_cancer' on hospital, 569 rows x 30 columns)"
    assert isinstance(remote(hospital), DataOwner)


def test_released_statistics_are_near_the_truth_at_large_epsilon(records):
    data = load_breast_cancer()
    true_mean = float(data.x[:, 0].clip(0, 30).double().mean())
    assert records.mean(column=0, bounds=(0, 30), epsilon=200.0) == pytest.approx(
        true_mean, abs=0.05)
    true_sum = float(data.x[:, 0].clip(0, 30).double().sum())
    assert records.sum(0, bounds=(0, 30), epsilon=200.0) == pytest.approx(true_sum, rel=0.01)
    assert records.count(epsilon=200.0) == pytest.approx(569, abs=1)
    label_mean = records.mean(target=True, bounds=(0, 1), epsilon=200.0, delta=1e-6,
                              mechanism="gaussian")
    assert label_mean == pytest.approx(float(data.y.double().mean()), abs=0.05)


def test_each_release_is_charged_to_the_owners_ledger(records):
    records.count(epsilon=0.25)
    records.mean(column=3, bounds=(0, 3000), epsilon=0.5)
    ledger = records.budget()
    assert isinstance(ledger, Ledger)
    assert (ledger.worker, ledger.dataset, ledger.total_epsilon) == (
        "hospital", "breast_cancer", 1000.0)
    assert [what.split(" (")[0] for what, _, _ in ledger.history] == [
        "count of breast_cancer", "mean of breast_cancer[3]"]
    assert ledger.spent_epsilon == pytest.approx(0.75)
    assert ledger.remaining_epsilon == pytest.approx(999.25)


@pytest.mark.parametrize(("call", "error", "names"), [
    (lambda ds: ds.count(eps=0.1), TypeError, "'eps'"),
    (lambda ds: ds.mean(column=0, bound=(0, 30), epsilon=0.1), TypeError, "'bound'"),
    (lambda ds: ds.mean(0, (0, 30), 0.1), TypeError, "positional"),
    (lambda ds: ds.mean(column=0, bounds=(0, 30), epsilon=-1), ValueError, "epsilon must"),
    (lambda ds: ds.mean(column=0, bounds=(0, 30), epsilon="1"), TypeError, "epsilon must"),
    (lambda ds: ds.mean(column=0, bounds=(30, 0), epsilon=0.1), ValueError, "lower < upper"),
    (lambda ds: ds.mean(column=0, bounds=30, epsilon=0.1), TypeError, "bounds must be a pair"),
    (lambda ds: ds.mean(bounds=(0, 1), epsilon=0.1), ValueError, "column=N"),
    (lambda ds: ds.sum(column=30, bounds=(0, 1), epsilon=0.1), ValueError, "30 columns"),
    (lambda ds: ds.sum(column=1.5, bounds=(0, 1), epsilon=0.1), TypeError, "column must"),
    (lambda ds: ds.count(epsilon=0.1, delta=1.5), ValueError, "delta must"),
    (lambda ds: ds.count(epsilon=0.1, mechanism="magic"), ValueError, "mechanism must"),
    (lambda ds: ds.count(epsilon=0.1, mechanism="gaussian"), ValueError, "needs delta > 0"),
    (lambda ds: ds.fit(torch.nn.Linear(30, 2), delta=1e-5, max_grad_norm=1.0, epochs=1,
                       batch_size=32), ValueError, "exactly one of noise_multiplier"),
    (lambda ds: ds.fit(torch.nn.Linear(30, 2), epsilon=1.0, delta=1e-5, max_grad_norm=1.0,
                       epochs=0, batch_size=32), ValueError, "epochs must"),
    (lambda ds: ds.fit(torch.nn.Linear(30, 2), epsilon=1.0, delta=1e-5, clip=1.0,
                       epochs=1, batch_size=32), TypeError, "'clip'"),
])
def test_mistakes_are_refused_here_with_the_names_typed_and_cost_nothing(
        records, call, error, names):
    with pytest.raises(error, match=names):
        call(records)
    assert records.budget().history == ()


def test_loading_refuses_unknown_datasets_and_bad_budgets(hospital):
    owner = remote(hospital)
    with pytest.raises(ValueError, match="unknown dataset '/etc/passwd'"):
        owner.load("/etc/passwd", epsilon=1.0, delta=0.0)
    with pytest.raises(TypeError, match="positional"):
        owner.load("digits", 1.0, 1e-5)
    with pytest.raises(ValueError, match="epsilon must"):
        owner.load("digits", epsilon=0.0, delta=1e-5)
    assert owner.budgets() == {}
    with pytest.raises(TypeError, match="worker connection"):
        remote("hospital")


def test_over_budget_is_refused_by_the_owner_and_charges_nothing(hospital):
    ds = remote(hospital).load("breast_cancer", epsilon=1.0, delta=1e-5)
    ds.count(epsilon=0.5)
    with pytest.raises(PermissionError, match="only \\(epsilon=0.5"):
        ds.mean(column=0, bounds=(0, 30), epsilon=0.6)
    assert ds.budget().spent_epsilon == pytest.approx(0.5)


def test_budgets_and_dataset_handles_on_one_owner(hospital):
    owner = remote(hospital)
    owner.load("digits", epsilon=2.0, delta=1e-5).count(epsilon=0.5)
    owner.load("breast_cancer", epsilon=1.0, delta=1e-5)
    every = owner.budgets()
    assert list(every) == ["breast_cancer", "digits"]
    assert every["digits"] == owner.dataset("digits").budget()
    assert every["digits"].remaining_epsilon == pytest.approx(1.5)
    with pytest.raises(KeyError, match="holds no dataset 'mnist_5k'"):
        owner.dataset("mnist_5k")


def test_fit_trains_on_the_owner_and_the_budget_pays_first(hospital):
    ds = remote(hospital).load("breast_cancer", epsilon=1.0, delta=1e-5)
    model = torch.nn.Linear(30, 2)
    run = ds.fit(model, epsilon=0.6, delta=1e-5, max_grad_norm=1.0, epochs=2, batch_size=64)
    assert run.epsilon <= 0.6 + 1e-9 and len(run.history) == 2
    assert run.model(torch.randn(3, 30)).shape == (3, 2)  # the trained weights came back
    assert not torch.equal(run.model.state_dict()["weight"], model.weight)
    assert ds.budget().remaining_epsilon == pytest.approx(0.4)
    with pytest.raises(PermissionError, match="DP-SGD on breast_cancer"):
        ds.fit(model, noise_multiplier=0.5, delta=1e-5, max_grad_norm=1.0, epochs=5,
               batch_size=64)
    assert ds.budget().remaining_epsilon == pytest.approx(0.4)


def test_teacher_votes_from_several_owners(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    x, y = load_digits()
    net = VirtualNetwork()
    cost = gnmax_epsilon(queries=100, noise_std=2.0, delta=1e-5)
    teachers = []
    for i in range(2):
        w = ppdl_nb.VirtualWorker(f"remote_teacher{i}", network=net)
        attach_dataset(w.owner, "part", x[:400][i::2], y[:400][i::2], epsilon=cost * 1.5,
                       delta=1e-5)
        teachers.append(remote(w).dataset("part"))
    public = x[600:700]
    labels = teacher_votes(teachers, torch.nn.Linear(64, 10), public, n_classes=10, noise_std=2.0,
                           delta=1e-5, epochs=10, batch_size=32, lr=0.1, seed=0)
    assert labels.shape == (2, 100) and labels.dtype == torch.int64
    assert (labels[0] == y[600:700]).float().mean() > 0.6
    assert all(t.budget().spent_epsilon == pytest.approx(cost) for t in teachers)
    with pytest.raises(PermissionError, match="PATE votes"):
        teachers[0].teacher_votes(torch.nn.Linear(64, 10), public, n_classes=10, noise_std=2.0,
                                  delta=1e-5, epochs=1, batch_size=32, lr=0.1)
    with pytest.raises(TypeError, match="'noise'"):
        teachers[0].teacher_votes(torch.nn.Linear(64, 10), public, n_classes=10, noise=2.0,
                                  delta=1e-5, epochs=1, batch_size=32, lr=0.1)
