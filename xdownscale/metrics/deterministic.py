"""Deterministic verification metrics for downscaled fields.

Every function takes a prediction and a reference ("truth") DataArray on the
same grid and returns a DataArray reduced over ``dim`` (all dimensions by
default). Conventions shared by all functions:

* ``weighted=True`` averages over (y, x) with cos(latitude) cell weights on
  lat/lon grids (:func:`xdownscale.grid.area_weights`); projected grids and
  arrays without recognisable horizontal axes are averaged uniformly.
* A cell that is NaN in either input is left out of every mean.
* Dask-backed inputs stay lazy (SSIM needs the horizontal dimensions in one
  chunk each and rechunks them if necessary).
* pred and truth must have the same grid shape: a :class:`DataError` names
  both shapes otherwise. Coordinates equal to within round-off are snapped to
  ``pred``'s so that xarray's alignment does not silently drop cells.
"""
from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import DataError, GridError
from ..grid.cf import GridAxes, area_weights, find_axes

K1, K2 = 0.01, 0.03
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as in skimage
SSIM_PAD = (SSIM_WIN - 1) // 2  # border strip left out of the SSIM mean
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

Dim = Hashable | Iterable[Hashable] | None

__all__ = [
    "mse", "rmse", "mae", "bias", "max_abs_error", "psnr", "ssim", "ms_ssim",
    "pearson_r", "acc", "check_pair", "MS_SSIM_WEIGHTS",
]


def grid_axes(da: xr.DataArray) -> GridAxes | None:
    """:func:`find_axes`, or None when the array has no horizontal axes."""
    try:
        return find_axes(da)
    except GridError:
        return None


def _shape(da: xr.DataArray, dims: Sequence[Hashable]) -> str:
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
    ps, ts = _shape(pred, axes.spatial), _shape(truth, axes.spatial)
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


def _pair_error(pred, truth, dim):
    pred, truth, axes = check_pair(pred, truth)
    err = pred.astype("float64") - truth.astype("float64")
    return err, weights_for(truth, axes, True), axes, reduce_dims(err, dim)


def squared_units(units: str) -> str:
    """``"K"`` -> ``"K^2"``, ``"kg m-2"`` -> ``"(kg m-2)^2"``, ``""`` -> ``""``."""
    if not units:
        return ""
    return f"{units}^2" if units.isalnum() else f"({units})^2"


def _named(da: xr.DataArray, name: str) -> xr.DataArray:
    da = da.rename(name)
    da.attrs = {}
    return da


def mse(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean squared error ``mean((pred - truth)**2)`` over ``dim``."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return _named(wmean(err**2, w if weighted else None, dims), "mse")


def rmse(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Root mean squared error: ``sqrt(mse)`` (the mean is taken before the root)."""
    return _named(np.sqrt(mse(pred, truth, weighted=weighted, dim=dim)), "rmse")


def mae(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean absolute error ``mean(|pred - truth|)`` over ``dim``."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return _named(wmean(abs(err), w if weighted else None, dims), "mae")


def bias(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, dim: Dim = None) -> xr.DataArray:
    """Mean error ``mean(pred - truth)``: positive when the prediction is too high."""
    err, w, _, dims = _pair_error(pred, truth, dim)
    return _named(wmean(err, w if weighted else None, dims), "bias")


def max_abs_error(pred: xr.DataArray, truth: xr.DataArray, *, dim: Dim = None) -> xr.DataArray:
    """Largest absolute error ``max(|pred - truth|)`` over ``dim`` (NaN skipped)."""
    err, _, _, dims = _pair_error(pred, truth, dim)
    return _named(abs(err).max(dim=dims, skipna=True), "max_abs_error")


def data_range_of(truth: xr.DataArray, data_range=None):
    """``data_range`` if given, else ``max(truth) - min(truth)`` over the whole
    array (NaN skipped; lazy on Dask)."""
    if data_range is not None:
        return data_range
    t = truth.astype("float64")
    return t.max(skipna=True) - t.min(skipna=True)


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
    return _named(out, "psnr")


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
    return _named(_field_mean(fields, pred - truth, dim, axes), "ssim")


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
        return _named(_field_mean(nan, both, dim, axes), "ms_ssim")
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
    return _named(_field_mean(out, both, dim, axes), "ms_ssim")


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
    return _named(_corr(a, b, weights_for(truth, axes, weighted), dims, True), "pearson_r")


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
                    f"climatology grid {_shape(climatology, axes.spatial)} differs from the truth grid "
                    f"{_shape(truth, axes.spatial)}."
                )
        climatology = snap_coords(climatology, truth, axes.spatial, "climatology")
    clim = climatology.astype("float64")
    a, b = pred.astype("float64") - clim, truth.astype("float64") - clim
    dims = reduce_dims(a - b, dim)
    return _named(_corr(a, b, weights_for(truth, axes, weighted), dims, centered), "acc")
