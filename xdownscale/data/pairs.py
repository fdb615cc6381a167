"""Low/high-resolution training pairs: by conservative coarsening or from a real pair."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import DataError, GridError
from ..grid.cf import GridAxes, coordinate_values, find_axes, latitude_weights
from ..grid.coarsen import check_divisible, coarsen
from ..grid.regrid import nest_onto, nested_offset


@dataclass
class Pair:
    """Aligned fields: ``hr`` on the fine grid, ``lr`` (``None``: coarsened on the fly
    from ``hr``), as (time, channel-free y, x) DataArrays with the same time axis."""

    hr: xr.DataArray
    lr: xr.DataArray | None
    factor: int
    axes: GridAxes
    row_weights: np.ndarray  # (ny_fine,) cell weights of the fine rows

    @property
    def n_times(self) -> int:
        return self.hr.sizes[self.axes.time] if self.axes.time else 1


def _check_field(da: xr.DataArray, role: str) -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise DataError(f"{role} must be an xarray.DataArray (select a variable: ds['t2m']), got {type(da).__name__}")
    if not np.issubdtype(da.dtype, np.number):
        raise DataError(f"{role} {da.name!r} is not numeric (dtype {da.dtype})")
    return da


def fine_row_weights(hr: xr.DataArray, axes: GridAxes) -> np.ndarray:
    if axes.kind == "latlon":
        return latitude_weights(coordinate_values(hr, axes.y))
    return np.ones(hr.sizes[axes.y])


def with_time(da: xr.DataArray, axes: GridAxes) -> xr.DataArray:
    extra = [d for d in da.dims if d not in axes.spatial and d != axes.time]
    for d in extra:
        if da.sizes[d] != 1:
            raise DataError(
                f"field {da.name!r} has an extra dimension {d!r} (size {da.sizes[d]}); select one "
                f"value (da.isel({d}=0)) or stack it into time"
            )
    da = da.isel({d: 0 for d in extra}, drop=True)
    order = ([axes.time] if axes.time else []) + list(axes.spatial)
    return da.transpose(*order)


def make_pair(hr: xr.DataArray, factor: int | None = None, lr: xr.DataArray | None = None, *,
              trim: bool = False) -> Pair:
    """Build a training pair.

    With ``lr=None`` the coarse field is the exact area-weighted coarsening of
    ``hr`` by ``factor`` (made on the fly per patch). With a real pair, the
    fine grid must be ``factor`` times the coarse grid on each axis; a coarse
    grid that is offset from the cell-nested one (e.g. point-nested ARPEGE /
    AROME) is regridded conservatively onto it, with a warning
    (:func:`~xdownscale.grid.regrid.nest_onto`).
    """
    hr = _check_field(hr, "hr")
    axes = find_axes(hr)
    if lr is None:
        if factor is None:
            raise DataError("give factor=... (or a real coarse field with lr=...)")
        hr = check_divisible(hr, int(factor), axes, trim)
        hr = with_time(hr, axes)
        return Pair(hr, None, int(factor), axes, fine_row_weights(hr, axes))
    lr = _check_field(lr, "lr")
    lax = find_axes(lr)
    lr_full = lr
    ry, rx = hr.sizes[axes.y] / lr.sizes[lax.y], hr.sizes[axes.x] / lr.sizes[lax.x]
    if trim and (ry != int(ry) or rx != int(rx) or ry != rx):
        f = int(factor or round(min(ry, rx)))
        lr = lr.isel({lax.y: slice(0, hr.sizes[axes.y] // f), lax.x: slice(0, hr.sizes[axes.x] // f)})
        hr = hr.isel({axes.y: slice(0, lr.sizes[lax.y] * f), axes.x: slice(0, lr.sizes[lax.x] * f)})
        ry = rx = f
    if ry != rx or ry != int(ry) or ry < 2:
        raise GridError(
            f"the fine grid ({hr.sizes[axes.y]}x{hr.sizes[axes.x]}) is not an integer multiple >= 2 of the "
            f"coarse grid ({lr.sizes[lax.y]}x{lr.sizes[lax.x]}) on both axes; select matching sub-domains "
            "or pass trim=True to crop both to the largest nested domain"
        )
    f = int(ry)
    if factor is not None and int(factor) != f:
        raise GridError(f"factor={factor} but the grids differ by {f}: drop factor= or fix the grids")
    if nested_offset(lr, hr, f) is not None:  # point-nested or offset grids: regrid the coarse field
        lr, hr = nest_onto(lr_full, hr, f, trim=trim)
        if not hasattr(lr_full.data, "dask") and hasattr(lr.data, "dask"):
            lr = lr.load()  # an in-memory field regridded lazily: once here, not again at every patch
        lax = find_axes(lr)
    if (axes.time is None) != (lax.time is None) or (axes.time and hr.sizes[axes.time] != lr.sizes[lax.time]):
        raise DataError("hr and lr must have the same time steps; align them first with xr.align(hr, lr, join='inner')")
    hr, lr = with_time(hr, axes), with_time(lr, lax)
    if axes.time and lax.time != axes.time:
        lr = lr.rename({lax.time: axes.time})
    return Pair(hr, lr, f, axes, fine_row_weights(hr, axes))


def coarsen_block(values: np.ndarray, factor: int, row_weights: np.ndarray) -> np.ndarray:
    """NaN-skipping area-weighted block mean of a (..., H, W) numpy array (the patch-level
    twin of :func:`xdownscale.grid.coarsen`)."""
    *lead, h, w = values.shape
    wts = np.broadcast_to(row_weights[:, None], (h, w))
    valid = np.isfinite(values)
    num = np.where(valid, values, 0.0) * wts
    den = valid * wts
    shape = (*lead, h // factor, factor, w // factor, factor)
    num = num.reshape(shape).sum(axis=(-3, -1))
    den = den.reshape(shape).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def coarse_field(pair: Pair) -> xr.DataArray:
    """The coarse field of a pair as a (lazy) DataArray."""
    return pair.lr if pair.lr is not None else coarsen(pair.hr, pair.factor, axes=pair.axes)


def select_variable(obj, var: str | None, role: str = "data") -> xr.DataArray:
    """The named variable of a Dataset (or the DataArray itself), with a clear error."""
    if isinstance(obj, xr.DataArray):
        if var is not None and obj.name is not None and obj.name != var:
            raise DataError(f"var={var!r} but the DataArray is named {obj.name!r}")
        return obj
    if isinstance(obj, xr.Dataset):
        names = list(obj.data_vars)
        if var is None:
            if len(names) == 1:
                return obj[names[0]]
            raise DataError(f"the {role} Dataset has variables {names}: choose one with var=...")
        if var not in obj:
            import difflib

            close = difflib.get_close_matches(var, names, n=2)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(f"variable {var!r} is not in the {role} Dataset.{hint} Variables: {names}")
        return obj[var]
    raise DataError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")
