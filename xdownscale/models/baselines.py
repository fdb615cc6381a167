"""Interpolation baselines, registered as models so they flow through predict/evaluate.

They have no weights: the body returns a zero residual and the network's
``skip`` interpolation is the whole prediction. ``conservative`` is the
first-order conservative remap onto the nested fine grid (each fine cell takes
its coarse cell's value), which conserves every coarse cell's mean exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model


class ZeroResidual(nn.Module):
    """A body with no parameters that returns a zero residual at the fine resolution."""

    receptive_radius = 0

    def __init__(self, in_channels: int = 1, factor: int = 4, out_channels: int = 1, **_):
        super().__init__()
        self.factor, self.out_channels = int(factor), int(out_channels)

    def forward(self, x):
        b, _, h, w = x.shape
        return torch.zeros(b, self.out_channels, h * self.factor, w * self.factor, dtype=x.dtype, device=x.device)


BASELINE_SKIP = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic", "conservative": "nearest"}

for _name, _desc in (
    ("nearest", "nearest-neighbour interpolation (baseline)"),
    ("bilinear", "bilinear interpolation (baseline)"),
    ("bicubic", "bicubic interpolation (baseline)"),
    ("conservative", "first-order conservative remap: piecewise constant, conserves exactly (baseline)"),
):
    register_model(_name, trainable=False, description=_desc)(ZeroResidual)
