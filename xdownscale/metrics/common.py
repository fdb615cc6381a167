"""What every metric module shares: the pair check, cell weights, weighted means, Dask chunking.

Split from :mod:`.deterministic` (whose names it still exports).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from ..errors import DataError, GridError
from ..grid.cf import GridAxes, area_weights, find_axes

Dim = Hashable | Iterable[Hashable] | None

__all__ = ["Dim", "grid_axes", "grid_shape", "snap_coords", "check_pair", "weights_for", "CHUNK_BYTES",
           "rechunk_for_core", "rechunk_direct", "reduce_dims", "wmean", "squared_units", "named", "data_range_of"]


def grid_axes(da: xr.DataArray) -> GridAxes | None:
    """:func:`find_axes`, or None when the array has no horizontal axes."""
    try:
        return find_axes(da)
    except GridError:
        return None


def grid_shape(da: xr.DataArray, dims: Sequence[Hashable]) -> str:
    """``"(lat=20, lon=28)"``: the sizes of ``da`` along ``dims``, for error messages."""
    return "(" + ", ".join(f"{d}={da.sizes[d]}" for d in dims if d in da.dims) + ")"


def snap_coords(other: xr.DataArray, ref: xr.DataArray, dims: Sequence[Hashable],
                name: str, rtol: float = 1e-3) -> xr.DataArray:
    """Give ``other`` the coordinates of ``ref`` along ``dims`` when they agree to
    within ``rtol`` of a grid step; raise a :class:`DataError` when they do not."""
    for d in dims:
        if d not in other.coords or d not in ref.coords or d not in other.dims:
            continue
        a, b = np.asarray(ref[d].values), np.asarray(other[d].values)
        if a.shape == b.shape and np.array_equal(a, b):
            continue
        if a.shape == b.shape and a.dtype.kind in "iuf" and b.dtype.kind in "iuf":
            step = np.abs(np.diff(a.astype("float64"))).min() if a.size > 1 else 1.0
            diff = np.abs(a.astype("float64") - b.astype("float64")).max()
            if diff <= rtol * max(step, 1e-12):
                other = other.assign_coords({d: ref[d]})
                continue
            raise DataError(
                f"{name} and the reference have the same {d!r} size but different coordinates "
                f"(largest difference {diff:g}, grid step {step:g}); they are not on the same grid. "
                "Regrid one onto the other first (xdownscale.grid.regrid)."
            )
    return other


def check_pair(pred: xr.DataArray, truth: xr.DataArray, names=("pred", "truth")
               ) -> tuple[xr.DataArray, xr.DataArray, GridAxes | None]:
    """Check that ``pred`` and ``truth`` share a grid; return them and the axes.

    Raises :class:`DataError` naming both shapes when the horizontal grids (or,
    without recognisable axes, any shared dimension) differ in size.
    """
    for n, obj in zip(names, (pred, truth)):
        if not isinstance(obj, xr.DataArray):
            raise TypeError(f"{n} must be an xarray.DataArray, got {type(obj).__name__}")
    axes = grid_axes(truth) or grid_axes(pred)
    if axes is None:
        bad = [d for d in pred.dims if d in truth.dims and pred.sizes[d] != truth.sizes[d]]
        if bad:
            raise DataError(
                f"{names[0]} and {names[1]} differ in shape along {bad}: {names[0]} "
                f"{dict(pred.sizes)}, {names[1]} {dict(truth.sizes)}."
            )
        return pred, truth, None
    for n, obj in zip(names, (pred, truth)):
        missing = [d for d in axes.spatial if d not in obj.dims]
        if missing:
            raise DataError(
                f"{n} lacks the horizontal dimension(s) {missing} (its dims are {tuple(obj.dims)}); "
                f"both inputs need the same ({axes.y}, {axes.x}) grid, renamed if necessary."
            )
    ps, ts = grid_shape(pred, axes.spatial), grid_shape(truth, axes.spatial)
    if ps != ts:
        raise DataError(
            f"{names[0]} and {names[1]} grids differ in shape: {names[0]} is {ps}, "
            f"{names[1]} is {ts}. Compare fields on the same grid: coarsen or regrid one of them "
            "first (xdownscale.grid.coarsen / xdownscale.grid.regrid)."
        )
    truth = snap_coords(truth, pred, axes.spatial, names[1])
    return pred, truth, axes


def weights_for(da: xr.DataArray, axes: GridAxes | None, weighted: bool) -> xr.DataArray | None:
    """cos(lat) cell weights when asked for on a lat/lon grid, else None (uniform)."""
    if not weighted or axes is None or axes.kind != "latlon":
        return None
    return area_weights(da, axes)


CHUNK_BYTES = 16 * 2**20  # about this much float64 per Dask chunk when a core dimension is gathered


def rechunk_for_core(da: xr.DataArray, core: Iterable[Hashable], target: int | None = None) -> xr.DataArray:
    """Dask input: each ``core`` dim in one chunk and the other dims split so that one chunk
    holds about ``target`` bytes of float64 (default :data:`CHUNK_BYTES`; a per-field score must not gather a whole year
    of fields into one chunk, nor a per-cell score the whole grid). The last dims are kept
    whole first, so that the first one is split coarsest (blocks of rows). Chunks that
    already fit are kept: every score after the first then reuses one rechunked copy instead
    of rechunking its own (each rechunk of a Dask array holds its own copy of the data).
    NumPy input is returned as is."""
    if da.chunks is None:
        return da
    target = CHUNK_BYTES if target is None else target
    core = [d for d in core if d in da.dims]
    sizes = da.chunksizes
    if all(len(sizes[d]) == 1 for d in core) and 8 * int(np.prod([max(sizes[d]) for d in da.dims])) <= target:
        return da
    budget = max(1, int(target // (8 * int(np.prod([da.sizes[d] for d in core] or [1])))))
    spec: dict = {d: -1 for d in core}
    for d in reversed([d for d in da.dims if d not in core]):
        spec[d] = min(da.sizes[d], budget)
        budget = max(1, budget // spec[d])
    return rechunk_direct(da, spec)


def rechunk_direct(da: xr.DataArray, spec: dict) -> xr.DataArray:
    """``da.chunk(spec)`` in one step. Dask plans a rechunk through intermediate chunks of up to
    array.chunk-size (128 MiB): gathering time first, it made one chunk of a whole test input,
    which every block of cells then held. A direct rechunk lets a block read only its own pieces."""
    import dask

    with dask.config.set({"array.rechunk.threshold": 1000}):
        return da.chunk(spec)


def reduce_dims(da: xr.DataArray, dim: Dim, extra: Iterable[Hashable] = ()) -> list[Hashable]:
    """The dimensions of ``da`` to reduce: all if ``dim`` is None, else ``dim``
    (plus ``extra``), checked to exist."""
    if dim is None:
        return list(da.dims)
    dims = [dim] if isinstance(dim, str) or not isinstance(dim, Iterable) else list(dim)
    unknown = [d for d in dims if d not in da.dims]
    if unknown:
        raise DataError(f"cannot reduce over {unknown}: the data has dims {tuple(da.dims)}")
    return dims + [d for d in extra if d not in dims and d in da.dims]


def wmean(da: xr.DataArray, w: xr.DataArray | None, dims: list[Hashable]) -> xr.DataArray:
    """NaN-skipping mean over ``dims``, weighted by ``w`` when given."""
    if not dims:
        return da
    if w is None:
        return da.mean(dim=dims, skipna=True)
    return da.weighted(w).mean(dim=dims, skipna=True)


def squared_units(units: str) -> str:
    """``"K"`` -> ``"K^2"``, ``"kg m-2"`` -> ``"(kg m-2)^2"``, ``""`` -> ``""``."""
    if not units:
        return ""
    return f"{units}^2" if units.isalnum() else f"({units})^2"


def named(da: xr.DataArray, name: str) -> xr.DataArray:
    da = da.rename(name)
    da.attrs = {}
    return da


def data_range_of(truth: xr.DataArray, data_range=None):
    """``data_range`` if given, else ``max(truth) - min(truth)`` over the whole
    array (NaN skipped; lazy on Dask)."""
    if data_range is not None:
        return data_range
    t = truth.astype("float64")
    return t.max(skipna=True) - t.min(skipna=True)
