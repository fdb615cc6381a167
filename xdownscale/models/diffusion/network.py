"""``DiffusionNet``: the denoiser with its conditioning, target scaling, schedule and patch sampler.

The diffused quantity is a residual in O(1) units,
``r = (y - mu) / residual_scale``, where ``mu`` is either the bicubic
interpolation of the coarse field (the "Lerp" of DPDM; ``r`` is then the fine
detail the interpolation misses) or, in residual mode, the prediction of a
deterministic base model (CorrDiff). The denoiser sees on the fine grid: the
noisy residual, the interpolated coarse field, the static covariates (unfolded
from the coarse-grid channels the patch stream carries) and, in residual mode,
the base prediction. Sampling covers any domain with overlapping tiles whose
predictions are blended with raised-cosine weights at *every* denoising step,
so all tiles walk one shared sample (no seams); members are batched.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.blocks import interpolate
from ...nn.constraints import HARD_CONSTRAINTS, make_constraint
from .denoiser import UNetDenoiser
from .schedulers import NoiseSchedule, make_sampler


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length ``tile`` covering ``size`` with at least ``overlap`` shared cells."""
    if size <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    n = math.ceil((size - tile) / stride) + 1
    return sorted({round(i * (size - tile) / (n - 1)) for i in range(n)})


def blend_window(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D weights: raised-cosine ramps of ``overlap`` cells on interior sides, 1 at the domain border."""
    w = torch.ones(length, dtype=torch.float64)
    ramp = max(0, overlap)
    if ramp:
        r = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp)
        if not at_start:
            w[:ramp] = r
        if not at_end:
            w[-ramp:] = torch.minimum(w[-ramp:], r.flip(0))
    return w


class DiffusionNet(nn.Module):
    """Conditional diffusion model for downscaling by ``factor`` (rebuilt from a checkpoint's network dict)."""

    def __init__(self, model: str = "diffusion", factor: int = 4, in_channels: int = 1, constraint: str = "none",
                 skip: str | None = "bicubic", mean: float = 0.0, std: float = 1.0,
                 residual_scale: float | None = None, constraint_kwargs: dict | None = None, n_extra: int = 0,
                 n_covariates: int = 0, base_channels: int = 32, channel_mults=(1, 2, 2), blocks: int = 1,
                 schedule: dict | None = None, prediction: str = "v", sampler: dict | None = None,
                 tile: int = 128, overlap: int | None = None, base_network: dict | None = None, **unused):
        super().__init__()
        self.model_name, self.factor = model, int(factor)
        self.skip = skip or "bicubic"
        self.n_extra, self.n_covariates = int(n_extra), int(n_covariates)
        self.in_channels = int(in_channels)
        self.n_targets = 1  # channels diffused jointly (MultiTargetDiffusionNet: one per target)
        self.constraint_name = constraint or "none"
        self.constraint_kwargs = constraint_kwargs
        self.constraint = make_constraint(self.constraint_name, self.factor, **(constraint_kwargs or {}))
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.register_buffer("residual_scale", torch.tensor(float(residual_scale or std)))
        self.base, self.base_in = None, 0
        if base_network is not None:
            self.base_in = int(base_network.get("in_channels", 1))
            if self.base_in not in (1 + self.n_extra, self.in_channels):
                raise ValueError(f"the base model takes {self.base_in} input channels; the diffusion model has "
                                 f"{1 + self.n_extra} without covariates and {self.in_channels} with them")
            from .._registry import build_network

            self.base = build_network(base_network)
            for p in self.base.parameters():
                p.requires_grad_(False)
        cond = 1 + self.n_extra + self.n_covariates + (1 if self.base is not None else 0)
        self.denoiser = UNetDenoiser(cond, base_channels, tuple(channel_mults), blocks)
        self.schedule = NoiseSchedule(**(schedule or {}))
        self.prediction = prediction
        self.sampler_config = dict(sampler or {"name": "ddim", "steps": 20, "eta": 0.0})
        self.tile = int(tile)
        self.overlap = int(self.tile // 4 if overlap is None else overlap)

    # ------------------------------------------------------------------ conditioning and training
    def _base_input(self, x: torch.Tensor) -> torch.Tensor:
        """The base model's normalised inputs: its channels, the variable renormalised with its stats."""
        base = self.base
        v = (x[:, :1] * self.std + self.mean - base.mean) / base.std
        return torch.cat([v, x[:, 1 : self.base_in]], dim=1)

    def condition(self, x: torch.Tensor, weights=None, coarse=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine-grid conditioning channels and the physical first guess ``mu`` from normalised coarse ``x``."""
        f = self.factor
        lerp = interpolate(x[:, : 1 + self.n_extra], f, self.skip)
        chans = [lerp]
        if self.n_covariates:
            folded = x[:, 1 + self.n_extra : 1 + self.n_extra + self.n_covariates * f * f]
            chans.append(F.pixel_shuffle(folded, f))
        if self.base is not None:
            self.base.eval()
            with torch.no_grad():
                mu = self.base(self._base_input(x), weights, coarse)
            chans.append((mu - self.mean) / self.std)
        else:
            mu = lerp[:, :1] * self.std + self.mean
        return torch.cat(chans, dim=1), mu

    def loss(self, x, y, weights=None, coarse=None, generator: torch.Generator | None = None,
             t: torch.Tensor | None = None) -> torch.Tensor:
        """Denoising loss (noise or velocity MSE) at random steps on a batch of patches."""
        cond, mu = self.condition(x, weights, coarse)
        mask = torch.isfinite(y)
        r0 = torch.nan_to_num((y - mu) / self.residual_scale)
        n = len(y)
        if t is None:
            t = torch.randint(0, self.schedule.timesteps, (n,), generator=generator).to(y.device)
        noise = torch.randn(r0.shape, generator=generator, dtype=r0.dtype).to(y.device)
        x_t = self.schedule.q_sample(r0, t, noise)
        target = self.schedule.target(self.prediction, r0, t, noise)
        err = (self.denoiser(x_t, t, cond) - target) ** 2
        return (err * mask).sum() / mask.sum().clamp(min=1)

    # ------------------------------------------------------------------ sampling
    def make_sampler(self, name: str | None = None, steps: int | None = None, eta: float | None = None):
        cfg = self.sampler_config
        name = name or cfg.get("name", "ddim")
        steps = steps if steps is not None else (cfg.get("steps") if name == cfg.get("name", "ddim") else None)
        if name == "ddim" and steps is None:
            steps = 20
        eta = cfg.get("eta", 0.0) if eta is None else eta
        return make_sampler(name, self.schedule, steps, self.prediction, cfg.get("clip"), eta)

    def _tiles(self, h: int, w: int, tile: int, overlap: int, device):
        ty, tx = min(tile, h), min(tile, w)
        ys, xs = tile_starts(h, ty, overlap), tile_starts(w, tx, overlap)
        weight = torch.zeros(h, w, dtype=torch.float64)
        tiles = []
        for y0 in ys:
            wy = blend_window(ty, overlap, y0 == 0, y0 + ty == h)
            for x0 in xs:
                wx = blend_window(tx, overlap, x0 == 0, x0 + tx == w)
                win = wy[:, None] * wx[None, :]
                weight[y0 : y0 + ty, x0 : x0 + tx] += win
                tiles.append((y0, x0, win))
        norm = [(y0, x0, (win / weight[y0 : y0 + ty, x0 : x0 + tx]).float().to(device)) for y0, x0, win in tiles]
        return norm, (ty, tx)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, weights=None, coarse=None, *, members: int = 1, sampler=None,
               generator: torch.Generator | None = None, tile: int | None = None, overlap: int | None = None,
               batch_size: int = 16, constraint: str | None = None, constraint_kwargs: dict | None = None,
               callback=None) -> torch.Tensor:
        """``members`` samples for ONE coarse field ``x`` (1, C, h, w): (members, K, h*f, w*f) physical.

        ``constraint``: a hard constraint projected onto every member at the end
        (default: the one the model was fitted with)."""
        sampler = sampler or self.make_sampler()
        device = x.device
        cond, mu = self.condition(x, weights, coarse)
        h, w = cond.shape[-2:]
        tile = self.tile if tile is None else int(tile)
        overlap = min(self.overlap if overlap is None else int(overlap), tile // 2)
        tiles, (ty, tx) = self._tiles(h, w, tile, overlap, device)
        r = torch.randn((members, self.n_targets, h, w), generator=generator).to(device)
        for i, t in enumerate(sampler.timesteps):
            out = torch.zeros_like(r)
            jobs = [(m, k) for k in range(len(tiles)) for m in range(members)]
            for j in range(0, len(jobs), batch_size):
                chunk = jobs[j : j + batch_size]
                xt = torch.stack([r[m, :, tiles[k][0] : tiles[k][0] + ty, tiles[k][1] : tiles[k][1] + tx]
                                  for m, k in chunk])
                cb = torch.stack([cond[0, :, tiles[k][0] : tiles[k][0] + ty, tiles[k][1] : tiles[k][1] + tx]
                                  for _, k in chunk])
                pred = self.denoiser(xt, torch.full((len(chunk),), int(t), device=device), cb)
                for (m, k), p in zip(chunk, pred):
                    y0, x0, win = tiles[k]
                    out[m, :, y0 : y0 + ty, x0 : x0 + tx] += p * win
            r = sampler.step(out, i, r, generator)
            if callback is not None:
                callback(i)
        y = mu + r * self.residual_scale
        return self.project(y, x, coarse, weights, constraint, constraint_kwargs)

    def project(self, y: torch.Tensor, x: torch.Tensor, coarse=None, weights=None, constraint: str | None = None,
                constraint_kwargs: dict | None = None) -> torch.Tensor:
        """The hard constraint ``constraint`` (default: the fitted one) projected onto every sample
        ``y`` (members, 1, H, W) of the coarse field ``coarse`` (1, 1, h, w; default: from ``x``)."""
        name = self.constraint_name if constraint is None else constraint
        if name in (None, "none", "soft"):
            return y
        if name not in HARD_CONSTRAINTS:
            raise ValueError(f"constraint {name!r} cannot be projected; choose one of {', '.join(HARD_CONSTRAINTS)}")
        kwargs = constraint_kwargs if constraint_kwargs is not None else (
            self.constraint_kwargs if name == self.constraint_name else None)
        layer = make_constraint(name, self.factor, **(kwargs or {})).to(y.device)
        c = coarse if coarse is not None else x[:, :1] * self.std + self.mean
        return layer.project(y, c.expand(len(y), -1, -1, -1).to(y.dtype), weights)

    def forward(self, x, weights=None, coarse=None):
        """One sample per input field with the default sampler (a deterministic first guess is ``mu``)."""
        return torch.cat([self.sample(x[i : i + 1], weights, None if coarse is None else coarse[i : i + 1])
                          for i in range(len(x))])
