"""``convgru``: deterministic ConvGRU downscaling over a window of consecutive time steps.

After Leinonen et al. (2021) and Harder et al. (2023): every frame of the
window is encoded by a 3x3 convolution; an *initial-state network* sees the
whole window (frames stacked as channels) and gives the first hidden state;
a ConvGRU (:mod:`xdownscale.nn.convgru`) runs over the frames; its hidden
state at the target frame goes through residual blocks and a sub-pixel
(PixelShuffle) upsampling by any integer factor to a normalised residual.

:class:`TemporalNet` wraps the body like :class:`~xdownscale.models.network.DownscalingNet`:
bicubic skip of the target frame + residual in physical units, then the
constraint layer against the target frame's coarse field, so every output
frame conserves exactly under a hard constraint. With ``flow_channels > 0``
(model ``flowconvgru``) frames between input times are first synthesised by
deep voxel flow (:mod:`xdownscale.nn.flow`).

Packed input (what the tiled inference and the sequence dataset feed in),
``x`` of shape ``(B, C + 2 + M * C, h, w)`` for ``C`` input variables (``C = 1``
for a single target; several for :mod:`~xdownscale.models.temporal_multi`), normalised:

- channels ``0..C-1``: the target frame's coarse fields (the conserved fields when
  the target is an input time; for a synthesised frame only their NaN mask is used);
- channel ``C``: the phase ``r`` (constant), channel ``C + 1``: the time factor ``tf``
  (constant): the dense window covers positions ``r .. r + window - 1`` on a
  grid of ``tf`` steps per input interval, position ``p`` being input frame
  ``p // tf`` when ``p % tf == 0`` and a synthesised frame otherwise;
- then ``M`` input frames in time order (edge frames repeated), each ``C`` channels;
- then ``S`` static channels (folded fine-grid covariates, :mod:`xdownscale.data.covariates`;
  ``S = 0`` without covariates): the same for every frame, they join each frame of the dense
  window after the voxel flow, so they are never warped in time.

``convgru`` always has ``r = 0``, ``tf = 1`` and ``M = window``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.blocks import INTERP_RADIUS, ResidualBlock, conv3x3, interpolate, zero_last
from ..nn.constraints import make_constraint
from ..nn.convgru import ConvGRU
from ..nn.flow import VoxelFlow
from ._registry import create_model, register_model
from .network import register_normalisation

N_SCHEDULE = 3  # target, phase, time factor (of a single-variable packing; C + 2 for C variables)
POOL = 4  # total pooling of the voxel-flow U-Net


def inputs_needed(window: int, time_factor: int) -> int:
    """``M``: input frames a window of ``window`` dense steps can touch for any phase."""
    last = time_factor - 1 + window - 1  # furthest dense position (largest phase)
    return -(-last // time_factor) + 1


@register_model("convgru", family="temporal", wrapper="xdownscale.models.convgru:TemporalNet",
                description="ConvGRU over a window of consecutive time steps (Leinonen 2021, Harder 2023)",
                factors="any integer (2, 3, 4, 8, ...)")
class ConvGRUBody(nn.Module):
    """Initial-state net + ConvGRU over the window + residual blocks + sub-pixel upsampling."""

    def __init__(self, in_channels: int = 1, factor: int = 4, channels: int = 32, residual_blocks: int = 3,
                 window: int = 3, out_channels: int = 1):
        super().__init__()
        if factor < 1 or window < 1:
            raise ValueError(f"factor and window must be >= 1, got factor={factor}, window={window}")
        self.window, self.target = int(window), int(window) // 2
        self.encode = nn.Sequential(conv3x3(in_channels, channels), nn.ReLU(inplace=True))
        self.initial_state = nn.Sequential(conv3x3(window * channels, channels), nn.ReLU(inplace=True),
                                           conv3x3(channels, channels), nn.Tanh())
        self.gru = ConvGRU(channels, channels)
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(residual_blocks)])
        self.upsample = nn.Sequential(conv3x3(channels, out_channels * factor * factor), nn.PixelShuffle(factor))
        zero_last(self.upsample[0])
        self.receptive_radius = 1 + 2 + self.window + 2 * residual_blocks + 1

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames``: (B, window, C, h, w) normalised; returns the (B, out_channels, h*f, w*f)
        residual of the target (centre) frame."""
        b, w, c, h, wd = frames.shape
        if w != self.window:
            raise ValueError(f"expected a window of {self.window} frames, got {w}")
        enc = self.encode(frames.reshape(b * w, c, h, wd)).reshape(b, w, -1, h, wd)
        h0 = self.initial_state(enc.reshape(b, -1, h, wd))
        states = self.gru(enc, h0)
        hidden = states[:, self.target]
        return self.upsample(hidden + self.blocks(hidden))


class PackedWindow:
    """The packed input (module docstring) unpacked into the dense window of a temporal wrapper
    (``window``, ``target``, ``n_vars``, ``n_static`` and ``flow`` set by it)."""

    window: int
    target: int
    n_vars: int
    n_static: int = 0  # trailing static (covariate) channels of the packed input
    flow: VoxelFlow | None
    model_name: str
    body: nn.Module
    skip: str | None

    @property
    def receptive_radius(self) -> int:
        """Halo in coarse cells. With voxel flow it is a multiple of its U-Net's pooling size (4),
        so tiles whose starts are multiples of 4 pool on the same grid as the whole field."""
        radius = self.body.receptive_radius + INTERP_RADIUS[self.skip]
        if self.flow is None:
            return int(radius)
        return int(math.ceil((radius + self.flow.receptive_radius) / POOL) * POOL)

    def _dense_window(self, real: torch.Tensor, r: int, tf: int) -> torch.Tensor:
        """(B, window, C, h, w) frames at dense positions r..r+window-1 from real (B, M, C, h, w)."""
        frames, cache = [], {}
        for n in range(self.window):
            i, q = divmod(r + n, tf)
            if q == 0:
                frames.append(real[:, i])
                continue
            if self.flow is None:
                raise ValueError(f"model {self.model_name!r} has no temporal interpolation: use time_factor=1")
            if (i, q) not in cache:
                tau = torch.full((real.shape[0],), q / tf, device=real.device, dtype=real.dtype)
                cache[(i, q)] = self.flow(real[:, i], real[:, i + 1], tau)
            frames.append(cache[(i, q)])
        return torch.stack(frames, dim=1)

    def frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense window (B, window, C, h, w) and whether each target is an input time (B,)."""
        c = self.n_vars
        phase = x[:, c, 0, 0].round().long()
        factor = x[:, c + 1, 0, 0].round().long().clamp(min=1)
        real = x[:, c + 2 : x.shape[1] - self.n_static].unflatten(1, (-1, c))
        out = real.new_empty(x.shape[0], self.window, c, *x.shape[-2:])
        keys = torch.stack([phase, factor], dim=1)
        for key in torch.unique(keys, dim=0).tolist():
            sel = ((phase == key[0]) & (factor == key[1])).nonzero().view(-1)
            out[sel] = self._dense_window(real[sel], int(key[0]), int(key[1]))
        is_input = (phase + self.target) % factor == 0
        return out, is_input

    def with_static(self, frames: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The body's input: every frame of the dense window (B, window, C, h, w) followed by the
        packed input's ``n_static`` static channels (B, window, C + S, h, w), unwarped."""
        if not self.n_static:
            return frames
        static = x[:, x.shape[1] - self.n_static :]
        return torch.cat([frames, static.unsqueeze(1).expand(-1, frames.shape[1], -1, -1, -1)], dim=2)


class TemporalNet(PackedWindow, nn.Module):
    """Skip + residual + constraint around a temporal body, optional voxel-flow frame synthesis."""

    def __init__(self, model: str, factor: int, in_channels: int = 1, constraint: str = "none",
                 skip: str | None = "bicubic", mean: float = 0.0, std: float = 1.0,
                 residual_scale: float | None = None, constraint_kwargs: dict | None = None,
                 flow_channels: int = 0, max_flow: float = 2.0, **body_config):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"TemporalNet needs its variable as input channel 0, got in_channels={in_channels}")
        self.model_name, self.factor, self.skip = model, int(factor), skip
        # one variable (several inputs go through temporal_multi.MultiTargetTemporalNet); further
        # channels are static covariates, given to the body with every frame
        self.body = create_model(model, in_channels=int(in_channels), factor=self.factor, **body_config)
        self.window, self.target, self.n_vars = self.body.window, self.body.target, 1
        self.n_static = int(in_channels) - 1
        self.flow = VoxelFlow(1, flow_channels, max_flow) if flow_channels else None
        self.constraint = make_constraint(constraint, self.factor, **(constraint_kwargs or {}))
        register_normalisation(self, mean, std, residual_scale, skip)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                coarse: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: packed (B, 3 + M + S, h, w) normalised input (module docstring); ``weights``: fine
        cell weights or None; ``coarse``: physical coarse field of the target (B, 1, h, w), used
        when the target is an input time. Returns the (B, 1, H, W) target frame, physical units."""
        frames, is_input = self.frames(x)
        target = frames[:, self.target]
        synthesised = target * self.std + self.mean
        if self.constraint.name in ("softmax", "mult"):
            synthesised = synthesised.clamp(min=0)
        if coarse is None:
            coarse = x[:, :1] * self.std + self.mean
        x_phys = torch.where(is_input.view(-1, 1, 1, 1), coarse.to(x.dtype), synthesised)
        base = None
        if self.skip is not None:
            base = interpolate(target, self.factor, self.skip) * self.std + self.mean
        residual = self.body(self.with_static(frames, x))
        pre = self.constraint.combine(base, residual, self.mean, self.residual_scale)
        return self.constraint(pre, x_phys, weights)
