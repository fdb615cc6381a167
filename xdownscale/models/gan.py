"""Conditional GAN for stochastic downscaling: a noise-driven generator and a patch discriminator.

Generator (registered as ``gan``): the ``cnn`` or ``espcn`` body run on the
coarse inputs *plus* ``noise_channels`` channels of standard-normal noise at the
coarse resolution. Being fully convolutional it takes any input size. It is
wrapped in :class:`StochasticNet`, a :class:`~xdownscale.models.network.DownscalingNet`
whose forward inserts the noise (drawn, or given), so the bicubic skip and the
constraint layer act on every sample: each ensemble member conserves exactly
under a hard constraint.

Discriminator (:class:`PatchDiscriminator`): strided convolutions that score
overlapping patches of the fine field, conditioned on the coarse inputs
(nearest-upsampled), and shown the sub-grid part ``fine - nearest(coarse)``
explicitly. Training (content CRPS by default + adversarial term, or WGAN-GP) lives in
:mod:`xdownscale.engine.adversarial`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import DataError
from ..nn.constraints import upsample_nearest
from ._registry import create_model, register_model
from .multi_target import MultiTargetNet
from .network import DownscalingNet

GENERATOR_BODIES = ("auto", "cnn", "espcn")


def _pick_body(body: str, factor: int) -> str:
    if body not in GENERATOR_BODIES:
        raise DataError(f"gan: unknown generator body {body!r}; choose one of {', '.join(GENERATOR_BODIES)}")
    if body == "auto":
        return "cnn" if factor >= 2 and 2 ** int(round(math.log2(factor))) == factor else "espcn"
    return body


@register_model("gan", family="stochastic", wrapper="xdownscale.models.gan:StochasticNet", probabilistic=True,
                description="conditional GAN: cnn/espcn generator with low-resolution noise channels, patch "
                            "discriminator; predict(members=N, seed=s) gives an ensemble",
                factors="any integer (cnn body for powers of two, espcn otherwise)")
def gan_generator(in_channels: int = 1, factor: int = 4, body: str = "auto", width: int = 64, n_blocks: int = 4,
                  out_channels: int = 1) -> nn.Module:
    """GAN generator body: ``cnn`` (powers of two) or ``espcn`` over inputs + noise channels."""
    return create_model(_pick_body(body, factor), in_channels=in_channels, factor=factor, width=width,
                        n_blocks=n_blocks, out_channels=out_channels)


class NoiseInputs:
    """Noise channels for a wrapper: ``data_channels`` data maps, ``noise_channels`` noise maps
    inserted at ``noise_at`` (after the fields, before the covariates), which is where
    :func:`xdownscale.engine.infer.tiled_predict` puts extra stacked inputs."""

    data_channels: int
    noise_channels: int
    noise_at: int

    def setup_noise(self, in_channels: int, noise_channels: int, noise_at: int | None) -> None:
        self.data_channels, self.noise_channels = int(in_channels), int(noise_channels)
        self.noise_at = int(in_channels if noise_at is None else noise_at)

    def insert_noise(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x`` (..., data channels, h, w) with ``noise`` (..., noise channels, h, w) inserted at
        ``noise_at`` (channels are dim -3, so sequences (B, T, C, h, w) work too)."""
        if noise.shape[-3] != self.noise_channels or noise.shape[-2:] != x.shape[-2:]:
            raise DataError(f"noise must have {self.noise_channels} channels on the {tuple(x.shape[-2:])} grid, "
                            f"got {tuple(noise.shape)}")
        k = self.noise_at
        return torch.cat([x[..., :k, :, :], noise.to(x.dtype), x[..., k:, :, :]], dim=-3)

    def draw_noise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(*x.shape[:-3], self.noise_channels, *x.shape[-2:], generator=generator,
                           device=x.device, dtype=x.dtype)

    def with_noise(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Data channels plus noise (drawn unless given); input that already has them is returned as is."""
        if x.shape[-3] == self.data_channels:
            return self.insert_noise(x, self.draw_noise(x) if noise is None else noise)
        if x.shape[-3] != self.data_channels + self.noise_channels:
            raise DataError(f"expected {self.data_channels} data channels (or {self.data_channels} + "
                            f"{self.noise_channels} noise), got {x.shape[-3]}")
        return x

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """The data channels of ``x`` (noise removed, if present)."""
        if x.shape[-3] == self.data_channels:
            return x
        k = self.noise_at
        return torch.cat([x[..., :k, :, :], x[..., k + self.noise_channels:, :, :]], dim=-3)


def check_noise_channels(noise_channels) -> None:
    if int(noise_channels) < 1:
        raise DataError(f"noise_channels must be >= 1, got {noise_channels}")


class StochasticNet(NoiseInputs, DownscalingNet):
    """A :class:`DownscalingNet` whose body also takes ``noise_channels`` noise maps
    (:class:`NoiseInputs`). ``in_channels`` counts the data channels (variable, predictors,
    folded covariates)."""

    def __init__(self, model: str, factor: int, in_channels: int = 1, noise_channels: int = 8,
                 noise_at: int | None = None, **config):
        check_noise_channels(noise_channels)
        super().__init__(model, factor, in_channels=int(in_channels) + int(noise_channels), **config)
        self.setup_noise(in_channels, noise_channels, noise_at)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, coarse: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: data channels only (noise is drawn, or ``noise`` is used) or data + noise channels
        already stacked (as in tiled inference). Returns (B, 1, H, W) in physical units."""
        return super().forward(self.with_noise(x, noise), weights, coarse)


class MultiTargetStochasticNet(NoiseInputs, MultiTargetNet):
    """Several targets from one noise draw: one ensemble member is one joint draw of every target."""

    def __init__(self, model: str, factor: int, in_channels: int, targets: list, inputs: list,
                 noise_channels: int = 8, noise_at: int | None = None, **config):
        check_noise_channels(noise_channels)
        super().__init__(model, factor, int(in_channels) + int(noise_channels), targets, inputs, **config)
        self.setup_noise(in_channels, noise_channels, noise_at)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, coarse: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(self.with_noise(x, noise), weights, coarse)


class PatchDiscriminator(nn.Module):
    """Conditional patch critic: (fine field, coarse inputs) -> a map of patch scores.

    Inputs it sees: the normalised fine field, its sub-grid part
    ``(fine - nearest(coarse)) / residual_scale`` and the nearest-upsampled
    coarse data channels. ``n_down`` stride-2 stages (fewer on small patches,
    so any size works); no normalisation layers, so it also serves as a
    WGAN-GP critic.
    """

    mean: torch.Tensor
    std: torch.Tensor
    residual_scale: torch.Tensor

    def __init__(self, cond_channels: int, factor: int, mean, std, residual_scale,
                 width: int = 32, n_down: int = 2):
        super().__init__()
        self.factor, self.n_down = int(factor), int(n_down)
        # one value per target: a list for a multi-target generator (shaped to broadcast over its channels)
        per_target = isinstance(mean, (list, tuple))
        n_targets = len(mean) if per_target else 1

        def stat(v):
            return torch.tensor([float(a) for a in v]).view(1, -1, 1, 1) if per_target else torch.tensor(float(v))

        self.register_buffer("mean", stat(mean))
        self.register_buffer("std", stat(std))
        self.register_buffer("residual_scale", stat(residual_scale))
        act = nn.LeakyReLU(0.2, inplace=True)
        self.head = nn.Sequential(nn.Conv2d(2 * n_targets + cond_channels, width, 3, padding=1), act)
        # constant width, so stages can be skipped on small patches
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True))
            for _ in range(self.n_down))
        self.tail = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(width, 1, 3, padding=1))

    def features(self, fine: torch.Tensor, cond: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """The critic's input stack for fine (B, K, H, W), cond (B, C, h, w), coarse (B, K, h, w)."""
        f = self.factor
        sub = (fine - upsample_nearest(coarse, f)) / self.residual_scale
        return torch.cat([(fine - self.mean) / self.std, sub, upsample_nearest(cond, f)], dim=1)

    def forward(self, fine: torch.Tensor, cond: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        h = self.head(self.features(fine, cond, coarse))
        for down in self.downs:
            if min(h.shape[-2:]) < 4:  # small patch: stop downsampling
                break
            h = down(h)
        return self.tail(h)
