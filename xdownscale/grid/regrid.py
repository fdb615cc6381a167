"""Regridding to an arbitrary target grid.

Backends: ``"block"`` (exact area-weighted block mean, integer factors),
``"xarray-regrid"`` (conservative, pure Python) and ``"xesmf"`` (optional,
needs ESMF from conda-forge). ``"auto"`` uses the block mean when the target is
an integer coarsening of the source, else xarray-regrid.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import GridError
from .cf import coordinate_values, find_axes
from .coarsen import block_centres, coarsen

BACKENDS = ("auto", "block", "xarray-regrid", "xesmf")


def _integer_factor(src: xr.DataArray, target: xr.Dataset | xr.DataArray) -> int | None:
    sa, ta = find_axes(src), find_axes(target)
    ratios = [src.sizes[s] / target.sizes[t] for s, t in ((sa.y, ta.y), (sa.x, ta.x))]
    if ratios[0] != ratios[1] or ratios[0] < 1 or ratios[0] != int(ratios[0]):
        return None
    f = int(ratios[0])
    for s, t in ((sa.y, ta.y), (sa.x, ta.x)):
        centres = block_centres(coordinate_values(src, s), f, is_longitude=sa.kind == "latlon" and s == sa.x)
        if not np.allclose(centres, coordinate_values(target, t), atol=1e-6):
            return None
    return f


def _xesmf_regrid(src: xr.DataArray, target, method: str) -> xr.DataArray:
    try:
        import xesmf
    except ImportError as exc:  # pragma: no cover - depends on conda-forge esmpy
        raise ImportError(
            "the 'xesmf' backend needs xesmf and ESMF's esmpy, which is only packaged on "
            "conda-forge: `conda install -c conda-forge esmpy xesmf`; or use backend='xarray-regrid'"
        ) from exc
    regridder = xesmf.Regridder(src, target, method)
    return regridder(src, keep_attrs=True)


def regrid(
    da: xr.DataArray,
    target: xr.Dataset | xr.DataArray,
    *,
    method: str = "conservative",
    backend: str = "auto",
) -> xr.DataArray:
    """Regrid ``da`` onto the horizontal grid of ``target``."""
    if backend not in BACKENDS:
        raise GridError(f"unknown regrid backend {backend!r}; choose one of {BACKENDS}")
    if backend in ("auto", "block") and method == "conservative":
        f = _integer_factor(da, target)
        if f is not None:
            return coarsen(da, f)
        if backend == "block":
            raise GridError(
                "backend='block' needs a target grid that is an exact integer coarsening of the "
                "source; use backend='xarray-regrid' for arbitrary target grids"
            )
    if backend == "xesmf":
        return _xesmf_regrid(da, target, method)
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    sa, ta = find_axes(da), find_axes(target)
    tgt = target if isinstance(target, xr.Dataset) else target.to_dataset(name="_target")
    tgt = tgt.rename({ta.y: sa.y, ta.x: sa.x}) if (ta.y, ta.x) != (sa.y, sa.x) else tgt
    regridder = getattr(da.regrid, method, None)
    if regridder is None:
        raise GridError(f"xarray-regrid has no method {method!r}; try 'conservative', 'linear' or 'nearest'")
    if method == "conservative":  # xarray-regrid guesses latitude by name only: name it
        out = regridder(tgt, latitude_coord=sa.y if sa.kind == "latlon" else None)
    else:
        out = regridder(tgt)
    out.attrs = dict(da.attrs)
    return out


def nested_offset(lr: xr.DataArray, hr: xr.DataArray, factor: int) -> tuple[float, float] | None:
    """Offset (dy, dx) of ``lr``'s centres from the cell-nested coarse grid of ``hr`` (the
    centres of its ``factor x factor`` blocks), in coarse cells along the index direction, in (-0.5, 0.5];
    None when both grids have the same size and centres (to 1e-3 of a cell)."""
    la, ha = find_axes(lr), find_axes(hr)
    offsets, nested = [], True
    for ldim, hdim, is_lon in ((la.y, ha.y, False), (la.x, ha.x, ha.kind == "latlon")):
        centres = block_centres(coordinate_values(hr, hdim), factor, is_longitude=is_lon)
        mine = coordinate_values(lr, ldim).astype("float64")
        step = (centres[1] - centres[0]) if centres.size > 1 else 1.0
        first = (mine[0] - centres[0] + 180.0) % 360.0 - 180.0 if is_lon else mine[0] - centres[0]
        frac = first / step
        offsets.append(float(frac - np.round(frac)) if abs(frac - np.round(frac)) > 1e-3 else 0.0)
        if mine.shape != centres.shape:
            nested = False
            continue
        diff = mine - centres
        if is_lon:
            diff = (diff + 180.0) % 360.0 - 180.0
        nested &= bool(np.max(np.abs(diff)) <= 1e-3 * abs(step))
    return None if nested else (offsets[0], offsets[1])


def _nested_target(hr: xr.DataArray, factor: int) -> xr.DataArray:
    ha = find_axes(hr)
    coords = {}
    for dim, is_lon in ((ha.y, False), (ha.x, ha.kind == "latlon")):
        centres = block_centres(coordinate_values(hr, dim), factor, is_longitude=is_lon)
        coords[dim] = xr.DataArray(centres, dims=dim, attrs=dict(hr[dim].attrs))
    shape = (coords[ha.y].size, coords[ha.x].size)
    return xr.DataArray(np.zeros(shape), dims=(ha.y, ha.x), coords=coords, name="_target")


def nest_onto(lr: xr.DataArray, hr: xr.DataArray, factor: int, *, trim: bool = False):
    """``lr`` conservatively regridded (xarray-regrid) onto the cell-nested coarse grid of ``hr``.

    Real pairs from two models are often point-nested or offset: e.g. AROME 0.025 deg
    ``arome[::4, ::4]`` sits on ARPEGE 0.1 deg points, so each ARPEGE cell straddles
    four AROME blocks. Returns ``(lr_nested, hr)``; coarse rows/columns at the edges
    that ``lr`` does not cover are dropped with their fine cells when ``trim=True``
    (a :class:`GridError` otherwise). Leaves a nested ``lr`` untouched.
    """
    import logging
    import warnings

    offset = nested_offset(lr, hr, factor)
    if offset is None:
        return lr, hr
    ha = find_axes(hr)
    what = f"offset by ({offset[0]:+.3g}, {offset[1]:+.3g}) coarse cells (y, x)"
    if lr.sizes[find_axes(lr).y] * factor != hr.sizes[ha.y] or lr.sizes[find_axes(lr).x] * factor != hr.sizes[ha.x]:
        what += f", {lr.sizes[find_axes(lr).y]}x{lr.sizes[find_axes(lr).x]} cells,"
    msg = (f"the coarse field is {what} from the cell-nested coarse grid of the fine field (the means of its "
           f"{factor}x{factor} blocks); regridding it conservatively onto that grid with xarray-regrid")
    logging.getLogger("xdownscale").warning(msg)
    warnings.warn(msg, stacklevel=3)
    target = _nested_target(hr, factor)
    out = regrid(lr, target, method="conservative", backend="xarray-regrid")
    out = out.assign_coords({d: target[d] for d in target.dims})
    la = find_axes(out)
    # coarse rows/columns that the source covers only partly come back NaN everywhere
    empty_y = out.isnull().all([d for d in out.dims if d != la.y]).values
    empty_x = out.isnull().all([d for d in out.dims if d != la.x]).values
    if bool(lr.notnull().all()) and (empty_y.any() or empty_x.any()):
        ys, xs = np.flatnonzero(~empty_y), np.flatnonzero(~empty_x)
        inner = (ys.size and np.all(np.diff(ys) == 1)) and (xs.size and np.all(np.diff(xs) == 1))
        if not trim or not inner:
            raise GridError(
                f"the coarse field does not cover {int(empty_y.sum())} coarse rows and {int(empty_x.sum())} columns "
                "of the fine domain after regridding; pass trim=True to drop them, or select a fine domain "
                "inside the coarse one"
            )
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        out = out.isel({la.y: slice(y0, y1), la.x: slice(x0, x1)})
        hr = hr.isel({ha.y: slice(y0 * factor, y1 * factor), ha.x: slice(x0 * factor, x1 * factor)})
    return out.astype(lr.dtype).rename(lr.name), hr


def shift_by_cells(da: xr.DataArray, offset) -> xr.DataArray:
    """``da`` regridded conservatively onto its own grid moved by ``-offset`` cells (dy, dx): the
    coarse grid that a model trained on inputs offset by ``offset`` from its fine blocks expects
    (see :func:`nested_offset`). Rows and columns the source covers only partly are dropped."""
    axes = find_axes(da)
    coords = {}
    for dim, shift in zip(axes.spatial, offset):
        values = coordinate_values(da, dim).astype("float64")
        step = values[1] - values[0]
        coords[dim] = xr.DataArray(values - float(shift) * step, dims=dim, attrs=dict(da[dim].attrs))
    target = xr.DataArray(np.zeros((coords[axes.y].size, coords[axes.x].size)), dims=axes.spatial, coords=coords)
    out = regrid(da, target, method="conservative", backend="xarray-regrid").assign_coords(coords)
    keep = {}
    for dim in axes.spatial:
        empty = out.isnull().all([d for d in out.dims if d != dim]).values
        idx = np.flatnonzero(~empty)
        keep[dim] = slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)
    return out.isel(keep).astype(da.dtype).rename(da.name)
