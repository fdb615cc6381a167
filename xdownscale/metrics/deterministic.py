"""Deterministic verification metrics for downscaled fields.

Every function takes a prediction and a reference ("truth") DataArray on the
same grid and returns a DataArray reduced over ``dim`` (all dimensions by
default). Conventions shared by all functions:

* ``weighted=True`` averages over (y, x) with cos(latitude) cell weights on
  lat/lon grids (:func:`xdownscale.grid.area_weights`); projected grids and
  arrays without recognisable horizontal axes are averaged uniformly.
* A cell that is NaN in either input is left out of every mean.
* Dask-backed inputs stay lazy (SSIM, :mod:`.ssim`, needs the horizontal
  dimensions in one chunk each and rechunks them if necessary).
* pred and truth must have the same grid shape: a :class:`DataError` names
  both shapes otherwise. Coordinates equal to within round-off are snapped to
  ``pred``'s so that xarray's alignment does not silently drop cells.
"""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr

from ..errors import DataError
from .common import (  # noqa: F401  (re-exported: the metric modules and users import them from here)
    CHUNK_BYTES,
    Dim,
    check_pair,
    data_range_of,
    grid_axes,
    grid_shape,
    named,
    rechunk_direct,
    rechunk_for_core,
    reduce_dims,
    snap_coords,
    squared_units,
    weights_for,
    wmean,
)
from .ssim import MS_SSIM_WEIGHTS, SSIM_WIN, ms_ssim, ms_ssim_scales, ssim  # noqa: F401  (re-exported)

__all__ = [
    "mse", "rmse", "mae", "bias", "max_abs_error", "psnr", "ssim", "ms_ssim",
    "pearson_r", "acc", "check_pair", "MS_SSIM_WEIGHTS",
]


def _pair_error(pred, truth, dim):
    pred, truth, axes = check_pair(pred, truth)
    err = pred.astype("float64") - truth.astype("float64")
    return err, weights_for(truth, axes, True), axes, reduce_dims(err, dim)


def mse(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean squared error ``mean((pred - truth)**2)`` over ``dim``."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return named(wmean(err**2, w if weighted else None, dims), "mse")


def rmse(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Root mean squared error: ``sqrt(mse)`` (the mean is taken before the root)."""
    return named(np.sqrt(mse(pred, truth, weighted=weighted, dim=dim)), "rmse")


def mae(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean absolute error ``mean(|pred - truth|)`` over ``dim``."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return named(wmean(abs(err), w if weighted else None, dims), "mae")


def bias(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean error ``mean(pred - truth)``: positive when the prediction is too high."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return named(wmean(err, w if weighted else None, dims), "bias")


def max_abs_error(pred: xr.DataArray, truth: xr.DataArray, *, dim: Dim = None) -> xr.DataArray:
    """Largest absolute error ``max(|pred - truth|)`` over ``dim`` (NaN skipped)."""
    err, _, _, dims = _pair_error(pred, truth, dim)
    return named(abs(err).max(dim=dims, skipna=True), "max_abs_error")


def psnr(pred: xr.DataArray, truth: xr.DataArray, *, data_range=None, weighted: bool = True,
         dim: Dim = None) -> xr.DataArray:
    """Peak signal-to-noise ratio in dB: ``10 log10(R**2 / mse)``.

    ``R`` is ``data_range`` if given, else the range of ``truth`` over the
    whole array (the same ``R`` for every field, so per-time values compare).
    Identical fields give ``+inf``.
    """
    r = data_range_of(truth, data_range)
    m = mse(pred, truth, weighted=weighted, dim=dim)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(r**2 / m)
    return named(out, "psnr")


def _first_chunk_mean(a: xr.DataArray, dims: list[Hashable]) -> xr.DataArray:
    """Mean over ``dims`` of the first Dask chunk along them (the whole array for NumPy), 0 if NaN."""
    sel = {d: slice(0, a.chunksizes[d][0] if a.chunks is not None else a.sizes[d]) for d in dims}
    return a.isel(sel).mean(dims, skipna=True).fillna(0.0)


def centred_corr(a: xr.DataArray, b: xr.DataArray, w: xr.DataArray | None, dims: list[Hashable]) -> xr.DataArray:
    """Pearson correlation over ``dims`` of the pairs where both are valid, from the moments
    of one pass: ``(E[ab] - E[a]E[b]) / sqrt(var a var b)``. Centring first (two passes) makes
    Dask hold every chunk of the inputs until their means are known, i.e. the whole input.
    The moments are taken about the mean of the first chunk, so the cancellation is small."""
    mask = a.notnull() & b.notnull()
    a, b = a.where(mask), b.where(mask)
    a, b = a - _first_chunk_mean(a, dims), b - _first_chunk_mean(b, dims)
    ma, mb = wmean(a, w, dims), wmean(b, w, dims)
    cov = wmean(a * b, w, dims) - ma * mb
    return cov / np.sqrt((wmean(a * a, w, dims) - ma * ma) * (wmean(b * b, w, dims) - mb * mb))


def _corr(a: xr.DataArray, b: xr.DataArray, w, dims, centered: bool) -> xr.DataArray:
    if centered:
        return centred_corr(a, b, w, dims)
    mask = a.notnull() & b.notnull()
    a, b = a.where(mask), b.where(mask)
    return wmean(a * b, w, dims) / np.sqrt(wmean(a * a, w, dims) * wmean(b * b, w, dims))


def pearson_r(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True,
              dim: Dim = None) -> xr.DataArray:
    """Pearson correlation of pred and truth over ``dim`` (weighted means,
    variances and covariance with cos(lat) weights on lat/lon grids)."""
    pred, truth, axes = check_pair(pred, truth)
    a, b = pred.astype("float64"), truth.astype("float64")
    dims = reduce_dims(a - b, dim)
    return named(_corr(a, b, weights_for(truth, axes, weighted), dims, True), "pearson_r")


def acc(pred: xr.DataArray, truth: xr.DataArray, climatology: xr.DataArray, *,
        weighted: bool = True, dim: Dim = None, centered: bool = False) -> xr.DataArray:
    """Anomaly correlation coefficient.

    Anomalies ``a = pred - climatology`` and ``b = truth - climatology``
    (``climatology`` broadcasts against the fields, e.g. a (lat, lon) mean or
    a field per time step). The default is the uncentred ACC used in NWP
    verification, ``mean(a b) / sqrt(mean(a^2) mean(b^2))``; with
    ``centered=True`` the mean anomalies over ``dim`` are removed first.
    """
    pred, truth, axes = check_pair(pred, truth)
    if not isinstance(climatology, xr.DataArray):
        raise TypeError(f"climatology must be an xarray.DataArray, got {type(climatology).__name__}")
    if axes is not None:
        for d in axes.spatial:
            if d in climatology.dims and climatology.sizes[d] != truth.sizes[d]:
                raise DataError(
                    f"climatology grid {grid_shape(climatology, axes.spatial)} differs from the truth grid "
                    f"{grid_shape(truth, axes.spatial)}."
                )
        climatology = snap_coords(climatology, truth, axes.spatial, "climatology")
    clim = climatology.astype("float64")
    a, b = pred.astype("float64") - clim, truth.astype("float64") - clim
    dims = reduce_dims(a - b, dim)
    return named(_corr(a, b, weights_for(truth, axes, weighted), dims, centered), "acc")
