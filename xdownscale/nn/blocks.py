"""Small building blocks shared by the models."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (EDSR style, no batch norm)."""

    radius = 2  # two 3x3 convolutions

    def __init__(self, width: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(width, width)
        self.conv2 = conv3x3(width, width)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


def zero_last(conv: nn.Module) -> None:
    """Zero the output layer so a residual body starts as the identity on its skip."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def interpolate(x, factor: int, mode: str):
    """Upsample by an integer factor with torch's nearest/bilinear/bicubic (cell-centred)."""
    if mode == "nearest":
        return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown interpolation {mode!r}; use 'nearest', 'bilinear' or 'bicubic'")
    return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=False)


INTERP_RADIUS = {None: 0, "nearest": 0, "bilinear": 1, "bicubic": 2}
