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
