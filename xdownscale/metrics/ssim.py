"""SSIM and multi-scale SSIM of 2-D fields (Gaussian window, NaN cells left out, area weights).

Split from :mod:`.deterministic` (whose names it still exports).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import DataError
from ..grid.cf import GridAxes, find_axes
from .common import Dim, check_pair, data_range_of, named, rechunk_for_core, reduce_dims, weights_for

K1, K2 = 0.01, 0.03
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as in skimage
SSIM_PAD = (SSIM_WIN - 1) // 2  # border strip left out of the SSIM mean
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

__all__ = ["ssim", "ms_ssim", "ms_ssim_scales", "MS_SSIM_WEIGHTS", "SSIM_WIN"]


def _gauss(a: np.ndarray) -> np.ndarray:
    sigma = (0.0,) * (a.ndim - 2) + (SSIM_SIGMA, SSIM_SIGMA)
    return ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=SSIM_TRUNCATE)


def _ssim_core(x, y, r, *, w, part):
    """Area-weighted mean over the valid interior of the SSIM (``part="ssim"``)
    or contrast-structure (``part="cs"``) map of fields on the last two axes.

    Cells that are NaN in either field are left out: the local means, variances and
    covariance of a window are taken over its valid cells only (the Gaussian weights
    renormalised to them), and the map is averaged over the valid cells of the interior.
    Without NaN this is exactly the usual SSIM. A field without a valid interior cell
    gives NaN (and a warning)."""
    bad = np.isnan(x) | np.isnan(y)
    x, y = np.where(bad, 0.0, x), np.where(bad, 0.0, y)
    if bad.any():
        m = _gauss((~bad).astype("float64"))
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(bad, np.nan, 1.0 / np.where(m > 0, m, np.nan))

        def g(a):
            return _gauss(a) * norm
    else:
        g = _gauss
    ux, uy = g(x), g(y)
    vx = g(x * x) - ux * ux
    vy = g(y * y) - uy * uy
    vxy = g(x * y) - ux * uy
    r = np.asarray(r, dtype="float64")
    r = r.reshape(r.shape + (1, 1))
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2
    a2, b2 = 2 * vxy + c2, vx + vy + c2
    if part == "cs":
        smap = a2 / b2
    else:
        smap = ((2 * ux * uy + c1) * a2) / ((ux**2 + uy**2 + c1) * b2)
    p = SSIM_PAD
    crop = (Ellipsis, slice(p, -p), slice(p, -p))
    valid = ~bad[crop]
    wc = np.where(valid, w[crop], 0.0)
    num = np.sum(np.where(valid, smap[crop], 0.0) * wc, axis=(-2, -1))
    den = np.sum(wc, axis=(-2, -1))
    empty = int(np.count_nonzero(den == 0))
    if empty:
        warnings.warn(
            f"ssim: {empty} field(s) have no cell that is valid (not NaN) in both inputs inside the "
            f"{SSIM_PAD}-cell border; their SSIM is NaN. Check the NaN masks of the prediction and the "
            "reference.", RuntimeWarning, stacklevel=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _ssim_fields(pred, truth, axes, r, weighted, part) -> xr.DataArray:
    """Per-field mean SSIM (or CS) over the horizontal dims."""
    ny, nx = truth.sizes[axes.y], truth.sizes[axes.x]
    if min(ny, nx) < SSIM_WIN:
        raise DataError(
            f"SSIM needs fields of at least {SSIM_WIN}x{SSIM_WIN} cells (Gaussian window sigma=1.5, "
            f"truncate=3.5); got {axes.y}={ny}, {axes.x}={nx}."
        )
    w = weights_for(truth, axes, weighted)
    w = np.ones((ny, nx)) if w is None else np.asarray(w.transpose(*axes.spatial).values, "float64")
    if not isinstance(r, xr.DataArray):
        r = xr.DataArray(float(r))
    core = list(axes.spatial)
    pred, truth = rechunk_for_core(pred, core), rechunk_for_core(truth, core)
    return xr.apply_ufunc(
        _ssim_core, pred.astype("float64"), truth.astype("float64"), r.astype("float64"),
        input_core_dims=[core, core, []], output_core_dims=[[]],
        kwargs={"w": w, "part": part}, dask="parallelized", output_dtypes=["float64"],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def _field_mean(fields: xr.DataArray, both: xr.DataArray, dim: Dim, axes: GridAxes) -> xr.DataArray:
    dims = [d for d in reduce_dims(both, dim) if d not in axes.spatial]
    return fields.mean(dim=dims, skipna=True) if dims else fields


def ssim(pred: xr.DataArray, truth: xr.DataArray, *, data_range=None, weighted: bool = True,
         dim: Dim = None) -> xr.DataArray:
    """Structural similarity index (Wang et al. 2004) of each 2-D field.

    Local statistics use a Gaussian window (sigma=1.5, truncated at 3.5 sigma,
    i.e. 11x11), population covariances, K1=0.01, K2=0.03 and ``data_range``
    (default: the range of ``truth`` over the whole array). The SSIM map is
    averaged over the interior that the window fits in (a 5-cell border is left
    out), exactly as ``skimage.metrics.structural_similarity(x, y,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=R)``; with ``weighted=True`` on lat/lon grids the map is averaged
    with cos(lat) weights instead.

    NaN cells (in either input, e.g. the sea of a land-only field) are left out:
    each window's means, variances and covariance are taken over its valid cells
    (Gaussian weights renormalised to them) and the map is averaged over the
    valid interior cells. A field with no valid interior cell gives NaN and a
    ``RuntimeWarning``.
    The horizontal dims are always reduced; per-field values are then averaged
    over the other dimensions in ``dim`` (all by default).
    """
    pred, truth, axes = check_pair(pred, truth)
    axes = axes or find_axes(truth)
    r = data_range_of(truth, data_range)
    fields = _ssim_fields(pred, truth, axes, r, weighted, "ssim")
    return named(_field_mean(fields, pred - truth, dim, axes), "ssim")


def ms_ssim_scales(ny: int, nx: int, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Number of MS-SSIM scales that fit: the scales j = 0, 1, ... whose
    field, halved j times (rounding down), is still at least 11 cells on its
    shorter side, capped at ``max_scales``."""
    n = 0
    while n < max_scales and min(ny, nx) // 2**n >= SSIM_WIN:
        n += 1
    return n


def _nanmean(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": an all-NaN block is NaN
        return np.nanmean(a, axis=axis)


def _pool2(da: xr.DataArray, axes: GridAxes) -> xr.DataArray:
    """2x2 average pooling of the valid cells (odd last row/column dropped; NaN only where
    the whole block is NaN)."""
    return da.coarsen({axes.y: 2, axes.x: 2}, boundary="trim").reduce(_nanmean)


def ms_ssim(pred: xr.DataArray, truth: xr.DataArray, *, data_range=None, weighted: bool = True,
            dim: Dim = None, weights: Sequence[float] = MS_SSIM_WEIGHTS) -> xr.DataArray:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of each 2-D field.

    ``MS-SSIM = prod_{j<M} cs_j ** w_j * ssim_M ** w_M``: the mean
    contrast-structure term at scales 1..M-1 and the full SSIM at the last
    scale M, with 2x2 average pooling between scales, the window and constants
    of :func:`ssim`, and one ``data_range`` (default: range of ``truth``) at all
    scales. Negative per-scale terms are clipped to 0 before the power.

    Scale rule: ``M = ms_ssim_scales(ny, nx)``, i.e. up to 5 scales while the
    pooled field is still at least 11 cells on its shorter side (>= 176 cells
    for all 5). With fewer than 5 scales the first M weights are used,
    renormalised to sum to 1. If fewer than 2 scales fit (shorter side < 22)
    the result is NaN and a warning is issued. NaN cells are left out as in
    :func:`ssim`; pooling averages the valid cells of each 2x2 block.
    """
    pred, truth, axes = check_pair(pred, truth)
    axes = axes or find_axes(truth)
    both = pred - truth
    m = ms_ssim_scales(truth.sizes[axes.y], truth.sizes[axes.x], len(weights))
    if m < 2:
        warnings.warn(
            f"ms_ssim: fields of {axes.y}={truth.sizes[axes.y]}, {axes.x}={truth.sizes[axes.x]} are too "
            f"small for 2 scales (the shorter side must be >= {2 * SSIM_WIN}); returning NaN.",
            RuntimeWarning, stacklevel=2,
        )
        nan = both.isel({axes.y: 0, axes.x: 0}, drop=True).astype("float64") * np.nan
        return named(_field_mean(nan, both, dim, axes), "ms_ssim")
    wts = np.asarray(weights[:m], dtype="float64")
    wts = wts / wts.sum()
    r = data_range_of(truth, data_range)
    x, y = pred.astype("float64"), truth.astype("float64")
    x, y = x.where(y.notnull()), y.where(x.notnull())  # one mask for both, so pooling averages the same cells
    out = None
    for j in range(m):
        part = "ssim" if j == m - 1 else "cs"
        term = _ssim_fields(x, y, axes, r, weighted, part).clip(min=0.0) ** wts[j]
        out = term if out is None else out * term
        if j < m - 1:
            x, y = _pool2(x, axes), _pool2(y, axes)
    return named(_field_mean(out, both, dim, axes), "ms_ssim")
