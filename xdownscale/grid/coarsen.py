"""Exact area-weighted block coarsening for integer factors.

Each coarse cell is the area-weighted mean of the ``factor x factor`` fine cells
it contains (weights cos(latitude) on lat/lon grids, uniform on projected
grids). NaN cells (a land-sea masked field) are left out of the mean; a coarse
cell with no valid fine cell is NaN. Works lazily on Dask arrays.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import GridError
from .cf import GridAxes, area_weights, cell_bounds, find_axes


def check_divisible(da: xr.DataArray, factor: int, axes: GridAxes, trim: bool) -> xr.DataArray:
    """Trim the grid to a multiple of ``factor`` if asked, else raise a clear error."""
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise GridError(f"factor must be a positive integer, got {factor!r}")
    ny, nx = da.sizes[axes.y], da.sizes[axes.x]
    if ny % factor == 0 and nx % factor == 0:
        return da
    if not trim:
        raise GridError(
            f"grid size {axes.y}={ny}, {axes.x}={nx} is not divisible by factor {factor} "
            f"(remainders {ny % factor} and {nx % factor}); pass trim=True to drop the last "
            f"{ny % factor} row(s) and {nx % factor} column(s), or select a sub-domain."
        )
    return da.isel({axes.y: slice(0, ny - ny % factor), axes.x: slice(0, nx - nx % factor)})


def block_centres(values, factor: int, is_longitude: bool = False) -> np.ndarray:
    """Mean of each block of ``factor`` centres; longitudes are averaged across the
    +-180 / 0-360 seam correctly and wrapped back into the input's convention."""
    v = np.asarray(values, dtype="float64")
    if not is_longitude:
        return v.reshape(-1, factor).mean(axis=1)
    c = np.rad2deg(np.unwrap(np.deg2rad(v))).reshape(-1, factor).mean(axis=1)
    return c % 360.0 if v.min() >= 0 else (c + 180.0) % 360.0 - 180.0


def coarse_bounds(da: xr.DataArray, dim: str, factor: int, is_lat: bool = False) -> np.ndarray:
    """Bounds (n/factor, 2) of the coarse cells: outer bounds of each block of fine cells."""
    fine = cell_bounds(da, dim, is_latitude=is_lat)
    return np.stack([fine[::factor, 0], fine[factor - 1 :: factor, 1]], axis=1)


def coarsen(
    da: xr.DataArray,
    factor: int,
    *,
    trim: bool = False,
    skipna: bool = True,
    axes: GridAxes | None = None,
) -> xr.DataArray:
    """Area-weighted block mean of ``da`` by an integer ``factor``.

    Coarse coordinates are the centres of the blocks (a DataArray cannot hold
    2-D bound variables: :func:`coarse_bounds` gives them, and the Dataset
    accessor and :func:`xdownscale.write` attach them). Attributes are kept
    and ``cell_methods`` records the area mean.
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"coarsen expects an xarray.DataArray, got {type(da).__name__}")
    axes = axes or find_axes(da)
    da = check_divisible(da, factor, axes, trim)
    if factor == 1:
        return da
    dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
    w = area_weights(da, axes).astype("float64")
    window = {axes.y: factor, axes.x: factor}
    bnd_names = [f"{d}_bnds" for d in axes.spatial]
    plain = da.drop_vars([c for c in da.coords if c in bnd_names or "bnds" in da.coords[c].dims])
    num = (plain.fillna(0.0) * w).coarsen(window).sum()
    den = (plain.notnull() * w).coarsen(window).sum()
    out = num / den.where(den > 0)
    if not skipna:  # any NaN in a block makes the block NaN
        out = out.where(~plain.isnull().coarsen(window).any())
    out = out.astype(dtype)
    # block centres as coordinates (mean of fine centres: exact for regular grids)
    for dim in axes.spatial:
        if dim in da.coords:
            is_lon = axes.kind == "latlon" and dim == axes.x
            centres = block_centres(da.coords[dim].values, factor, is_longitude=is_lon)
            out = out.assign_coords({dim: (dim, centres.astype(da.coords[dim].dtype), da.coords[dim].attrs)})
    out = out.transpose(*[d for d in da.dims])
    out.attrs = dict(da.attrs)
    methods = str(da.attrs.get("cell_methods", "")).strip()
    if "area: mean" not in methods:
        out.attrs["cell_methods"] = (methods + " area: mean").strip()
    out.name = da.name
    out.encoding = {}
    return out
