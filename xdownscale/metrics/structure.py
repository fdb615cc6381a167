"""Space and time structure: spectra, persistence, the climatological pattern, links between variables.

* ``log_spectral_distance`` (:mod:`.spectral`): for every prediction, deterministic
  or ensemble, with a Hann taper and missing cells filled with the field mean;
* ``lag1_autocorrelation_bias``: per cell, the lag-1 autocorrelation in time of
  the prediction minus the truth's, averaged over the grid (too smooth in time:
  positive; too noisy: negative);
* ``climatological_mean_correlation``: the (area-weighted) spatial Pearson
  correlation between the time means of the prediction and of the truth;
* ``multivariate_correlation_bias``: for each pair of variables of a Dataset,
  per cell the correlation in time between them in the prediction minus that in
  the truth, averaged over the grid.

Ensembles are scored member by member and averaged over the members, except the
climatological mean, which is taken over all members.
"""
from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from ..errors import DataError
from .deterministic import centred_corr, check_pair, grid_axes, pearson_r, weights_for, wmean

__all__ = ["lag1_autocorrelation", "lag1_autocorrelation_bias", "climatological_mean_correlation",
           "multivariate_correlation_bias", "structure_summary"]


def _time(da: xr.DataArray) -> str:
    axes = grid_axes(da)
    if axes is None or axes.time is None or axes.time not in da.dims:
        raise DataError(f"this score needs a time dimension, but none was found among {tuple(da.dims)}")
    return axes.time


def _plain(da: xr.DataArray) -> xr.DataArray:
    return da.drop_vars([c for c in da.coords if c not in da.dims])


def _corr_over(a: xr.DataArray, b: xr.DataArray, dim: str) -> xr.DataArray:
    """Pearson correlation along ``dim`` of the pairs where both are finite (one pass over Dask data)."""
    return centred_corr(a, b, None, [dim])


def lag1_autocorrelation(da: xr.DataArray, dim: str | None = None) -> xr.DataArray:
    """Lag-1 autocorrelation along time at every cell: the Pearson correlation of
    ``x[1:]`` with ``x[:-1]`` (as ``pandas.Series.autocorr(1)``)."""
    dim = dim or _time(da)
    if da.sizes[dim] < 3:
        raise DataError(f"a lag-1 autocorrelation needs at least 3 time steps, got {da.sizes[dim]}")
    x = _plain(da.astype("float64")).drop_vars(dim, errors="ignore")
    n = x.sizes[dim]
    later = x.isel({dim: slice(1, None)}).assign_coords({dim: np.arange(n - 1)})
    earlier = x.isel({dim: slice(None, -1)}).assign_coords({dim: np.arange(n - 1)})
    return _corr_over(later, earlier, dim).rename("lag1_autocorrelation")


def lag1_autocorrelation_bias(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True,
                              member_dim: str = "member") -> xr.DataArray:
    """Grid mean of ``r1(pred) - r1(truth)`` (members averaged)."""
    pred, truth, axes = check_pair(pred, truth)
    dim = _time(truth)
    diff = lag1_autocorrelation(pred, dim) - lag1_autocorrelation(truth, dim)
    if member_dim in diff.dims:
        diff = diff.mean(member_dim)
    return wmean(diff, weights_for(truth, axes, weighted), list(diff.dims))


def climatological_mean_correlation(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True,
                                    member_dim: str = "member") -> xr.DataArray:
    """Spatial Pearson correlation of the time-mean fields (cos-latitude weighted)."""
    pred, truth, _ = check_pair(pred, truth)
    dim = _time(truth)
    # float64 sums: a float32 mean's round-off depends on the Dask chunking (seen: 2e-6 in the correlation)
    pm = pred.astype("float64").mean([d for d in (dim, member_dim) if d in pred.dims])
    tm = truth.astype("float64").mean(dim)
    return pearson_r(_plain(pm), _plain(tm), weighted=weighted)


def multivariate_correlation_bias(pred: xr.Dataset, truth: xr.Dataset, *, weighted: bool = True,
                                  member_dim: str = "member") -> xr.DataArray:
    """Per pair of variables, the grid mean of ``corr_t(a, b)[pred] - corr_t(a, b)[truth]``.

    Returns a DataArray over dim ``pair`` labelled ``"a~b"`` (NaN-free pairs of
    cells only); a :class:`DataError` when there are fewer than 2 variables.
    """
    names = [v for v in truth.data_vars if v in pred.data_vars]
    if len(names) < 2:
        raise DataError(f"a multivariate correlation needs at least 2 variables in both, got {names}")
    first = truth[names[0]]
    dim = _time(first)
    axes = grid_axes(first)
    w = weights_for(first, axes, weighted)
    labels, values = [], []
    for a, b in itertools.combinations(names, 2):
        cp = _corr_over(_plain(pred[a].astype("float64")), _plain(pred[b].astype("float64")), dim)
        ct = _corr_over(_plain(truth[a].astype("float64")), _plain(truth[b].astype("float64")), dim)
        diff = cp - ct
        if member_dim in diff.dims:
            diff = diff.mean(member_dim)
        labels.append(f"{a}~{b}")
        values.append(wmean(diff, w, list(diff.dims)))
    out = xr.concat(values, dim="pair").assign_coords(pair=labels)
    return out.rename("multivariate_correlation_bias")


def structure_summary(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True,
                      member_dim: str = "member") -> dict[str, xr.DataArray]:
    """The structure entries of ``evaluate(..., suite="climate")`` for one variable."""
    from .spectral import log_spectral_distance

    out = {}
    try:
        lsd = log_spectral_distance(pred, truth, window="hann", fill_missing=True)
    except DataError:  # fields too small, or no complete field
        lsd = np.nan
    out["log_spectral_distance"] = xr.DataArray(lsd)
    has_time = truth.sizes.get(_time_or_none(truth), 0)
    if has_time >= 3:
        out["lag1_autocorrelation_bias"] = lag1_autocorrelation_bias(pred, truth, weighted=weighted,
                                                                     member_dim=member_dim)
    if has_time >= 1:
        out["climatological_mean_correlation"] = climatological_mean_correlation(
            pred, truth, weighted=weighted, member_dim=member_dim)
    return out


def _time_or_none(da: xr.DataArray):
    axes = grid_axes(da)
    return axes.time if axes is not None and axes.time in da.dims else None
