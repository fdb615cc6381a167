"""The wrapper of a spatial body that predicts several target variables at once.

One body with one output channel per target. Each target has its own normalisation, its
own constraint layer and, optionally, a *source*: the input channel that holds its coarse
field (the same variable, or a named input such as ARPEGE precipitation for an AROME
target). The source gives the interpolation skip and the field the constraint conserves;
a target without a source is learnt from the mean (its constraint is then ``none``).
Cross-variable ``consistency`` rules (bounds, ``d2m <= t2m``, wind speed from its components:
:mod:`xdownscale.nn.consistency`) act on the constrained outputs, keeping their block means.
"""
from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from ..nn.blocks import INTERP_RADIUS, interpolate
from ..nn.consistency import Consistency
from ..nn.constraints import Constraint, make_constraint
from ._registry import create_model


class MultiTargetNet(nn.Module):
    """``targets``: one dict per output channel (``name``, ``constraint``, ``source`` (input
    channel index or None), ``mean``, ``std``, ``residual_scale``, ``constraint_kwargs``);
    ``inputs``: one dict per field input channel (``name``, ``mean``, ``std``); further input
    channels (covariates) follow them. ``constraint`` is only the summary the record shows.
    ``consistency``: rules across targets, as strings (``["0<=r<=100", "d2m<=t2m"]``)."""

    mean: torch.Tensor
    std: torch.Tensor
    residual_scale: torch.Tensor
    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, model: str, factor: int, in_channels: int, targets: list, inputs: list,
                 constraint: str = "none", skip: str | None = "bicubic", consistency: list | None = None,
                 **body_config):
        super().__init__()
        self.model_name, self.factor, self.skip = model, int(factor), skip
        self.target_names = [str(t["name"]) for t in targets]
        self.sources = [None if t.get("source") is None else int(t["source"]) for t in targets]
        self.n_targets = len(targets)
        for key in ("mean", "std", "residual_scale", "constraint_kwargs", "factor", "in_channels", "model"):
            body_config.pop(key, None)  # single-target keys a record may carry; not the body's
        self.body = create_model(model, in_channels=in_channels, factor=self.factor, out_channels=len(targets),
                                 **body_config)
        self.constraints = nn.ModuleList(make_constraint(t.get("constraint") or "none", self.factor,
                                                         **(t.get("constraint_kwargs") or {})) for t in targets)
        self.consistency = Consistency(consistency, self.target_names, self.factor)
        self.soft_channels = [k for k, c in enumerate(self.constraints) if c.name == "soft"]
        view = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor([float(t["mean"]) for t in targets]).view(view))
        self.register_buffer("std", torch.tensor([float(t["std"]) for t in targets]).view(view))
        # the physical size of one unit of the body's output: the spread of (fine - interpolated
        # source) where there is a skip, the target's std otherwise
        scale = [float(t["residual_scale"]) if t.get("residual_scale") and skip is not None and s is not None
                 else float(t["std"]) for t, s in zip(targets, self.sources)]
        self.register_buffer("residual_scale", torch.tensor(scale).view(view))
        self.register_buffer("in_mean", torch.tensor([float(i["mean"]) for i in inputs] or [0.0]).view(view))
        self.register_buffer("in_std", torch.tensor([float(i["std"]) for i in inputs] or [1.0]).view(view))

    @property
    def receptive_radius(self) -> int:
        return int(math.ceil(max(getattr(self.body, "receptive_radius", 0), INTERP_RADIUS[self.skip])))

    def source_fields(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) physical coarse field of each target's source from the normalised inputs
        (zeros for a target without one); prediction passes the exact fields instead."""
        maps = [x[:, s : s + 1] * self.in_std[:, s : s + 1] + self.in_mean[:, s : s + 1] if s is not None
                else torch.zeros_like(x[:, :1]) for s in self.sources]
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                coarse: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, C, h, w) normalised inputs; ``coarse``: (B, K, h, w) the physical field each
        target conserves (default: from ``x``). Returns (B, K, H, W) in physical units."""
        residual = self.body(x)  # the only part a caller's autocast lowers (engine/precision.py)
        return self.heads(residual, x, coarse, weights)

    def heads(self, residual: torch.Tensor, x: torch.Tensor, coarse: torch.Tensor | None,
              weights: torch.Tensor | None) -> torch.Tensor:
        """Each target's skip (from its source channel of ``x``, normalised (B, C, h, w)), its
        ``residual`` channel and its constraint layer against ``coarse`` (B, K, h, w) or ``x``."""
        with torch.autocast(device_type=x.device.type, enabled=False):  # skips and constraints stay float32
            residual = residual.float()
            coarse = self.source_fields(x) if coarse is None else coarse.to(x.dtype)
            outs = []
            for k, s in enumerate(self.sources):
                layer = cast(Constraint, self.constraints[k])
                base = None
                if self.skip is not None and s is not None:
                    base = interpolate(x[:, s : s + 1], self.factor, self.skip) * self.in_std[:, s : s + 1] \
                        + self.in_mean[:, s : s + 1]
                pre = layer.combine(base, residual[:, k : k + 1], self.mean[:, k : k + 1],
                                    self.residual_scale[:, k : k + 1])
                outs.append(layer(pre, coarse[:, k : k + 1], weights))
            return self.consistency(torch.cat(outs, dim=1), weights)
