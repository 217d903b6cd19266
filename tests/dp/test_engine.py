"""make_private, DPOptimizer and PoissonLoader end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ppdl_nb.dp import DPOptimizer, PoissonLoader, PrivateModule, fixed_seed, make_private
from ppdl_nb.dp.engine import make_private_with_epsilon


def _setup(noise=1.0, n=64, batch=16):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    data = TensorDataset(torch.randn(n, 3), torch.randint(0, 2, (n,)))
    return make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(data, batch_size=batch),
        noise_multiplier=noise,
        max_grad_norm=1.0,
    )


def test_step_without_noise_is_clipped_mean():
    module, opt, _ = _setup(noise=0.0)
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    nn.functional.cross_entropy(module(x), y).backward()
    expected = {p: g / opt.expected_batch_size for p, g in module.clipped_grad_sum(1.0).items()}
    opt.privatise_gradients()
    for p, g in expected.items():
        torch.testing.assert_close(p.grad, g)


def test_noise_std_and_fixed_seed_hook():
    module, opt, _ = _setup(noise=3.0)
    model = module.module

    def grads():
        opt.zero_grad()
        module(torch.zeros(0, 3)).sum().backward()  # empty batch: pure noise
        opt.privatise_gradients()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    with fixed_seed(7):
        a = grads()
    with fixed_seed(7):
        b = grads()
    c = grads()
    assert torch.equal(a, b) and not torch.equal(a, c)
    big = torch.cat([grads() for _ in range(200)])
    expected = 3.0 * 1.0 / opt.expected_batch_size
    assert abs(float(big.std()) / expected - 1) < 0.05


def test_training_loop_with_empty_batches_counts_steps():
    module, opt, loader = _setup(n=40, batch=20)
    assert isinstance(loader, PoissonLoader) and len(loader) == 2
    for _ in range(5):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(module(x), y).backward()
            opt.step()
    assert opt.accountant.steps == 10
    assert 0 < opt.epsilon(1e-5) < float("inf")


def test_step_before_backward_raises():
    _, opt, _ = _setup()
    with pytest.raises(RuntimeError, match="backward"):
        opt.step()


def test_optimizer_with_foreign_params_refused():
    pm = PrivateModule(nn.Linear(2, 2))
    stray = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="clipping"):
        DPOptimizer(torch.optim.SGD([stray], lr=0.1), module=pm, noise_multiplier=1.0,
                    max_grad_norm=1.0, expected_batch_size=2, sample_rate=0.5)


def test_lr_scheduler_works_on_dp_optimizer():
    module, opt, _ = _setup()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    module(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    assert opt.original_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_privacy_parameters_are_keyword_only():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError):
        make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), None, 1.0, 1.0)  # type: ignore[misc]


def test_make_private_with_epsilon_meets_target():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    data = TensorDataset(torch.randn(100, 3), torch.randint(0, 2, (100,)))
    module, opt, loader = make_private_with_epsilon(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(data, batch_size=10), target_epsilon=3.0, target_delta=1e-5,
        epochs=2, max_grad_norm=1.0)
    for _ in range(2):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(module(x), y).backward()
            opt.step()
    assert 0.97 * 3.0 <= opt.epsilon(1e-5) <= 3.0
    with pytest.warns(UserWarning, match="not below 1/n"):  # delta 0.05 > 1/100
        make_private_with_epsilon(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=DataLoader(data, batch_size=10), target_epsilon=3.0,
            target_delta=0.05, epochs=2, max_grad_norm=1.0)


class _Pairs(Dataset):
    def __len__(self):
        return 30

    def __getitem__(self, i):
        return torch.full((2,), float(i)), i % 2


def test_poisson_loader_generic_dataset_and_rates():
    loader = PoissonLoader(_Pairs(), sample_rate=0.2, steps=300)
    sizes = []
    for x, y in loader:
        assert x.shape[1:] == (2,) and x.shape[0] == y.shape[0]
        sizes.append(x.shape[0])
    assert 0 in sizes or min(sizes) <= 2  # sizes vary
    assert abs(sum(sizes) / len(sizes) - 6) < 0.6
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonLoader(_Pairs(), sample_rate=0)


def test_dp_sgd_learns_a_separable_task():
    torch.manual_seed(0)
    x = torch.randn(400, 5)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    module, opt, loader = make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=50),
        noise_multiplier=0.8, max_grad_norm=1.0)
    with fixed_seed(1):
        for _ in range(8):
            for xb, yb in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(module(xb), yb).backward()
                opt.step()
    acc = float((model(x).argmax(1) == y).float().mean())
    assert acc > 0.85
    assert 0 < opt.epsilon(1e-5) < 20


@pytest.mark.parametrize("q", [0.02, 0.1, 0.5, 1.0])
def test_poisson_indices_keep_each_example_independently_with_rate_q(q):
    from ppdl_nb.dp.data import poisson_indices

    n, rounds = 40, 4000
    gen = torch.Generator().manual_seed(0)
    counts, sizes = torch.zeros(n), []
    for _ in range(rounds):
        idx = poisson_indices(n, q, gen)
        assert bool((idx[1:] > idx[:-1]).all()) and (len(idx) == 0 or 0 <= idx[0] <= idx[-1] < n)
        counts[idx] += 1
        sizes.append(len(idx))
    sd = (q * (1 - q) / rounds) ** 0.5  # of one example's inclusion frequency
    assert float((counts / rounds - q).abs().max()) <= 5 * sd + 1e-12
    sizes_t = torch.tensor(sizes, dtype=torch.float64)  # Binomial(n, q)
    assert float(sizes_t.var()) == pytest.approx(n * q * (1 - q), abs=0.15 * n * q + 1e-9)


def test_parameters_stay_trainable_and_none_escapes_clipping():
    module, opt, _ = _setup(noise=0.0)
    model = module.module
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    nn.functional.cross_entropy(module(x), y).backward()
    assert all(p.requires_grad for p in model.parameters())  # switched back after forward
    assert all(p.grad is None for p in model.parameters())  # autograd wrote no raw grads
    opt.step()
    # A layer frozen when wrapped and unfrozen later would train on raw gradients: refused.
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    frozen[0].weight.requires_grad_(False)
    module, opt, _ = make_private(module=frozen, optimizer=torch.optim.SGD(frozen.parameters(),
                                 lr=0.1), data_loader=DataLoader(TensorDataset(x, y)),
                                 noise_multiplier=1.0, max_grad_norm=1.0)
    frozen[0].weight.requires_grad_(True)
    nn.functional.cross_entropy(module(x), y).backward()
    with pytest.raises(RuntimeError, match="escaped clipping"):
        opt.step()
