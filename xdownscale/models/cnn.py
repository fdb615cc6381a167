"""Convolutional super-resolution bodies.

``cnn``: the SR-CNN of Harder et al. (2023): a 3x3 convolution, residual
blocks, log2(factor) transposed-convolution upsamplings (x2 each) and an output
convolution. ``espcn``: an EDSR/ESPCN-style body that stays at the coarse
resolution and upsamples once by sub-pixel convolution, for any integer factor.

Both return a normalised *residual*; :class:`~xdownscale.models.network.DownscalingNet`
adds it to an interpolation of the input (``skip``) and applies the constraint.
"""
from __future__ import annotations

import math

from torch import nn

from ..nn.blocks import ResidualBlock, conv3x3, zero_last
from ._registry import register_model


@register_model("cnn", description="SR-CNN (Harder et al. 2023): residual blocks + transposed-conv x2 upsamplings",
                factors="powers of two (2, 4, 8, ...)")
class SRCNN(nn.Module):
    """SR-CNN of Harder et al.: conv, residual blocks, log2(f) transposed-conv upsamplings."""

    def __init__(self, in_channels: int = 1, factor: int = 4, width: int = 64, n_blocks: int = 4,
                 out_channels: int = 1):
        super().__init__()
        n_up = int(round(math.log2(factor))) if factor >= 1 else -1
        if factor < 2 or 2**n_up != factor:
            raise ValueError(
                f"model 'cnn' upsamples by transposed convolutions of 2, so the factor must be a power of "
                f"two (2, 4, 8); got {factor}. Use model='espcn' for factor {factor}."
            )
        self.head = nn.Sequential(conv3x3(in_channels, width), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)])
        ups = []
        for _ in range(n_up):
            ups += [nn.ConvTranspose2d(width, width, kernel_size=4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*ups)
        self.tail = conv3x3(width, out_channels)
        # coarse cells: the first conv, two per residual block, and one more for the transposed
        # convolutions together (each adds under one coarse cell; measured, tests/test_infer.py)
        self.receptive_radius = 2 + 2 * n_blocks
        zero_last(self.tail)

    def forward(self, x):
        h = self.head(x)
        h = h + self.body(h)
        return self.tail(self.upsample(h))


@register_model("espcn", description="EDSR/ESPCN-style: residual blocks at coarse resolution + sub-pixel upsampling",
                factors="any integer (2, 3, 4, 8, ...)")
class ESPCN(nn.Module):
    """EDSR-style residual body at coarse resolution, then one sub-pixel (PixelShuffle) upsampling."""

    def __init__(self, in_channels: int = 1, factor: int = 4, width: int = 64, n_blocks: int = 4,
                 out_channels: int = 1):
        super().__init__()
        if factor < 2:
            raise ValueError(f"factor must be an integer >= 2, got {factor}")
        self.head = conv3x3(in_channels, width)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)], conv3x3(width, width))
        self.upsample = nn.Sequential(conv3x3(width, out_channels * factor * factor), nn.PixelShuffle(factor))
        self.receptive_radius = 1 + 2 * n_blocks + 1 + 1
        zero_last(self.upsample[0])

    def forward(self, x):
        h = self.head(x)
        return self.upsample(h + self.body(h))
