"""Shared helpers of the HE tests."""

from __future__ import annotations

import torch


class Square(torch.nn.Module):
    def forward(self, x):
        return x * x


def small_cnn(seed: int = 0) -> torch.nn.Module:
    """TenSEAL's tutorial shape, shrunk: conv 3x3 stride 2 on 8x8, square, dense, square, dense."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, stride=2), Square(), torch.nn.Flatten(),
                               torch.nn.Linear(18, 6), Square(), torch.nn.Linear(6, 3))
