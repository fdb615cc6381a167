"""``.downscale`` on DataArray and Dataset: stateless, every method delegates to :mod:`xdownscale.api`.

xarray builds a new accessor object on every attribute access, so nothing is
stored here: ``fit`` returns a :class:`~xdownscale.Downscaler` (and saves a
checkpoint) and ``predict`` returns a new object.
"""
from __future__ import annotations

import xarray as xr

from . import api
from .config import DEFAULT_MODEL


class _DownscaleAccessor:
    def __init__(self, obj):
        self._obj = obj

    def coarsen(self, factor: int, *, trim: bool = False, skipna: bool = True, var: str | None = None):
        """Exact area-weighted block mean by an integer factor (CF attributes kept)."""
        obj = self._obj
        if isinstance(obj, xr.DataArray):
            return api.coarsen(obj, factor, trim=trim, skipna=skipna)
        from .grid.cf import find_axes
        from .grid.coarsen import coarse_bounds

        names = [var] if var else [n for n in obj.data_vars if set(find_axes(obj).spatial) <= set(obj[n].dims)]
        out = xr.Dataset({n: api.coarsen(obj[n], factor, trim=trim, skipna=skipna) for n in names}, attrs=obj.attrs)
        axes = find_axes(out)
        for dim in axes.spatial:
            if dim in obj.coords:
                src = obj.isel({dim: slice(0, out.sizes[dim] * factor)})
                is_lat = axes.kind == "latlon" and dim == axes.y
                out[f"{dim}_bnds"] = ((dim, "bnds"), coarse_bounds(src, dim, factor, is_lat=is_lat))
                out[dim].attrs["bounds"] = f"{dim}_bnds"
        return out

    def fit(self, *, model: str | None = None, factor: int | None = None, var: str | None = None, **kwargs):
        """Train on this (fine) field; see :func:`xdownscale.fit`. Returns a Downscaler."""
        return api.fit(self._obj, model=model, factor=factor, var=var, **kwargs)

    def predict(self, *, model=DEFAULT_MODEL, factor: int | None = None, **kwargs):
        """Downscale this (coarse) field; see :func:`xdownscale.predict`."""
        return api.predict(self._obj, model=model, factor=factor, **kwargs)

    def evaluate(self, truth, **kwargs):
        """Score this prediction against ``truth``; see :func:`xdownscale.evaluate`."""
        return api.evaluate(self._obj, truth, **kwargs)

    def regrid(self, target, **kwargs):
        """Regrid onto the grid of ``target``; see :func:`xdownscale.regrid`."""
        return api.regrid(self._obj, target, **kwargs)

    def write(self, path, **kwargs):
        """Write atomically to NetCDF or Zarr; see :func:`xdownscale.write`."""
        return api.write(self._obj, path, **kwargs)


@xr.register_dataarray_accessor("downscale")
class DataArrayDownscaleAccessor(_DownscaleAccessor):
    """``da.downscale``: coarsen, fit, predict, evaluate, regrid, write."""


@xr.register_dataset_accessor("downscale")
class DatasetDownscaleAccessor(_DownscaleAccessor):
    """``ds.downscale``: the same on a Dataset (``var=`` picks the variable)."""
