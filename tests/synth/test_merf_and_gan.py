"""DP-MERF and the DP-SGD GAN: their sensitivities, their noise, their ledgers, and
utility above chance on scikit-learn's digits at a large epsilon."""

from __future__ import annotations

import pytest
import torch

from ppdl_nb.datasets import load_digits
from ppdl_nb.dp import epsilon, fixed_seed
from ppdl_nb.synth.dpgan import clipped_noisy_sum, train_gan
from ppdl_nb.synth.merf import RandomFeatures, embedding_sum, release_embedding, train_dp_merf
from ppdl_nb.synth.models import accuracy, fit_classifier


def test_one_record_moves_the_embedding_sum_by_at_most_one():
    feats = RandomFeatures(dim=5, features=64, lengthscale=0.7, seed=1)
    x, y = torch.randn(30, 5), torch.arange(30) % 4
    full = embedding_sum(feats, x, y, classes=4)
    for i in (0, 7, 29):
        keep = torch.arange(30) != i
        moved = (full - embedding_sum(feats, x[keep], y[keep], classes=4)).norm()
        assert float(moved) == pytest.approx(1.0, abs=1e-5)


def test_release_adds_noise_scaled_to_the_adjacency():
    s = torch.zeros(400, 50)
    with fixed_seed(0):
        add = release_embedding(s, noise_multiplier=3.0)
        rep = release_embedding(s, noise_multiplier=3.0, adjacency="replace")
    assert float(add.std()) == pytest.approx(3.0, rel=0.03)
    assert float(rep.std()) == pytest.approx(6.0, rel=0.03)
    with pytest.raises(ValueError, match="adjacency"):
        release_embedding(s, noise_multiplier=1.0, adjacency="teacher")


def test_merf_spends_its_budget_once():
    x, y = torch.rand(60, 4), torch.arange(60) % 3
    res = train_dp_merf(x, y, classes=3, epsilon=1.0, delta=1e-5, features=16,
                        lengthscale=1.0, steps=3, batch_size=12)
    assert res.accountant.steps == 1
    assert res.epsilon == pytest.approx(
        epsilon(noise_multiplier=res.noise_multiplier, sample_rate=1.0, steps=1, delta=1e-5))


def test_clipping_and_noise_of_the_private_discriminator():
    g = torch.tensor([[30.0, 40.0], [0.3, 0.4]])
    assert clipped_noisy_sum(g, max_grad_norm=1.0, noise_multiplier=0.0).tolist() == \
        pytest.approx([0.9, 1.2])
    with fixed_seed(0):
        noisy = torch.stack([clipped_noisy_sum(torch.zeros(1, 2000), max_grad_norm=2.0,
                                               noise_multiplier=1.5)])
    assert float(noisy.std()) == pytest.approx(3.0, rel=0.05)


def test_dp_gan_ledger_is_poisson_subsampled_dp_sgd():
    x, y = torch.rand(64, 4), torch.arange(64) % 2
    res = train_gan(x, y, classes=2, epsilon=5.0, delta=1e-5, steps=4, batch_size=16,
                    hidden=16, z_dim=4)
    assert res.accountant.history == [(res.noise_multiplier, 0.25, 4)]
    assert 0.98 * 5.0 <= res.epsilon <= 5.0


def test_synthetic_digits_train_a_classifier_above_chance():
    data = load_digits()
    order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    res = train_dp_merf(data.x[train], data.y[train], classes=10, epsilon=10.0, delta=1e-5,
                        features=300, lengthscale=2.0, steps=400, batch_size=200, hidden=64)
    xs, ys = res.generator.release(1000, class_weights=res.class_weights)
    acc = accuracy(fit_classifier(xs, ys, classes=10, epochs=15), data.x[test], data.y[test])
    assert acc > 0.5  # chance is 0.1
