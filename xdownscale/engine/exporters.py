"""The module that exporters trace (ONNX, TorchScript, torch.export); see :mod:`xdownscale.export`."""
from __future__ import annotations

import torch
from torch import nn


class ExportedNet(nn.Module):
    """A :class:`DownscalingNet` with all three inputs positional (what exporters trace)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, weights: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.net(x, weights, coarse)
