from __future__ import annotations

import pytest
from torch import nn

from ppdl_nb.dp import PrivateModule, validate


def test_all_problems_reported_together():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.InstanceNorm2d(2, track_running_stats=True),
        nn.Flatten(), nn.BatchNorm1d(4),
    )
    with pytest.raises(ValueError) as err:
        validate(model)
    msg = str(err.value)
    assert "3 problems" in msg
    assert "BatchNorm2d" in msg and "BatchNorm1d" in msg and "track_running_stats" in msg
    assert "GroupNorm" in msg  # says what to use instead
    with pytest.raises(ValueError):
        PrivateModule(model)


def test_good_layers_pass():
    validate(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.GroupNorm(1, 2),
                           nn.InstanceNorm1d(2)))


def test_weights_tied_across_layers_are_refused():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight  # tied: one parameter, two layers
    with pytest.raises(ValueError, match="tied weights"):
        PrivateModule(nn.Sequential(a, nn.ReLU(), b))
    b.weight.requires_grad_(False)  # frozen shared weights are not clipped: fine
    validate(nn.Sequential(a, nn.ReLU(), b))
