"""``flowconvgru``: deep voxel flow temporal interpolation followed by the ConvGRU spatial model.

The two stages are trained end to end (one loss on the fine target frame):
coarse frames between input times are synthesised by
:class:`~xdownscale.nn.flow.VoxelFlow` (Liu et al. 2017), the dense window
(input and synthesised frames) goes through the ConvGRU body of
:mod:`xdownscale.models.convgru`, and the constraint layer conserves the
target frame's coarse field. For a synthesised frame that coarse field is the
voxel-flow interpolation itself (no observed coarse field exists at that
time), so ``block_mean(output) == synthesised coarse frame`` exactly.

``predict(..., time_factor=1)`` downscales in space only (every output is an
input time); ``time_factor=3`` puts two new frames between each pair of
inputs. Training draws the phase of the target inside the input interval at
random, with inputs every ``time_factor`` steps of the training series, so the
intended use is ``time_factor`` = (input step) / (training step).
"""
from __future__ import annotations

from ._registry import register_model
from .convgru import ConvGRUBody


@register_model("flowconvgru", family="temporal", wrapper="xdownscale.models.convgru:TemporalNet",
                description="deep voxel flow time interpolation + ConvGRU, end to end (space and time)",
                factors="any integer (2, 3, 4, 8, ...)")
def flowconvgru(in_channels: int = 1, factor: int = 4, channels: int = 32, residual_blocks: int = 3,
                window: int = 3, out_channels: int = 1) -> ConvGRUBody:
    """The ConvGRU spatial body of ``flowconvgru`` (its voxel flow lives in the wrapper)."""
    return ConvGRUBody(in_channels=in_channels, factor=factor, channels=channels, residual_blocks=residual_blocks,
                       window=window, out_channels=out_channels)
