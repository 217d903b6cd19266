"""MIA: AUC ~ 0.5 on a model that never saw the data, higher on an overfit one."""

from __future__ import annotations

import torch
from torch import nn

from ppdl_nb.dp import loss_threshold_attack, shadow_model_attack


def _train(x, y, epochs=300):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _noisy_task(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)  # random labels: only memorising fits them
    return x, y


def test_overfit_model_leaks_and_unseen_does_not():
    members = _noisy_task(100, 1)
    non_members = _noisy_task(100, 2)
    overfit = _train(*members)
    never = _train(*_noisy_task(100, 3))
    leak = loss_threshold_attack(overfit, members, non_members)
    blind = loss_threshold_attack(never, members, non_members)
    assert leak.auc > 0.8
    assert abs(blind.auc - 0.5) < 0.12
    assert 0 <= leak.tpr_at_01pct_fpr <= leak.tpr_at_1pct_fpr <= 1
    assert "AUC" in str(leak)


def test_shadow_attack_on_overfit_model():
    members = _noisy_task(100, 1)
    non_members = _noisy_task(100, 2)
    target = _train(*members)
    res = shadow_model_attack(target, members, non_members, shadow_data=_noisy_task(200, 4),
                              train_fn=_train, n_shadows=1)
    assert res.auc > 0.7 and res.n_members == 100
