"""Several targets from one temporal network: ``fit(model="convgru"|"flowconvgru", var=[...])``.

The ConvGRU body of :mod:`~xdownscale.models.convgru` sees ``C`` input variables per frame and
has one output channel per target; each target keeps its own normalisation, source and
constraint layer (:class:`~xdownscale.models.multi_target.MultiTargetNet`). The packed input is
the temporal one with ``C`` channels per frame (:mod:`~xdownscale.models.convgru`). At an input
time a target conserves its source's coarse field; at a synthesised time (``flowconvgru``) it
conserves the voxel-flow interpolation of that source, as the single-target wrapper does.
"""
from __future__ import annotations

import torch

from ..nn.flow import VoxelFlow
from .convgru import PackedWindow
from .multi_target import MultiTargetNet

POSITIVE = ("softmax", "mult")  # a synthesised source under these must not go negative


class MultiTargetTemporalNet(PackedWindow, MultiTargetNet):
    """``inputs``: the ``C`` input variables; ``in_channels``: ``C`` plus the static covariate
    channels (given to the body with every frame, never warped); ``targets`` as in
    :class:`MultiTargetNet`; ``flow_channels > 0``: voxel-flow synthesis of all ``C`` variables
    at once (``flowconvgru``)."""

    positive: torch.Tensor

    def __init__(self, model: str, factor: int, in_channels: int, targets: list, inputs: list,
                 flow_channels: int = 0, max_flow: float = 2.0, **config):
        if int(in_channels) < len(inputs):
            raise ValueError(f"{in_channels} input channels for {len(inputs)} inputs: need one per input "
                             "(then the covariates)")
        super().__init__(model, factor, in_channels, targets, inputs, **config)
        self.window, self.target = int(self.body.window), int(self.body.target)  # type: ignore[arg-type]
        self.n_vars, self.n_static = len(inputs), int(in_channels) - len(inputs)
        self.flow = VoxelFlow(len(inputs), flow_channels, max_flow) if flow_channels else None
        positive = [layer.name in POSITIVE for layer in self.constraints]
        self.register_buffer("positive", torch.tensor(positive).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                coarse: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: packed (B, C + 2 + M * C + S, h, w) normalised; ``coarse``: (B, K, h, w) the physical
        field each target conserves when the target is an input time. Returns (B, K, H, W)."""
        frames, is_input = self.frames(x)
        target = frames[:, self.target]  # (B, C, h, w) normalised, synthesised where not an input time
        synthesised = self.source_fields(target)
        if self.positive.any():  # no negative synthesised source under a positive constraint
            synthesised = torch.where(self.positive, synthesised.clamp(min=0), synthesised)
        if coarse is None:
            coarse = self.source_fields(x[:, : self.n_vars])
        x_phys = torch.where(is_input.view(-1, 1, 1, 1), coarse.to(x.dtype), synthesised)
        return self.heads(self.body(self.with_static(frames, x)), target, x_phys, weights)
