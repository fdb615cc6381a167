"""``liif``: arbitrary-scale downscaling with a local implicit image function.

Two modules:

* :class:`ImplicitBody` (the registered builder): encoder + scale modulator +
  implicit decoder. Its ``forward(x)`` returns the residual on the nested fine grid
  of an integer factor, so it also works inside the default
  :class:`~xdownscale.models.network.DownscalingNet` (and its constraints);
  ``query(x, coords, cell)`` evaluates it at any continuous locations.
* :class:`LIIFNet` (the checkpoint ``wrapper``): normalisation buffers, a bicubic
  base sampled at the query points, the residual scaled to physical units. Its
  ``forward(x, queries, coarse)`` maps normalised coarse inputs and (B, Q, 4)
  queries ``(y, x, cell_y, cell_x)`` to (B, Q) physical values. Checkpoints carry
  ``factor = 0`` ("any scale").

Training and prediction onto a factor, a target grid or points live in the implicit
family, :mod:`xdownscale.families.implicit`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.constraints import make_constraint
from ..nn.implicit import ConvEncoder, ImplicitDecoder, ScaleModulator, sample_bicubic
from ._registry import register_model
from .network import register_normalisation

ANY_SCALE = 0  # the ``factor`` stored for a scale-free model


def fine_centres(n: int, factor: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised centres of ``round(n * factor)`` equal fine cells spanning ``n`` coarse cells."""
    m = int(round(n * factor))
    return -1 + (2 * torch.arange(m, dtype=dtype, device=device) + 1) / m


def grid_queries(h: int, w: int, factor: float, batch: int = 1, dtype=torch.float32, device=None) -> torch.Tensor:
    """(batch, H*W, 4) queries ``(y, x, cell_y, cell_x)`` at the fine cell centres of ``factor``."""
    ys, xs = fine_centres(h, factor, dtype, device), fine_centres(w, factor, dtype, device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    cell_y, cell_x = h / len(ys), w / len(xs)
    q = torch.stack([yy.reshape(-1), xx.reshape(-1), torch.full_like(yy.reshape(-1), cell_y),
                     torch.full_like(yy.reshape(-1), cell_x)], dim=-1)
    return q.unsqueeze(0).expand(batch, -1, -1)


# its decoder learns slowly at the shared 1e-3: 3e-3 gave 0.888x bicubic at x4 on WFDE5 Tair against 0.906x
@register_model("liif", family="implicit", factors="any real scale (trained over a range, e.g. 1.5-8)",
                description="LIIF implicit decoder, scale modulator, attention fusion: any scale, grid or points",
                wrapper="xdownscale.models.liif:LIIFNet", train_defaults={"learning_rate": 3e-3})
class ImplicitBody(nn.Module):
    """Conv encoder on the coarse grid + scale-modulated implicit decoder."""

    def __init__(self, in_channels: int = 1, factor: int = 4, width: int = 32, n_blocks: int = 4, hidden: int = 32,
                 out_channels: int = 1, query_batch: int = 32768):
        super().__init__()
        self.factor, self.query_batch = int(factor), int(query_batch)
        self.encoder = ConvEncoder(in_channels, width, n_blocks)
        self.modulator = ScaleModulator(width)
        self.decoder = ImplicitDecoder(width, hidden, out_channels)
        self.receptive_radius = self.encoder.receptive_radius + ImplicitDecoder.radius

    def encode(self, x: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Latent codes (B, C, h, w) modulated for the cell size ``cell`` (B, 2)."""
        return self.modulator(self.encoder(x), cell)

    def query(self, x: torch.Tensor, coords: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Residual (B, Q, out) at normalised ``coords`` (B, Q, 2) with cell sizes ``cell`` (B, Q, 2)."""
        feat = self.encode(x, cell[:, 0])
        terms = self.decoder.grid_terms(feat)
        outs = [self.decoder(feat, coords[:, i : i + self.query_batch], cell[:, i : i + self.query_batch], terms)
                for i in range(0, coords.shape[1], self.query_batch)]
        return torch.cat(outs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual on the nested fine grid of the integer ``factor``: (B, out, h*f, w*f)."""
        b, _, h, w = x.shape
        q = grid_queries(h, w, self.factor, b, x.dtype, x.device)
        out = self.query(x, q[..., :2], q[..., 2:])
        return out.permute(0, 2, 1).reshape(b, -1, h * self.factor, w * self.factor)


class LIIFNet(nn.Module):
    """Checkpoint wrapper: physical values at continuous query points (see the module docstring)."""

    def __init__(self, model: str = "liif", factor: int = ANY_SCALE, in_channels: int = 1, constraint: str = "none",
                 skip: str | None = "bicubic", mean: float = 0.0, std: float = 1.0,
                 residual_scale: float | None = None, constraint_kwargs: dict | None = None,
                 scales: list | None = None, degradation: str = "none", lower_bound: float | None = None,
                 **body_config):
        super().__init__()
        if skip not in (None, "bicubic"):
            raise ValueError(f"liif samples its base by bicubic interpolation; skip must be 'bicubic' or None, "
                             f"got {skip!r}")
        self.model_name, self.factor, self.skip = model, int(factor), skip
        # a field that stops at zero in training (rain) is never predicted below it, in evaluation only
        # (a clamp in training would stop the gradient of every cell predicted below it); None: unbounded
        self.lower_bound = None if lower_bound is None else float(lower_bound)
        self.scales = [float(s) for s in (scales or (1.5, 8.0))]
        self.body = ImplicitBody(in_channels=in_channels, **body_config)
        # training is scale-free, so no hard constraint inside the net; predict applies one where the target nests
        self.constraint = make_constraint("none", 1)
        register_normalisation(self, mean, std, residual_scale, skip)

    @property
    def receptive_radius(self) -> int:
        """Coarse cells around a query's cell that can change its value (encoder, decoder, bicubic)."""
        return int(math.ceil(self.body.receptive_radius + (2 if self.skip else 0)))

    def forward(self, x: torch.Tensor, queries: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, h, w) normalised coarse inputs; ``queries`` (B, Q, 4) = normalised (y, x) and
        cell sizes in coarse cells. Returns (B, Q) physical values (``coarse`` is unused: no constraint)."""
        coords, cell = queries[..., :2], queries[..., 2:]
        residual = self.body.query(x, coords, cell)[..., 0] * self.residual_scale
        if self.skip is None:
            out = residual + self.mean
        else:
            out = sample_bicubic(x[:, :1], coords)[..., 0] * self.std + self.mean + residual
        return out if self.lower_bound is None or self.training else out.clamp(min=self.lower_bound)


class MultiTargetLIIFNet(LIIFNet):
    """Several targets in one ``liif`` (``fit(var=[...])``), or one target from other inputs
    (``predictors=``, ``lr=``). The input channels are ``inputs`` (name, mean and std each is
    normalised with; without them, the targets' coarse fields in the order of ``targets``), the
    decoder has one output per target, and each target has its own ``mean``, ``std`` and
    ``residual_scale`` (dicts as in :class:`~xdownscale.models.multi_target.MultiTargetNet`).
    A target's base is the bicubic interpolation of its ``source`` input (the coarse field of the
    same variable); a target without one is its mean plus the residual. ``forward`` returns
    (B, Q, K)."""

    base_index: torch.Tensor
    has_base: torch.Tensor
    base_mean: torch.Tensor
    base_std: torch.Tensor
    lower: torch.Tensor

    def __init__(self, model: str = "liif", factor: int = ANY_SCALE, in_channels: int = 1,
                 targets: list | None = None, skip: str | None = "bicubic", scales: list | None = None,
                 degradation: str = "none", inputs: list | None = None, **body_config):
        targets = list(targets or [])
        if not targets:
            raise ValueError("a multi-target liif needs its targets")
        for key in ("constraint", "mean", "std", "residual_scale", "constraint_kwargs", "out_channels"):
            body_config.pop(key, None)  # single-target or record keys, not the body's
        body_config.pop("lower_bound", None)  # by target here
        super().__init__(model, factor, in_channels, skip=skip, scales=scales, degradation=degradation,
                         out_channels=len(targets), **body_config)
        bounds = [t.get("lower_bound") for t in targets]
        self.register_buffer("lower", torch.tensor([-math.inf if b is None else float(b) for b in bounds]),
                             persistent=False)
        self.target_names = [str(t["name"]) for t in targets]
        self.n_targets = len(targets)
        self.register_buffer("mean", torch.tensor([float(t["mean"]) for t in targets]))
        self.register_buffer("std", torch.tensor([float(t["std"]) for t in targets]))
        scale = [float(t["residual_scale"]) if t.get("residual_scale") and skip is not None else float(t["std"])
                 for t in targets]
        self.register_buffer("residual_scale", torch.tensor(scale))
        # the base of each target: its source input, de-normalised with that input's statistics
        channels = inputs or targets
        sources = [t.get("source", k) if inputs else k for k, t in enumerate(targets)]
        self.register_buffer("base_index", torch.tensor([s if s is not None else 0 for s in sources]),
                             persistent=False)
        self.register_buffer("has_base", torch.tensor([s is not None for s in sources]), persistent=False)
        self.register_buffer("base_mean", torch.tensor([float(channels[s]["mean"]) if s is not None else 0.0
                                                        for s in sources]), persistent=False)
        self.register_buffer("base_std", torch.tensor([float(channels[s]["std"]) if s is not None else 1.0
                                                       for s in sources]), persistent=False)

    def forward(self, x: torch.Tensor, queries: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Q, K) physical values of every target (the buffers broadcast along the last axis)."""
        coords, cell = queries[..., :2], queries[..., 2:]
        residual = self.body.query(x, coords, cell) * self.residual_scale
        if self.skip is None:
            out = residual + self.mean
        else:
            base = sample_bicubic(x[:, self.base_index], coords) * self.base_std + self.base_mean
            out = torch.where(self.has_base, base, self.mean) + residual
        return out if self.training else torch.maximum(out, self.lower)
