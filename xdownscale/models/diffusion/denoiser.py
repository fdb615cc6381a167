"""The denoising U-Net: noisy fine field + fine-grid conditioning channels + time step -> noise/velocity.

A small DDPM-style U-Net (Ho et al. 2020): a sinusoidal embedding of the
diffusion step feeds every residual block through a learned projection; the
conditioning fields (interpolated coarse input, static covariates, the
deterministic base prediction) are concatenated with the noisy field as input
channels, as in DPDM and SR3. Any input size works: the field is padded by
reflection to a multiple of the down-sampling stride and cropped back.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of (B,) diffusion steps: (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between and a 1x1 skip if needed."""

    def __init__(self, cin: int, cout: int, time_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNetDenoiser(nn.Module):
    """U-Net over ``len(channel_mults)`` resolution levels, ``blocks`` residual blocks per level.

    ``forward(x_t, t, cond)``: ``x_t`` (B, K, H, W) noisy field (K = ``out_channels``), ``t`` (B,)
    integer steps, ``cond`` (B, C, H, W) conditioning channels; returns (B, K, H, W).
    """

    def __init__(self, cond_channels: int = 1, base_channels: int = 32, channel_mults=(1, 2, 2), blocks: int = 1,
                 out_channels: int = 1):
        super().__init__()
        mults = [int(m) for m in channel_mults]
        if not mults or base_channels < 1 or blocks < 1:
            raise ValueError("the U-Net needs base_channels >= 1, blocks >= 1 and at least one channel multiplier")
        self.stride = 2 ** (len(mults) - 1)
        time_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # the noisy field has one channel per output (several targets diffuse jointly)
        self.head = nn.Conv2d(out_channels + cond_channels, base_channels, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        widths, ch = [base_channels], base_channels
        for level, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(TimeResBlock(ch, base_channels * m, time_dim))
                ch = base_channels * m
                widths.append(ch)
            if level < len(mults) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                widths.append(ch)
        self.mid = nn.ModuleList([TimeResBlock(ch, ch, time_dim), TimeResBlock(ch, ch, time_dim)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(TimeResBlock(ch + widths.pop(), base_channels * m, time_dim))
                ch = base_channels * m
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        self.mults, self.blocks = mults, blocks
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h0, w0 = x_t.shape[-2:]
        s = self.stride
        ph, pw = (-h0) % s, (-w0) % s
        x = torch.cat([x_t, cond.to(x_t.dtype)], dim=1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h0, w0) > max(ph, pw) else "replicate")
        emb = self.time_mlp(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.base_channels))
        h = self.head(x)
        skips = [h]
        blocks = iter(self.down)
        for level in range(len(self.mults)):
            for _ in range(self.blocks):
                h = next(blocks)(h, emb)
                skips.append(h)
            if level < len(self.mults) - 1:
                h = self.downsample[level](h)
                skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        blocks = iter(self.up)
        for i, level in enumerate(reversed(range(len(self.mults)))):
            for _ in range(self.blocks + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), emb)
            if level > 0:
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)[..., :h0, :w0]
