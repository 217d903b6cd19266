from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ppdl_nb.dp import fixed_seed, noisy_max, pate_epsilon, train_teachers
from ppdl_nb.dp.pate import (
    gnmax_rdp_data_dependent,
    gnmax_rdp_data_independent,
    teacher_votes,
    vote_histogram,
)


def test_vote_histogram():
    preds = torch.tensor([[0, 1], [0, 2], [1, 2]])  # 3 teachers, 2 queries
    assert vote_histogram(preds, 3).tolist() == [[2, 1, 0], [0, 1, 2]]


@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
def test_noisy_max_picks_clear_winner(mechanism):
    votes = torch.tensor([[90.0, 5.0, 5.0]] * 50)
    with fixed_seed(0):
        assert (noisy_max(votes, noise_std=5.0, mechanism=mechanism) == 0).all()


def test_more_noise_smaller_epsilon():
    votes = torch.tensor([[40.0, 30.0, 30.0], [80.0, 10.0, 10.0]] * 20)
    eps = [pate_epsilon(votes, noise_std=s, delta=1e-5) for s in (5.0, 20.0, 80.0)]
    assert eps[0] > eps[1] > eps[2] > 0
    ind = [pate_epsilon(votes, noise_std=s, delta=1e-5, data_dependent=False) for s in (5.0, 20.0)]
    assert ind[0] > ind[1]


def test_data_dependent_never_worse_and_better_on_consensus():
    orders = np.array([2.0, 10.0, 50.0])
    ind = gnmax_rdp_data_independent(40.0, orders)
    for votes in ([250.0, 0, 0], [100.0, 0, 0], [40.0, 35, 25]):
        dep = gnmax_rdp_data_dependent(np.array(votes), 40.0, orders)
        assert (dep <= ind + 1e-15).all()
    assert (gnmax_rdp_data_dependent(np.array([250.0, 0, 0]), 40.0, orders) < ind / 10).all()


def test_train_teachers_on_disjoint_partitions():
    torch.manual_seed(0)
    x = torch.randn(60, 3)
    y = (x[:, 0] > 0).long()
    parts = [(x[i::3], y[i::3]) for i in range(3)]

    def train(xp, yp):
        m = nn.Linear(3, 2)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(50):
            opt.zero_grad()
            nn.functional.cross_entropy(m(xp), yp).backward()
            opt.step()
        return m

    teachers = train_teachers(parts, train)
    assert len(teachers) == 3
    votes = teacher_votes(teachers, x, 2)
    assert votes.shape == (60, 2) and (votes.sum(1) == 3).all()
    with pytest.raises(ValueError):
        train_teachers([], train)
