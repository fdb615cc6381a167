"""``MultiTargetDiffusionNet``: one denoiser that diffuses every target jointly (``fit(var=[...])``).

The noisy residual has one channel per target, each in its own unit: ``r_k = (y_k - mu_k) /
residual_scale_k`` with ``mu_k`` the bicubic interpolation of the target's *source* input (the
coarse field it conserves; the target's mean where it has none). The denoiser sees every input
channel interpolated to the fine grid (the targets' coarse fields and any predictors) plus the
covariates, so one sample is one joint draw of every target. Each target then gets its own hard
constraint, fixed at fit. The record is the one of
:class:`~xdownscale.models.multi_target.MultiTargetNet` (``targets``, ``inputs``).
"""
from __future__ import annotations

import torch

from ...nn.constraints import HARD_CONSTRAINTS, make_constraint
from .denoiser import UNetDenoiser
from .network import DiffusionNet


class MultiTargetDiffusionNet(DiffusionNet):
    """``targets``: one dict per target (``name``, ``constraint``, ``source`` (input index or None),
    ``mean``, ``std``, ``residual_scale``, ``constraint_kwargs``); ``inputs``: one dict per field
    input (``name``, ``mean``, ``std``); covariate channels follow them."""

    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, model: str = "diffusion", factor: int = 4, in_channels: int = 1, targets: list | None = None,
                 inputs: list | None = None, skip: str | None = "bicubic", n_covariates: int = 0,
                 base_channels: int = 32, channel_mults=(1, 2, 2), blocks: int = 1, **config):
        targets, inputs = list(targets or []), list(inputs or [])
        if not targets or not inputs:
            raise ValueError("a multi-target diffusion model needs its targets and inputs")
        for key in ("constraint", "n_extra", "mean", "std", "residual_scale", "constraint_kwargs", "base_network"):
            config.pop(key, None)  # single-target keys; each target carries its own
        super().__init__(model=model, factor=factor, in_channels=in_channels, skip=skip, n_extra=len(inputs) - 1,
                         n_covariates=n_covariates, base_channels=base_channels, channel_mults=channel_mults,
                         blocks=blocks, **config)
        self.target_names = [str(t["name"]) for t in targets]
        self.sources = [None if t.get("source") is None else int(t["source"]) for t in targets]
        self.n_targets = len(targets)
        self.target_constraints = [str(t.get("constraint") or "none") for t in targets]
        for name, kind in zip(self.target_names, self.target_constraints):
            if kind not in ("none", *HARD_CONSTRAINTS):
                raise ValueError(f"constraint {kind!r} of {name!r} is not a hard projection")
        self.target_kwargs = [t.get("constraint_kwargs") or {} for t in targets]
        view = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor([float(t["mean"]) for t in targets]).view(view))
        self.register_buffer("std", torch.tensor([float(t["std"]) for t in targets]).view(view))
        scale = [float(t.get("residual_scale") or t["std"]) if s is not None else float(t["std"])
                 for t, s in zip(targets, self.sources)]
        self.register_buffer("residual_scale", torch.tensor(scale).view(view))
        self.register_buffer("in_mean", torch.tensor([float(i["mean"]) for i in inputs]).view(view))
        self.register_buffer("in_std", torch.tensor([float(i["std"]) for i in inputs]).view(view))
        cond = len(inputs) + self.n_covariates  # the parent's one-channel denoiser is replaced by one of K
        self.denoiser = UNetDenoiser(cond, base_channels, tuple(channel_mults), blocks, out_channels=self.n_targets)

    def condition(self, x: torch.Tensor, weights=None, coarse=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine conditioning channels and the physical first guess ``mu`` (B, K, H, W) of every target."""
        cond, _ = super().condition(x, weights, coarse)
        lerp = cond[:, : self.n_extra + 1]  # every input, interpolated, still normalised
        mu = [lerp[:, s : s + 1] * self.in_std[:, s : s + 1] + self.in_mean[:, s : s + 1] if s is not None
              else self.mean[:, k : k + 1].expand_as(lerp[:, :1]) for k, s in enumerate(self.sources)]
        return cond, torch.cat(mu, dim=1)

    def project(self, y: torch.Tensor, x: torch.Tensor, coarse=None, weights=None, constraint: str | None = None,
                constraint_kwargs: dict | None = None) -> torch.Tensor:
        """Each target's own constraint, projected onto every sample (``coarse``: (1, K, h, w) the
        physical field each target conserves; default: its source input from ``x``)."""
        if constraint is not None or constraint_kwargs is not None:
            raise ValueError("the constraints of a multi-target diffusion model are fixed at fit")
        outs = []
        for k, (name, s) in enumerate(zip(self.target_constraints, self.sources)):
            yk = y[:, k : k + 1]
            if name != "none" and s is not None:
                layer = make_constraint(name, self.factor, **self.target_kwargs[k]).to(y.device)
                c = coarse[:, k : k + 1] if coarse is not None else \
                    x[:, s : s + 1] * self.in_std[:, s : s + 1] + self.in_mean[:, s : s + 1]
                yk = layer.project(yk, c.expand(len(y), -1, -1, -1).to(y.dtype), weights)
            outs.append(yk)
        return torch.cat(outs, dim=1)
