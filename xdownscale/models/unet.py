"""Max-Average U-Net (MAUNet) and its compact student MAUNet-Light.

MAUNet is a U-Net for joint downscaling and bias correction of precipitation and
temperature fields. Its encoder units convolve, then reduce the resolution with a
max-pooling *and* an average-pooling of the same features, concatenated, so the
next level sees both the extremes and the mean of each 2x2 block; the decoder is
made of up-sampler units (bilinear x2, convolution, concatenation with the
encoder skip, convolutions); dropout regularises the bottleneck.

Here the body runs on the fine grid. Its input stage brings the coarse channels
there twice: interpolated by the factor (bicubic) and through a learned sub-pixel
convolution (3x3 convolution on the coarse grid, then pixel shuffle), which also
unfolds covariates that arrive folded space-to-depth. Any integer factor works, and the body
returns a normalised *residual* that :class:`~xdownscale.models.network.DownscalingNet`
adds to its ``skip`` interpolation before the constraint layer. Inputs of any
size are padded (edge replication) to a multiple of ``2**depth`` and the output
is cropped back.

``maunet-light`` is the same family with fewer channels, one convolution per unit
and one level less: about a tenth of the teacher's parameters with the defaults.
It is meant to be trained by distillation from a trained ``maunet``
(:func:`xdownscale.distill`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import INTERP_RADIUS, interpolate, zero_last
from ._registry import register_model


def _conv_stack(cin: int, cout: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class MaxAvgEncoderUnit(nn.Module):
    """Convolutions, then max- and average-pooling (x2) of the features, concatenated.

    Returns ``(features, pooled)``: the full-resolution features for the decoder skip and
    the half-resolution ``2 * cout`` channels for the next level."""

    def __init__(self, cin: int, cout: int, n_convs: int = 2):
        super().__init__()
        self.convs = _conv_stack(cin, cout, n_convs)

    def forward(self, x):
        h = self.convs(x)
        return h, torch.cat([F.max_pool2d(h, 2), F.avg_pool2d(h, 2)], dim=1)


class UpSamplerUnit(nn.Module):
    """Bilinear x2 upsampling and a convolution, concatenation with the skip, convolutions."""

    def __init__(self, cin: int, cskip: int, cout: int, n_convs: int = 2):
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.convs = _conv_stack(cout + cskip, cout, n_convs)

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class MAUNet(nn.Module):
    """Max-Average U-Net body on the fine grid (see the module docstring).

    ``width``: channels of the first level (doubled at each level below);
    ``depth``: number of max-average poolings; ``n_convs``: convolutions per unit;
    ``dropout``: channel dropout at the bottleneck (off in ``eval()``);
    ``upsample``: how the coarse inputs are brought to the fine grid first.
    """

    def __init__(self, in_channels: int = 1, factor: int = 4, width: int = 32, depth: int = 3, n_convs: int = 2,
                 dropout: float = 0.1, upsample: str = "bicubic", out_channels: int = 1):
        super().__init__()
        if factor < 1 or depth < 1 or width < 1 or n_convs < 1:
            raise ValueError(f"factor, depth, width and n_convs must be >= 1; got {factor}, {depth}, {width}, "
                             f"{n_convs}")
        if upsample not in INTERP_RADIUS or upsample is None:
            raise ValueError(f"upsample must be 'nearest', 'bilinear' or 'bicubic', got {upsample!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.factor, self.depth, self.upsample = int(factor), int(depth), upsample
        f = self.factor
        self.subpixel = nn.Sequential(nn.Conv2d(in_channels, width * f * f, kernel_size=3, padding=1),
                                      nn.PixelShuffle(f), nn.ReLU(inplace=True))
        self.encoders = nn.ModuleList()
        cin = in_channels + width
        for level in range(depth):
            cout = width * 2**level
            self.encoders.append(MaxAvgEncoderUnit(cin, cout, n_convs))
            cin = 2 * cout  # max- and average-pooled features side by side
        self.bottleneck = nn.Sequential(_conv_stack(cin, width * 2**depth, n_convs), nn.Dropout2d(dropout))
        self.decoders = nn.ModuleList()
        cin = width * 2**depth
        for level in reversed(range(depth)):
            cout = width * 2**level
            self.decoders.append(UpSamplerUnit(cin, cout, cout, n_convs))
            cin = cout
        self.tail = nn.Conv2d(width, out_channels, kernel_size=1)
        zero_last(self.tail)  # starts as the identity on the skip interpolation
        self.receptive_radius = self._radius(n_convs)

    def _radius(self, n_convs: int) -> int:
        """Coarse cells beyond which an input cannot change an output cell (an upper bound)."""
        fine = 0
        for level in range(self.depth):
            s = 2**level
            # encoder convs, the 2x2 pooling, bilinear up from the level below, up conv, decoder convs
            fine += n_convs * s + s + 2 * s + s + n_convs * s
        fine += n_convs * 2**self.depth  # bottleneck
        fine += 2**self.depth  # the pooling grid depends on where the padded field starts
        return int(math.ceil(fine / self.factor)) + max(INTERP_RADIUS[self.upsample], 1)

    def forward(self, x):
        h = interpolate(x, self.factor, self.upsample) if self.factor > 1 else x
        h = torch.cat([h, self.subpixel(x)], dim=1)
        ny, nx = h.shape[-2:]
        m = 2**self.depth
        pad_y, pad_x = (-ny) % m, (-nx) % m
        if pad_y or pad_x:
            h = F.pad(h, (0, pad_x, 0, pad_y), mode="replicate")
        skips = []
        for enc in self.encoders:
            feat, h = enc(h)
            skips.append(feat)
        h = self.bottleneck(h)
        for dec, skip in zip(self.decoders, reversed(skips)):
            h = dec(h, skip)
        return self.tail(h)[..., :ny, :nx]


# At the shared 1e-3 maunet fell short of bicubic on WFDE5 precipitation x4 (1.004x, still learning when
# the budget ended); 2e-3 gives 0.944x there and 0.711x on Tair (1e-3: 0.713x), 3e-3 0.924x and 0.755x
# (benchmarks/results/skill_wfde5.md).
@register_model("maunet", description="Max-Average U-Net (max+average pooling encoder, up-sampler decoder, dropout)",
                factors="any integer (2, 3, 4, ...)", train_defaults={"learning_rate": 2e-3})
def maunet(in_channels: int = 1, factor: int = 4, width: int = 32, depth: int = 3, n_convs: int = 2,
           dropout: float = 0.1, upsample: str = "bicubic", out_channels: int = 1,
           n_blocks: int | None = None) -> MAUNet:
    """Max-Average U-Net: the teacher for bias correction and downscaling.

    ``n_blocks``: alias of ``n_convs`` (the name the other registered bodies use for their depth)."""
    return MAUNet(in_channels, factor, width, depth, n_blocks or n_convs, dropout, upsample, out_channels)


@register_model("maunet-light", description="MAUNet-Light: compact MAUNet student (<= 40% of the parameters), "
                "for distillation", factors="any integer (2, 3, 4, ...)")
def maunet_light(in_channels: int = 1, factor: int = 4, width: int = 16, depth: int = 2, n_convs: int = 1,
                 dropout: float = 0.05, upsample: str = "bicubic", out_channels: int = 1,
                 n_blocks: int | None = None) -> MAUNet:
    """MAUNet-Light: fewer channels, one convolution per unit, one level less (``n_blocks``: alias of ``n_convs``)."""
    return MAUNet(in_channels, factor, width, depth, n_blocks or n_convs, dropout, upsample, out_channels)
