"""Convolutional GRU (Ballas et al. 2016), as used by Leinonen et al. (2021) and Harder et al. (2023).

``ConvGRUCell`` updates a hidden state map from an input map with 3x3
convolutions for the reset and update gates and the candidate state.
``ConvGRU`` runs a cell over a sequence ``(B, T, C, H, W)``; fully
convolutional, so it runs on any spatial size and sequence length.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvGRUCell(nn.Module):
    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        cand = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * cand


class ConvGRU(nn.Module):
    """A ConvGRU layer over ``(B, T, C, H, W)``; returns all hidden states ``(B, T, hidden, H, W)``."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.cell = ConvGRUCell(in_channels, hidden_channels, kernel_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        states = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            states.append(h)
        return torch.stack(states, dim=1)
