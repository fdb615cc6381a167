"""Distribution (bias) metrics: quantile biases and wet-day frequency.

``quantile_bias(pred, truth, q)``: the q-quantile of the prediction minus that of
the truth, taken per grid cell along time (or over the whole field when there is
no time axis), then averaged over the grid (cos-latitude weighted on lat/lon
grids). ``wet_day_frequency``: the fraction of values at or above a threshold
(precipitation), and its bias. The mean bias is :func:`.deterministic.bias`.
"""
from __future__ import annotations

import warnings

import xarray as xr

from .deterministic import check_pair, rechunk_for_core, weights_for, wmean

DEFAULT_QUANTILES = (0.01, 0.5, 0.99)


def quantile_name(q: float) -> str:
    """``0.01 -> "quantile_bias_q01"``, ``0.5 -> "quantile_bias_q50"``, ``0.999 -> "quantile_bias_q99.9"``."""
    pct = f"{100 * float(q):g}"
    return f"quantile_bias_q{pct.zfill(2) if '.' not in pct else pct}"


def _valid_both(pred: xr.DataArray, truth: xr.DataArray):
    both = pred.notnull() & truth.notnull()
    return pred.where(both), truth.where(both)


def quantile_over(da: xr.DataArray, q, dims: list) -> xr.DataArray:
    """The q-quantile(s) over ``dims`` (a list ``q`` keeps the dim ``quantile``, without its coordinate)."""
    da = rechunk_for_core(da, dims)  # a quantile needs each reduced dimension in one chunk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        return da.quantile(q, dim=dims, skipna=True).drop_vars("quantile")


def quantile_bias(pred: xr.DataArray, truth: xr.DataArray, q: float, *, weighted: bool = True) -> xr.DataArray:
    """q-quantile of ``pred`` minus that of ``truth`` (per cell along time, then the grid mean)."""
    pred, truth, axes = check_pair(pred, truth)
    p, t = _valid_both(pred, truth)
    if axes is not None and axes.time in truth.dims:
        diff = quantile_over(p, q, [axes.time]) - quantile_over(t, q, [axes.time])
        return wmean(diff, weights_for(diff, axes, weighted), list(diff.dims))
    dims = list(truth.dims)
    return quantile_over(p, q, dims) - quantile_over(t, q, dims)


def wet_day_frequency(da: xr.DataArray, threshold: float, *, weighted: bool = True) -> xr.DataArray:
    """Area-weighted fraction of (finite) values >= ``threshold``."""
    axes = check_pair(da, da)[2]
    wet = (da >= threshold).where(da.notnull())
    return wmean(wet, weights_for(da, axes, weighted), list(da.dims))


def bias_metrics(pred: xr.DataArray, truth: xr.DataArray, *, quantiles=DEFAULT_QUANTILES,
                 wet_threshold: float | None = None, weighted: bool = True) -> dict[str, xr.DataArray]:
    """``{quantile_bias_qXX: ..., [wet_day_frequency, wet_day_frequency_bias]}``."""
    out = {quantile_name(q): quantile_bias(pred, truth, q, weighted=weighted) for q in quantiles}
    if wet_threshold is not None:
        p, t = _valid_both(*check_pair(pred, truth)[:2])
        freq = wet_day_frequency(p, wet_threshold, weighted=weighted)
        out["wet_day_frequency"] = freq
        out["wet_day_frequency_bias"] = freq - wet_day_frequency(t, wet_threshold, weighted=weighted)
    return out
