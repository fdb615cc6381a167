"""Deep voxel flow (Liu et al. 2017) for temporal interpolation of gridded fields.

A small U-Net sees two neighbouring frames and the fraction ``tau`` (0..1) of
the interval at which a new frame is wanted, and predicts a flow field
``F`` (2 channels, in grid cells) and a blending mask ``M`` (1 channel, 0..1).
Assuming linear motion through the interval, frame 0 is sampled at
``p - tau * F`` and frame 1 at ``p + (1 - tau) * F`` (bilinear
``grid_sample``, border values repeated) and the new frame is
``M * warp0 + (1 - M) * warp1``: a convex blend, so a non-negative field
stays non-negative. The flow is bounded by ``max_flow`` cells (tanh), which
bounds the receptive radius needed for tiled prediction. The output layers
start at zero, so an untrained module is linear time interpolation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


def warp(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``frame`` (B, C, H, W) at positions ``p + flow`` (flow (B, 2, H, W) in cells, (dy, dx))."""
    h, w = frame.shape[-2:]
    ys = torch.arange(h, device=frame.device, dtype=frame.dtype)
    xs = torch.arange(w, device=frame.device, dtype=frame.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    py = gy[None] + flow[:, 0]
    px = gx[None] + flow[:, 1]
    # normalised coordinates for align_corners=True: -1 at the first centre, +1 at the last
    ny = 2 * py / max(h - 1, 1) - 1
    nx = 2 * px / max(w - 1, 1) - 1
    grid = torch.stack([nx, ny], dim=-1)
    return F.grid_sample(frame, grid, mode="bilinear", padding_mode="border", align_corners=True)


class VoxelFlow(nn.Module):
    """U-Net (two pooling levels) predicting flow + mask; synthesises a frame between two.

    ``forward(frame0, frame1, tau)``: frames (B, C, H, W) (any H, W: padded by
    repetition to a multiple of 4 inside), ``tau`` (B,) in [0, 1]. Returns the
    synthesised (B, C, H, W) frame.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, max_flow: float = 2.0):
        super().__init__()
        c = in_channels
        self.max_flow = float(max_flow)
        self.enc1 = _block(2 * c + 1, width)
        self.enc2 = _block(width, 2 * width)
        self.bottom = _block(2 * width, 2 * width)
        self.dec2 = _block(4 * width, width)
        self.dec1 = _block(2 * width, width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # enc/dec: 2 convs each at three scales (x1, x2, x4 cells) + output conv + the flow bound
        self.receptive_radius = int(math.ceil(2 + 4 + 2 * 4 + 2 * 2 + 2 + 1 + self.max_flow))

    def flow_and_mask(self, frame0, frame1, tau):
        h, w = frame0.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        t = tau.view(-1, 1, 1, 1).to(frame0.dtype).expand(-1, 1, h, w)
        x = torch.cat([frame0, frame1, t], dim=1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        b = self.bottom(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(b, scale_factor=2, mode="nearest"), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], dim=1))
        out = self.out(d1)[..., :h, :w]
        flow = self.max_flow * torch.tanh(out[:, :2])
        # mask starts at 1 - tau (linear interpolation) and learns a correction
        prior = torch.logit((1 - tau).clamp(1e-4, 1 - 1e-4)).view(-1, 1, 1, 1).to(out.dtype)
        mask = torch.sigmoid(prior + out[:, 2:3])
        return flow, mask

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        flow, mask = self.flow_and_mask(frame0, frame1, tau)
        t = tau.view(-1, 1, 1, 1).to(frame0.dtype)
        warped0 = warp(frame0, -t * flow)
        warped1 = warp(frame1, (1 - t) * flow)
        return mask * warped0 + (1 - mask) * warped1
