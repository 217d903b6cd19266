"""DataLens: disjoint shards, noise inside the aggregation, the generator sees only the
thresholded aggregate, and the ledger composes one Gaussian query per step."""

from __future__ import annotations

import math

import pytest
import torch

from ppdl_nb.dp import TopAgg, epsilon, fixed_seed
from ppdl_nb.synth import datalens
from ppdl_nb.synth.datalens import (
    centroid_gradients,
    centroid_teachers,
    make_shards,
    teacher_gradients,
    train_datalens,
)
from ppdl_nb.synth.models import BasisGenerator, TeacherBank, dct_basis
from ppdl_nb.synth.owners import owner_noise_std, owner_query, secure_sum


def _data(n=120, dim=6, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, dim, generator=g), torch.arange(n) % classes


def test_shards_are_disjoint_and_cover_equal_parts():
    x = torch.arange(23.0).unsqueeze(1)
    xs, ys = make_shards(x, torch.zeros(23).long(), teachers=5)
    seen = xs.flatten().tolist()
    assert xs.shape == (5, 4, 1) and len(seen) == len(set(seen)) == 20
    with pytest.raises(ValueError, match="teacher"):
        make_shards(x[:3], torch.zeros(3).long(), teachers=5)


def test_each_teacher_gradient_depends_on_its_own_discriminator_only():
    bank = TeacherBank(teachers=3, dim=4, classes=2, hidden=5)
    fake, fy = torch.rand(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    g = teacher_gradients(bank, fake, fy)
    with torch.no_grad():
        bank.w1[1].mul_(3.0)
    g2 = teacher_gradients(bank, fake, fy)
    assert g.shape == (3, 24)
    assert torch.equal(g[0], g2[0]) and torch.equal(g[2], g2[2])
    assert not torch.equal(g[1], g2[1])


def test_noise_is_added_inside_the_aggregation():
    grads = torch.ones(10, 2000)  # every teacher votes +1 everywhere
    quiet = TopAgg(k=2000, scale=1e-9, noise_std=1e-6, threshold=0.0, adjacency="teacher")
    loud = TopAgg(k=2000, scale=1e-9, noise_std=1e4, threshold=0.0, adjacency="teacher")
    with fixed_seed(0):
        assert bool((quiet(grads) == 1).all())
        agree = float((loud(grads) == 1).float().mean())
    assert 0.4 < agree < 0.6  # votes of 10 drown in noise of std 10^4


def test_generator_learns_from_the_thresholded_aggregate_only(monkeypatch):
    x, y = _data()
    seen = []
    real_call = TopAgg.__call__

    def silent(self, contributions, **kw):
        out = real_call(self, contributions, **kw)
        seen.append(out)
        return torch.zeros_like(out)  # the aggregate says nothing

    released = []
    real_step = datalens.generator_step

    def spy(opt, fake, direction):
        released.append(direction)
        real_step(opt, fake, direction)

    monkeypatch.setattr(TopAgg, "__call__", silent)
    monkeypatch.setattr(datalens, "generator_step", spy)
    torch.manual_seed(0)
    before = [p.detach().clone() for p in
              datalens.ConditionalGenerator(dim=6, classes=3, z_dim=8, hidden=16).parameters()]
    res = train_datalens(x, y, classes=3, epsilon=10.0, delta=1e-5, teachers=6, steps=4,
                         batch_size=8, k_per_sample=3, z_dim=8, hidden=16, teacher_hidden=4)
    assert len(seen) == len(released) == 4
    assert all(set(s.unique().tolist()) <= {-1.0, 0.0, 1.0} for s in seen)
    assert all(not bool(r.any()) for r in released)
    # teachers trained on the data every step, yet a silent aggregate moves nothing
    after = list(res.generator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_ledger_is_one_teacher_adjacent_gaussian_per_step():
    x, y = _data()
    res = train_datalens(x, y, classes=3, epsilon=2.0, delta=1e-5, teachers=6, steps=5,
                         batch_size=8, k_per_sample=3, z_dim=8, hidden=16, teacher_hidden=4)
    k = 8 * 3
    assert res.aggregator.adjacency == "teacher"
    assert res.aggregator.noise_std == pytest.approx(res.noise_multiplier * 2 * math.sqrt(k))
    assert res.accountant.steps == 5
    assert res.epsilon == pytest.approx(
        epsilon(noise_multiplier=res.noise_multiplier, sample_rate=1.0, steps=5, delta=1e-5))
    assert 0.98 * 2.0 <= res.epsilon <= 2.0


def test_centroid_teachers_read_their_own_shard_only_and_vote_in_a_public_basis():
    x, y = _data(n=60, dim=16)
    xs, ys = make_shards(x, y, teachers=4)
    mu, has = centroid_teachers(xs, ys, classes=3)
    fake, fy = torch.rand(5, 16), torch.tensor([0, 1, 2, 0, 1])
    g = centroid_gradients(mu, has, fake, fy)
    xs2 = xs.clone()
    xs2[2, 0] += 1.0  # one record of shard 2 changes: only teacher 2's gradient moves
    g2 = centroid_gradients(*centroid_teachers(xs2, ys, classes=3), fake, fy)
    assert g.shape == (4, 5 * 16)
    assert all(torch.equal(g[t], g2[t]) for t in (0, 1, 3)) and not torch.equal(g[2], g2[2])
    # the basis is fixed before any data: orthonormal low-frequency DCT atoms
    b = dct_basis(4, 6)
    assert torch.allclose(b.T @ b, torch.eye(6), atol=1e-6)
    assert torch.allclose(b[:, 0], torch.full((16,), 0.25))  # the constant atom first
    # the ledger is unchanged: k = batch x k_per_sample coordinates, 2 sqrt(k) per teacher
    res = train_datalens(x, y, classes=3, epsilon=2.0, delta=1e-5, teachers=4, steps=5,
                         batch_size=8, k_per_sample=2, basis=6, teacher="centroid",
                         z_dim=8, hidden=16)
    assert res.aggregator.k == 16 and res.aggregator.adjacency == "teacher"
    assert res.aggregator.noise_std == pytest.approx(res.noise_multiplier * 2 * math.sqrt(16))
    assert res.accountant.steps == 5 and 0.98 * 2.0 <= res.epsilon <= 2.0
    assert isinstance(res.generator, BasisGenerator)
    xr, yr = res.generator.release(7)
    assert xr.shape == (7, 16) and float(xr.min()) >= 0.0 and float(xr.max()) <= 1.0
    with pytest.raises(ValueError, match="square"):
        train_datalens(torch.rand(60, 6), y, classes=3, epsilon=2.0, delta=1e-5, teachers=4,
                       steps=1, basis=4)
    with pytest.raises(ValueError, match="teacher"):
        train_datalens(x, y, classes=3, epsilon=2.0, delta=1e-5, teachers=4, steps=1,
                       teacher="oracle")


def test_owners_share_the_noise_and_only_the_total_is_opened():
    vals = [torch.tensor([3.0, -1.5]), torch.tensor([0.5, 2.0]), torch.tensor([-1.0, 0.0])]
    assert secure_sum(vals).tolist() == [2.5, 0.5]
    grads = torch.randn(8, 50)
    owner_of = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    agg = TopAgg(k=10, scale=1e-9, noise_std=1e-6, threshold=0.5, adjacency="teacher")
    with fixed_seed(0):
        central = agg(grads)
        spread = owner_query(grads, owner_of, agg)
    assert torch.equal(central, spread)
    # a curious owner knows its share: the total is raised so it still faces z = 1
    assert owner_noise_std(noise_multiplier=1.0, k=10, owners=3) == \
        pytest.approx(2 * math.sqrt(10) * math.sqrt(1.5))
