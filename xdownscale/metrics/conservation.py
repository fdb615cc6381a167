"""Physical-consistency metrics: conservation against the low-resolution input
and negative values of non-negative quantities.

A downscaled field conserves the coarse field when its area-weighted block
mean (:func:`xdownscale.grid.coarsen`) reproduces the low-resolution input.
:func:`mass_violation` measures how far it is from that; it is zero for
models with a hard conservation constraint (up to round-off).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError
from ..grid.cf import GridAxes, find_axes
from ..grid.coarsen import coarsen
from .deterministic import Dim, reduce_dims, snap_coords, weights_for, wmean

__all__ = ["infer_factor", "mass_violation", "relative_mass_violation", "negative_pixels"]


def _lr_on_axes(lr: xr.DataArray, axes: GridAxes) -> xr.DataArray:
    """``lr`` with its horizontal dims renamed to those of the fine field."""
    if not isinstance(lr, xr.DataArray):
        raise TypeError(f"lr must be an xarray.DataArray, got {type(lr).__name__}")
    la = find_axes(lr)
    if la.spatial != axes.spatial:
        lr = lr.rename({la.y: axes.y, la.x: axes.x})
    return lr


def infer_factor(pred: xr.DataArray, lr: xr.DataArray, axes: GridAxes | None = None) -> int:
    """The integer downscaling factor ``size(pred) / size(lr)`` along y and x.

    Raises :class:`DataError` when the sizes are not the same integer multiple
    along both axes.
    """
    axes = axes or find_axes(pred)
    lr = _lr_on_axes(lr, axes)
    fy, ry = divmod(pred.sizes[axes.y], lr.sizes[axes.y])
    fx, rx = divmod(pred.sizes[axes.x], lr.sizes[axes.x])
    if ry or rx or fy != fx or fy < 1:
        raise DataError(
            f"cannot infer the downscaling factor: the fine grid ({axes.y}={pred.sizes[axes.y]}, "
            f"{axes.x}={pred.sizes[axes.x]}) is not the same integer multiple of the low-resolution "
            f"grid ({axes.y}={lr.sizes[axes.y]}, {axes.x}={lr.sizes[axes.x]}) along both axes. "
            "Pass matching grids (or factor=... with a fine grid that is factor times the coarse one)."
        )
    return int(fy)


def _coarse_error(pred, lr, factor):
    """(|coarsen(pred) - lr|, lr, axes of the coarse grid)."""
    if not isinstance(pred, xr.DataArray):
        raise TypeError(f"pred must be an xarray.DataArray, got {type(pred).__name__}")
    axes = find_axes(pred)
    lr = _lr_on_axes(lr, axes)
    if factor is None:
        factor = infer_factor(pred, lr, axes)
    coarse = coarsen(pred.astype("float64"), factor, axes=axes)
    cs = (coarse.sizes[axes.y], coarse.sizes[axes.x])
    ls = (lr.sizes[axes.y], lr.sizes[axes.x])
    if cs != ls:
        raise DataError(
            f"pred coarsened by factor {factor} has grid ({axes.y}={cs[0]}, {axes.x}={cs[1]}) but lr "
            f"has ({axes.y}={ls[0]}, {axes.x}={ls[1]}); check the factor (or leave it out to infer it)."
        )
    lr = snap_coords(lr.astype("float64"), coarse, axes.spatial, "lr", rtol=0.5)
    return abs(coarse - lr), lr, axes


def mass_violation(pred: xr.DataArray, lr: xr.DataArray, factor: int | None = None, *,
                   weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean absolute conservation error ``mean |coarsen(pred, factor) - lr|``.

    The mean runs over the coarse cells (cos(lat)-weighted on lat/lon grids
    when ``weighted``) and the other dims in ``dim`` (all by default); it has
    the units of the field. ``factor`` is inferred from the grid sizes when not
    given. Coarse cells that are NaN in either input are skipped. ``lr``
    coordinates must match the block centres of ``pred`` to within half a
    coarse cell (they are then snapped to them). Extra dims of ``pred`` such as
    ensemble members are kept and averaged over like any other.
    """
    err, _, axes = _coarse_error(pred, lr, factor)
    out = wmean(err, weights_for(err, axes, weighted), reduce_dims(err, dim))
    out.name, out.attrs = "mass_violation", {}
    return out


def relative_mass_violation(pred: xr.DataArray, lr: xr.DataArray, factor: int | None = None, *,
                            weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """:func:`mass_violation` divided by the mean ``|lr|`` over the same cells
    (dimensionless; ``inf``/NaN when ``lr`` is zero everywhere)."""
    err, lr, axes = _coarse_error(pred, lr, factor)
    dims = reduce_dims(err, dim)
    w = weights_for(err, axes, weighted)
    scale = abs(lr).where(err.notnull())
    with np.errstate(divide="ignore", invalid="ignore"):
        out = wmean(err, w, dims) / wmean(scale, w, [d for d in dims if d in scale.dims])
    out.name, out.attrs = "relative_mass_violation", {}
    return out


def negative_pixels(pred: xr.DataArray, *, dim: Dim = None) -> xr.Dataset:
    """Count and mean of the negative values of ``pred`` over ``dim``.

    Returns a Dataset with ``negative_count`` (number of cells < 0, NaN cells
    not counted) and ``negative_mean`` (mean of the negative values, a number
    <= 0; 0 where there is none).
    """
    if not isinstance(pred, xr.DataArray):
        raise TypeError(f"pred must be an xarray.DataArray, got {type(pred).__name__}")
    dims = reduce_dims(pred, dim)
    neg = pred < 0
    count = neg.sum(dim=dims)
    mean = pred.astype("float64").where(neg).mean(dim=dims, skipna=True).fillna(0.0)
    return xr.Dataset({"negative_count": count, "negative_mean": mean})
