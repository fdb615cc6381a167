"""The network that every registered body is wrapped in.

``DownscalingNet`` takes normalised coarse inputs (channel 0: the variable,
further channels: covariates), interpolates the variable (``skip``), adds the
body's residual in physical units and enforces the constraint against the
physical coarse field. Its output is the fine field in physical units, so a
hard constraint holds exactly after de-normalisation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.blocks import INTERP_RADIUS, interpolate
from ..nn.constraints import make_constraint
from ._registry import create_model, model_info
from .baselines import BASELINE_SKIP


def register_normalisation(module: nn.Module, mean: float, std: float, residual_scale: float | None,
                           skip: str | None) -> None:
    """The buffers every wrapper carries: the target's ``mean`` and ``std`` (normalisation) and
    ``residual_scale``, the physical size of one unit of the body's output: the spread of
    (fine - interpolation) on the training data, so the body learns an O(1) correction (the
    ``std`` when there is no interpolation skip)."""
    module.register_buffer("mean", torch.tensor(float(mean)))
    module.register_buffer("std", torch.tensor(float(std)))
    scale = residual_scale if residual_scale and skip is not None else std
    module.register_buffer("residual_scale", torch.tensor(float(scale)))


class DownscalingNet(nn.Module):
    def __init__(
        self,
        model: str,
        factor: int,
        in_channels: int = 1,
        constraint: str = "none",
        skip: str | None = "bicubic",
        mean: float = 0.0,
        std: float = 1.0,
        residual_scale: float | None = None,
        constraint_kwargs: dict | None = None,
        **body_config,
    ):
        super().__init__()
        info = model_info(model)
        if not info["trainable"]:
            skip = BASELINE_SKIP[model]
        self.model_name, self.factor, self.skip = model, int(factor), skip
        self.body = create_model(model, in_channels=in_channels, factor=self.factor, **body_config)
        self.constraint = make_constraint(constraint, self.factor, **(constraint_kwargs or {}))
        register_normalisation(self, mean, std, residual_scale, skip)

    @property
    def receptive_radius(self) -> int:
        """Radius, in coarse cells, beyond which inputs do not change an output cell."""
        return int(math.ceil(max(getattr(self.body, "receptive_radius", 0), INTERP_RADIUS[self.skip])))

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                coarse: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, C, h, w) normalised coarse inputs; ``weights``: fine cell weights
        broadcastable to (B, 1, h*f, w*f), or None for uniform cells; ``coarse``: the
        physical coarse field (B, 1, h, w) to conserve (default: de-normalised ``x[:, :1]``,
        which carries float round-off). Returns (B, 1, H, W) in physical units."""
        residual = self.body(x)  # the only part a caller's autocast lowers (engine/precision.py)
        with torch.autocast(device_type=x.device.type, enabled=False):  # skip and constraint stay float32
            x0 = x[:, :1]
            x_phys = x0 * self.std + self.mean if coarse is None else coarse.to(x.dtype)
            base = None
            if self.skip is not None:
                base = interpolate(x0, self.factor, self.skip) * self.std + self.mean
            pre = self.constraint.combine(base, residual.to(x.dtype), self.mean, self.residual_scale)
            return self.constraint(pre, x_phys, weights)
