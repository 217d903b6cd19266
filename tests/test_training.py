"""The one training vocabulary: names mean one thing, the loop is plain torch's loop."""

from __future__ import annotations

import copy

import pytest
import torch

from ppdl_nb import training
from ppdl_nb.dp.fit import fit_private
from ppdl_nb.fl.local import train_local


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] > 0).long()


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.1)),
])
def test_run_epoch_is_the_plain_torch_loop(name, reference):
    x, y = _data()
    ours, theirs = _model(), _model()
    opt = training.make_optimizer(name, ours.parameters(), lr=0.1)
    total, rows = training.run_epoch(ours, training.batches(
        x, y, batch_size=16, generator=torch.Generator().manual_seed(3)),
        loss="cross_entropy", optimizer=opt)
    ref_opt = reference(theirs.parameters())
    order, ref_total = torch.randperm(48, generator=torch.Generator().manual_seed(3)), 0.0
    for i in range(0, 48, 16):
        idx = order[i:i + 16]
        ref_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(theirs(x[idx]), y[idx])
        loss.backward()
        ref_opt.step()
        ref_total += loss.item() * 16
    assert rows == 48 and total == pytest.approx(ref_total)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_sgd_means_plain_sgd_in_dp_and_fl_alike():
    x, y = _data()
    fl_model, plain = _model(), _model()
    train_local(fl_model, x, y, epochs=1, batch_size=48, lr=0.1, optimizer="sgd",
                generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(plain(x), y).backward()  # one full batch
    opt.step()
    for a, b in zip(fl_model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    run = fit_private(_model(), x, y, noise_multiplier=0.0, delta=1e-3, max_grad_norm=1e6,
                      epochs=1, batch_size=48, optimizer="sgd")
    assert run.history[0]["loss"] > 0  # the name is accepted with the same meaning


def test_registries_refuse_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        training.register_loss("mse")(lambda out, y: out.sum())
    with pytest.raises(ValueError, match="already registered"):
        training.register_optimizer("sgd")(torch.optim.SGD)
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'; choose one of"):
        training.make_optimizer("lbfgs", _model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="unknown loss"):
        training.loss_function("hinge")


def test_one_mse_for_one_column_outputs():
    out, y = torch.randn(6, 1), torch.randn(6)
    expected = torch.nn.functional.mse_loss(out.squeeze(-1), y)
    torch.testing.assert_close(training.LOSSES["mse"](out, y), expected)


def test_evaluate_reports_accuracy_only_for_class_labels():
    x, y = _data()
    model = _model()
    record = training.evaluate(model, x, y, "cross_entropy")
    out = model(x)
    assert record["accuracy"] == pytest.approx(float((out.argmax(1) == y).float().mean()))
    regression = training.evaluate(torch.nn.Linear(5, 1), x, y.float(), "mse")
    assert set(regression) == {"test_loss"}
    model.train(False)
    training.evaluate(model, x, y, "cross_entropy")
    assert not model.training  # the mode it had is kept


def test_empty_batches_are_skipped_and_fedprox_penalty_is_optimised_not_reported():
    x, y = _data()
    model = _model()
    opt = training.make_optimizer("sgd", model.parameters(), lr=0.1)
    data = [(x[:0], y[:0]), (x, y)]
    base = copy.deepcopy(model)
    total, rows = training.run_epoch(model, data, loss="cross_entropy", optimizer=opt,
                                     penalty=lambda: torch.tensor(100.0))
    assert rows == 48
    assert total / rows == pytest.approx(
        torch.nn.functional.cross_entropy(base(x), y).item(), rel=1e-5)


def test_training_follows_the_model_device():
    model = _model()
    assert training.device_of(model) == torch.device("cpu")
    assert training.device_of(torch.nn.ReLU()) == torch.device("cpu")
    if torch.cuda.is_available():
        x, y = _data()
        model = model.cuda()
        opt = training.make_optimizer("sgd", model.parameters(), lr=0.1)
        training.run_epoch(model, training.batches(x, y, batch_size=16), loss="cross_entropy",
                           optimizer=opt)  # CPU data moves to the model's device
        assert training.evaluate(model, x, y, "cross_entropy")["accuracy"] >= 0
