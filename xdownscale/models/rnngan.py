"""Recurrent stochastic GAN for time-evolving fields (after Leinonen, Nerini & Berne 2021).

Generator (registered as ``rnngan``): for a sequence of coarse frames with
``noise_channels`` noise maps per frame, an initial-state network maps the
first frame to the hidden state of a ConvGRU; every frame is encoded, updates
the state, and the state is decoded (residual blocks, sub-pixel upsampling by
any integer factor) to that frame's fine residual. The wrapper
:class:`RecurrentStochasticNet` adds the interpolated coarse frame and applies
the constraint layer to every frame of every member. Fully convolutional and
recurrent: it runs on larger domains and longer sequences than it saw in
training.

Critic (:class:`SequenceDiscriminator`): the patch critic's strided
convolutions on every frame, a ConvGRU over time on their features, and a
patch score per frame, so it judges the temporal evolution too.

Time handling. Training samples are sequences of ``window`` consecutive
frames (trailing windows built by :func:`trailing_windows` from the time
coordinate: gaps split the series, never bridged; the first frames of a
segment repeat the segment's first frame). Prediction gives every time step
``t`` exactly one value: the last output of the window ending at ``t``
(``window`` frames, so the state is warmed up on ``window - 1`` earlier
frames); the noise of a frame depends on its absolute time index, so
overlapping windows see the same noise. Windows are packed as channels, so
the ordinary tiled inference (halos, seeds) serves ensembles.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.multi import MultiPatchDataset
from ..data.patches import PatchDataset
from ..data.windows import segment_ids
from ..errors import DataError
from ..nn.blocks import ResidualBlock, conv3x3, interpolate, zero_last
from ..nn.convgru import ConvGRU, ConvGRUCell
from ._registry import register_model
from .gan import MultiTargetStochasticNet, PatchDiscriminator, StochasticNet


def trailing_windows(times, window: int) -> np.ndarray:
    """``(n_times, window)`` indices of the ``window`` steps ending at each step (last column:
    ``arange(n)``); clipped to the step's contiguous segment (edge frame repeated)."""
    if int(window) < 1:
        raise DataError(f"window must be a positive integer, got {window}")
    n = len(times)
    ids = segment_ids(times) if n > 1 else np.zeros(n, dtype=int)
    starts = np.searchsorted(ids, ids, side="left")  # first step of each step's segment (labels ascend)
    idx = np.arange(n)[:, None] + np.arange(1 - int(window), 1)[None, :]
    return np.maximum(idx, starts[:, None])


def per_frame(weights: torch.Tensor | None, b: int, t: int) -> torch.Tensor | None:
    """Cell weights given per sequence (B, ...) repeated for each of its ``t`` frames (B * t, ...)."""
    if weights is not None and weights.shape[0] == b and b > 1:
        return weights[:, None].expand(b, t, *weights.shape[1:]).flatten(0, 1)
    return weights


@register_model("rnngan", family="stochastic", wrapper="xdownscale.models.rnngan:RecurrentStochasticNet",
                probabilistic=True,
                description="recurrent stochastic GAN (Leinonen et al. 2021): ConvGRU generator and critic over "
                            "sequences, noise per frame; predict(members=N, seed=s)",
                factors="any integer (2, 3, 4, 8, ...)",
                # an update runs the generator over sequences, k times for the content term, and the
                # sequence critic: 300 of them (about its former 20 epochs on WFDE5) rather than gan's 600
                train_defaults={"max_updates": 300})
class RecurrentGenerator(nn.Module):
    """ConvGRU generator body over ``(B, T, C, h, w)`` (a ``(B, C, h, w)`` input is one frame)."""

    def __init__(self, in_channels: int = 1, factor: int = 4, width: int = 32, n_blocks: int = 2,
                 out_channels: int = 1):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.initial = nn.Sequential(conv3x3(in_channels, width), nn.ReLU(inplace=True), conv3x3(width, width),
                                     nn.Tanh())
        self.encoder = nn.Sequential(conv3x3(in_channels, width), nn.ReLU(inplace=True), ResidualBlock(width))
        self.cell = ConvGRUCell(width, width)
        self.decoder = nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)],
                                     conv3x3(width, out_channels * factor * factor), nn.PixelShuffle(factor))
        zero_last(self.decoder[-2])
        self.n_blocks = n_blocks
        self.receptive_radius = self.radius(1)

    def radius(self, frames: int) -> int:
        """Coarse-cell radius of the last output of a ``frames``-long sequence (the state
        widens by 2 cells a step)."""
        return 2 * int(frames) + 4 + 2 * self.n_blocks + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.ndim == 4
        if single:
            x = x[:, None]
        h = self.initial(x[:, 0])
        out = []
        for t in range(x.shape[1]):
            h = self.cell(self.encoder(x[:, t]), h)
            out.append(self.decoder(h))
        y = torch.stack(out, dim=1)
        return y[:, 0] if single else y


class RecurrentStochasticNet(StochasticNet):
    """:class:`StochasticNet` over sequences: ``forward`` takes ``(B, T, C, h, w)`` and returns
    ``(B, T, 1, H, W)``, every frame constrained; a packed window ``(B, window * ..., h, w)``
    (prediction) returns its last frame; a plain ``(B, C, h, w)`` is a one-frame sequence."""

    def __init__(self, model: str, factor: int, in_channels: int = 1, noise_channels: int = 4, window: int = 8,
                 **config):
        config.setdefault("noise_at", 1)  # right after the variable (covariates follow the noise)
        super().__init__(model, factor, in_channels=in_channels, noise_channels=noise_channels, **config)
        if self.noise_at != 1:
            raise DataError("rnngan takes no predictors: the noise goes right after the variable")
        self.window = int(window)

    @property
    def receptive_radius(self) -> int:
        return max(self.body.radius(self.window), super().receptive_radius)

    def sequence(self, x: torch.Tensor, weights=None, coarse=None, noise=None) -> torch.Tensor:
        """(B, T, C[+noise], h, w) -> (B, T, 1, H, W) in physical units, constraint on every frame."""
        x = self.with_noise(x, noise)
        b, t = x.shape[:2]
        residual = self.body(x).flatten(0, 1)
        x0 = x[:, :, :1].flatten(0, 1)
        x_phys = x0 * self.std + self.mean if coarse is None else coarse.flatten(0, 1).to(x.dtype)
        base = None
        if self.skip is not None:
            base = interpolate(x0, self.factor, self.skip) * self.std + self.mean
        weights = per_frame(weights, b, t)
        pre = self.constraint.combine(base, residual, self.mean, self.residual_scale)
        out = self.constraint(pre, x_phys, weights)
        return out.reshape(b, t, *out.shape[1:])

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """Packed prediction input -> (B, window, 1 + noise + covariates, h, w).

        Packed channels: the variable at the target step, the variable at the
        window's earlier steps (oldest first), the noise of every step (oldest
        first), then the static covariates."""
        w, n = self.window, self.noise_channels
        var = torch.cat([x[:, 1:w], x[:, :1]], dim=1)  # (B, w, h, w): oldest first, target last
        noise = x[:, w: w + w * n].unflatten(1, (w, n))
        covs = x[:, w + w * n:][:, None].expand(-1, w, -1, -1, -1)
        return torch.cat([var[:, :, None], noise, covs], dim=2)

    @property
    def packed_channels(self) -> int:
        return self.window * (1 + self.noise_channels) + self.data_channels - 1

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, coarse: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim == 5:
            return self.sequence(x, weights, coarse, noise)
        if self.window > 1 and x.shape[1] == self.packed_channels:
            c = None if coarse is None else coarse[:, None]
            seq = self.unpack(x)
            if c is not None:  # only the target frame's coarse field is given: conserve that one exactly
                c = torch.cat([seq[:, :-1, :1] * self.std + self.mean, c], dim=1)
            return self.sequence(seq, weights, c)[:, -1]
        return super().forward(x, weights, coarse, noise)


class MultiTargetRecurrentNet(MultiTargetStochasticNet):
    """Several targets from one recurrent generator (``fit(model="rnngan", var=[...])``): one noise
    draw per frame shared by every target, so an ensemble member is one joint draw; every target of
    every frame goes through its own constraint layer. Sequences ``(B, T, C, h, w)`` give
    ``(B, T, K, H, W)``; the packed prediction window holds the ``C`` inputs at the target step,
    the ``C`` inputs of each earlier step (oldest first), the noise of every step, the covariates."""

    def __init__(self, model: str, factor: int, in_channels: int, targets: list, inputs: list,
                 noise_channels: int = 4, window: int = 8, **config):
        super().__init__(model, factor, in_channels, targets, inputs, noise_channels=noise_channels, **config)
        self.n_fields, self.window = len(inputs), int(window)
        if self.noise_at != self.n_fields:
            raise DataError("rnngan: the noise goes right after the input fields")

    @property
    def receptive_radius(self) -> int:
        return max(self.body.radius(self.window), super().receptive_radius)

    def sequence(self, x: torch.Tensor, weights=None, coarse=None, noise=None) -> torch.Tensor:
        """(B, T, C[+noise], h, w) -> (B, T, K, H, W) in physical units, constraints on every frame."""
        x = self.with_noise(x, noise)
        b, t = x.shape[:2]
        residual = self.body(x).flatten(0, 1)
        weights = per_frame(weights, b, t)
        out = self.heads(residual, x.flatten(0, 1), None if coarse is None else coarse.flatten(0, 1), weights)
        return out.reshape(b, t, *out.shape[1:])

    @property
    def packed_channels(self) -> int:
        return self.window * (self.n_fields + self.noise_channels) + self.data_channels - self.n_fields

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """Packed prediction input -> (B, window, C + noise + covariates, h, w)."""
        w, n, c = self.window, self.noise_channels, self.n_fields
        fields = torch.cat([x[:, c : c * w].unflatten(1, (w - 1, c)), x[:, None, :c]], dim=1)  # oldest first
        noise = x[:, c * w : c * w + w * n].unflatten(1, (w, n))
        covs = x[:, c * w + w * n :][:, None].expand(-1, w, -1, -1, -1)
        return torch.cat([fields, noise, covs], dim=2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, coarse: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim == 5:
            return self.sequence(x, weights, coarse, noise)
        if self.window > 1 and x.shape[1] == self.packed_channels:
            seq = self.unpack(x)
            c = None
            if coarse is not None:  # only the target step's fields are given: conserve those exactly
                earlier = self.source_fields(seq[:, :-1].flatten(0, 1)).unflatten(0, (seq.shape[0], -1))
                c = torch.cat([earlier, coarse[:, None].to(x.dtype)], dim=1)
            return self.sequence(seq, weights, c)[:, -1]
        return super().forward(x, weights, coarse, noise)


class SequenceDiscriminator(PatchDiscriminator):
    """Patch critic over sequences: per-frame strided convolutions, a ConvGRU over time, a patch
    score map per frame. Inputs (B, T, ...) as the generator's outputs and conditions."""

    def __init__(self, *args, width: int = 32, **kwargs):
        super().__init__(*args, width=width, **kwargs)
        self.gru = ConvGRU(width, width)

    def forward(self, fine: torch.Tensor, cond: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, t = fine.shape[:2]
        h = self.head(self.features(fine.flatten(0, 1), cond.flatten(0, 1), coarse.flatten(0, 1)))
        for down in self.downs:
            if min(h.shape[-2:]) < 4:
                break
            h = down(h)
        h = self.gru(h.unflatten(0, (b, t)))
        return self.tail(h.flatten(0, 1)).unflatten(0, (b, t))


class SequencePatchDataset(PatchDataset):
    """A view of a :class:`PatchDataset` whose items are sequences: the trailing ``window``
    frames (within the dataset's own times) at one random patch location.

    Items: x (T, C, h, w), y (T, 1, H, W), w (1, H, 1), c (T, 1, h, w)."""

    @classmethod
    def from_patches(cls, patches: PatchDataset, time_values, window: int) -> SequencePatchDataset:
        obj = cls.__new__(cls)
        obj.__dict__.update(patches.__dict__)
        own = np.asarray(patches.times)
        idx = trailing_windows(np.asarray(time_values)[own], window) if own.size else np.zeros((0, window), int)
        obj.frames = {int(t): own[row] for t, row in zip(own, idx)}
        obj._pinned = None
        return obj

    def window(self, index: int):
        return self._pinned if self._pinned is not None else super().window(index)

    def __getitem__(self, index: int):
        t, y0, x0 = super().window(index)
        items = []
        for frame in self.frames[t]:
            self._pinned = (int(frame), y0, x0)
            try:
                items.append(super().__getitem__(index))
            finally:
                self._pinned = None
        x, y, w, c = (torch.stack([it[i] for it in items]) for i in range(4))
        return x, y, w[0], c


class MultiSequencePatchDataset(SequencePatchDataset, MultiPatchDataset):
    """:class:`SequencePatchDataset` over a :class:`~xdownscale.data.multi.MultiPatchDataset`: items
    x (T, C, h, w), y (T, K, H, W), w (1, H, 1), c (T, K, h, w)."""
