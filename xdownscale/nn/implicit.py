"""Implicit neural representation decoder (LIIF) with scale modulation and attention fusion.

A convolutional encoder turns the coarse field into one latent code per coarse
cell. The decoder predicts the value at any continuous location from

* the latent codes of the 4 coarse cells around the query (local ensembling,
  Chen et al. 2021): each code gives a prediction and the four are blended with
  the area of the rectangle spanned by the query and the *opposite* code;
* the query's offset from each code's cell centre and the query's cell size
  (both in coarse-cell units, so the decoder is free of the grid's units);
* a scale modulator (Li et al., Computer Engineering 2026): the latent codes are
  rescaled and shifted by an MLP of the log cell size, so one network adapts its
  features to x1.5 and to x8;
* attention fusion of two features per code: a *linear* one, first order in the
  coordinate difference (``a + B dy + C dx``, a learned local Taylor expansion),
  and a *nonlinear* one, an MLP over the unfolded 3x3 neighbourhood of codes.

Coordinates are normalised to [-1, 1] over the coarse array, with cell centres at
``-1 + (2 i + 1) / n`` (``align_corners=False``), ordered (y, x).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResidualBlock, conv3x3, zero_last

_EPS = 1e-6


class ConvEncoder(nn.Module):
    """EDSR-style residual body at the coarse resolution (``espcn`` without the upsampling)."""

    def __init__(self, in_channels: int = 1, width: int = 32, n_blocks: int = 4):
        super().__init__()
        self.head = conv3x3(in_channels, width)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)], conv3x3(width, width))
        self.receptive_radius = 1 + ResidualBlock.radius * n_blocks + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return h + self.body(h)


class ScaleModulator(nn.Module):
    """FiLM on the latent codes, conditioned on the log cell size (y, x) in coarse cells.

    Starts as the identity (zero last layer), so training at one scale is plain LIIF."""

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * channels))
        zero_last(self.net[-1])

    def forward(self, feat: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """``feat`` (B, C, h, w); ``cell`` (B, 2) cell sizes in coarse cells (1 / scale)."""
        gamma, beta = self.net(torch.log(cell.clamp(min=1e-3))).chunk(2, dim=-1)
        return feat * (1 + gamma[..., None, None]) + beta[..., None, None]


class AttentionFusion(nn.Module):
    """Blend the linear and nonlinear features of one code with softmax weights whose
    query comes from the relative position and cell size."""

    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(4, hidden)
        self.key_linear = nn.Linear(hidden, hidden)
        self.key_nonlinear = nn.Linear(hidden, hidden)
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, linear: torch.Tensor, nonlinear: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        q = self.query(geometry)
        scores = torch.stack([(q * self.key_linear(linear)).sum(-1), (q * self.key_nonlinear(nonlinear)).sum(-1)], -1)
        a = torch.softmax(scores * self.scale, dim=-1)
        return a[..., :1] * linear + a[..., 1:] * nonlinear


class ImplicitDecoder(nn.Module):
    """Value at continuous coordinates from latent codes (see the module docstring).

    Every map that is linear in the codes and independent of the query runs once on the
    coarse grid: the first layer of the neighbourhood MLP over the unfolded 3x3 codes is a
    3x3 convolution, the Taylor coefficients are a 1x1 convolution. Per query only the
    geometry term, the second layer, the fusion and the head remain (~2.4x fewer operations
    than applying the MLP to the unfolded codes of every query, same function)."""

    # coarse cells reached beyond the query's cell: the ensemble neighbour + the 3x3 neighbourhood
    radius = 2

    def __init__(self, channels: int, hidden: int = 64, out_channels: int = 1):
        super().__init__()
        self.channels, self.hidden = channels, hidden
        # linear (coordinate-difference) feature: a + B*dy + C*dx, all linear in the centre code
        self.taylor = nn.Conv2d(channels, 3 * hidden, kernel_size=1)
        # nonlinear (neighbourhood) feature: MLP over the 3x3 codes (first layer = 3x3 conv) + geometry
        self.neighbourhood = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.geometry = nn.Linear(4, hidden, bias=False)
        self.nonlinear = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.fusion = AttentionFusion(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_channels))
        zero_last(self.head[-1])

    def grid_terms(self, feat: torch.Tensor) -> torch.Tensor:
        """Query-independent terms on the coarse grid: (B, 4 * hidden, h, w)."""
        return torch.cat([self.taylor(feat), self.neighbourhood(feat)], dim=1)

    def forward(self, feat: torch.Tensor, coords: torch.Tensor, cell: torch.Tensor,
                terms: torch.Tensor | None = None) -> torch.Tensor:
        """``feat`` (B, C, h, w) latent codes; ``coords`` (B, Q, 2) normalised (y, x);
        ``cell`` (B, Q, 2) query cell sizes in coarse cells; ``terms``: :meth:`grid_terms`
        of ``feat`` if already computed. Returns (B, Q, out_channels)."""
        _, _, h, w = feat.shape
        terms = self.grid_terms(feat) if terms is None else terms
        hid = self.hidden
        half = torch.tensor([1.0 / h, 1.0 / w], dtype=coords.dtype, device=coords.device)
        cells_per_unit = torch.tensor([h / 2.0, w / 2.0], dtype=coords.dtype, device=coords.device)
        preds, areas = [], []
        for vy in (-1, 1):
            for vx in (-1, 1):
                shift = torch.tensor([vy, vx], dtype=coords.dtype, device=coords.device) * half
                probe = (coords + shift + _EPS).clamp(-1 + _EPS, 1 - _EPS)
                code = _sample_nearest(terms, probe)  # (B, Q, 4 * hidden) of the cell holding the probe
                rel = (coords - _cell_centre(probe, h, w)) * cells_per_unit  # offset in coarse cells
                geometry = torch.cat([rel, cell], dim=-1)
                a, by, bx = code[..., :hid], code[..., hid : 2 * hid], code[..., 2 * hid : 3 * hid]
                linear = a + by * rel[..., :1] + bx * rel[..., 1:]
                nonlinear = self.nonlinear(torch.relu(code[..., 3 * hid :] + self.geometry(geometry)))
                preds.append(self.head(self.fusion(linear, nonlinear, geometry)))
                areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
        total = torch.stack(areas).sum(0)
        # each code's weight is the area of the opposite rectangle (bilinear-like blending)
        out = 0
        for pred, area in zip(preds, reversed(areas)):
            out = out + pred * (area / total).unsqueeze(-1)
        return out


def _sample_nearest(grid_values: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Values of the cells containing ``coords`` (B, Q, 2 as y, x): (B, Q, C)."""
    g = coords.flip(-1).unsqueeze(1)  # grid_sample wants (x, y) and a (B, 1, Q, 2) grid
    out = F.grid_sample(grid_values, g, mode="nearest", align_corners=False)
    return out[:, :, 0].permute(0, 2, 1)


def _cell_centre(coords: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Normalised centre of the coarse cell containing each coordinate."""
    size = torch.tensor([h, w], dtype=coords.dtype, device=coords.device)
    index = torch.floor((coords + 1) / 2 * size).clamp(min=0)
    index = torch.minimum(index, size - 1)
    return -1 + (2 * index + 1) / size


def sample_bicubic(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bicubic interpolation of (B, C, h, w) at normalised (B, Q, 2) coordinates: (B, Q, C).

    Equals ``F.interpolate(..., mode="bicubic", align_corners=False)`` at the
    fine cell centres of an integer factor (edges: replicated border)."""
    g = coords.flip(-1).unsqueeze(1)
    out = F.grid_sample(x, g, mode="bicubic", padding_mode="border", align_corners=False)
    return out[:, :, 0].permute(0, 2, 1)
