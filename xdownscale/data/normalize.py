"""Normalisation statistics fitted on training data and stored in checkpoints."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError

MAX_STAT_SAMPLES = 64


def _subsample_time(da: xr.DataArray, time_dim: str | None) -> xr.DataArray:
    if time_dim is None or time_dim not in da.dims or da.sizes[time_dim] <= MAX_STAT_SAMPLES:
        return da
    idx = np.linspace(0, da.sizes[time_dim] - 1, MAX_STAT_SAMPLES).round().astype(int)
    return da.isel({time_dim: np.unique(idx)})


def fit_stats(da: xr.DataArray, time_dim: str | None = None) -> dict:
    """Mean, standard deviation, minimum, maximum and share of exact zeros of a field (NaN skipped).

    At most 64 evenly spaced time steps are read, so this stays cheap on long
    Zarr archives. A constant field gets std 1 so normalisation stays finite.
    """
    sample = _subsample_time(da, time_dim).astype("float64")
    import dask

    reductions = dask.compute(sample.mean(), sample.std(), sample.min(), sample.max(), (sample == 0).sum(),
                              sample.count())
    mean, std, vmin, vmax, zeros, count = (float(r.values) for r in reductions)
    if not np.isfinite(mean):
        raise DataError(
            f"variable {da.name!r} has no finite values in the training data (all NaN?); "
            "check the variable name, the time selection and the fill values"
        )
    if not std > 0:
        std = 1.0
    return {"mean": mean, "std": std, "min": vmin, "max": vmax, "zero_share": zeros / max(count, 1.0)}


ZERO_SHARE = 0.01  # exact zeros on at least 1 % of the cells: a quantity that stops at zero (rain, snow)


def zero_bounded(stats: dict) -> bool:
    """Whether a training field (its :func:`fit_stats`) is a quantity bounded below by zero: never
    negative, and exactly zero on at least :data:`ZERO_SHARE` of its finite cells (dry hours). The
    zeros keep a field that merely happened to stay positive (temperature in degC in a warm season)
    from being clipped."""
    return bool(stats["min"] >= 0 and stats.get("zero_share", 0.0) >= ZERO_SHARE)


def scadd_bounds(stats: dict, lower: float | None = None, upper: float | None = None) -> dict:
    """Physical bounds for the scadd constraint: the training range widened by half its
    width on each side; the lower bound is 0 for a field that is never negative."""
    span = stats["max"] - stats["min"] or stats["std"]
    lo = 0.0 if stats["min"] >= 0 else stats["min"] - 0.5 * span
    hi = stats["max"] + 0.5 * span
    return {"lower": float(lo if lower is None else lower), "upper": float(hi if upper is None else upper)}


def normalize(values: np.ndarray, stats: dict) -> np.ndarray:
    return (values - stats["mean"]) / stats["std"]


def denormalize(values: np.ndarray, stats: dict) -> np.ndarray:
    return values * stats["std"] + stats["mean"]


def residual_std(hr_values: np.ndarray, factor: int, row_weights: np.ndarray, skip: str | None,
                 coarse: np.ndarray | None = None) -> float | None:
    """Spread of (fine - interpolation of its coarsening) on sample fields (T, H, W): the
    physical size of what a residual network has to learn. None without a skip.
    ``coarse``: the real coarse fields of a pair (T, h, w); then the root-mean-square of
    (fine - interpolation of coarse), which includes a systematic bias of the source."""
    if skip is None:
        return None
    import torch

    from ..nn.blocks import interpolate
    from .fill import fill_nearest
    from .pairs import coarsen_block

    real = coarse is not None
    coarse = coarsen_block(hr_values, factor, row_weights) if coarse is None else coarse.astype("float64")
    fill = np.nanmean(hr_values)
    coarse = np.nan_to_num(fill_nearest(coarse), nan=fill)  # the inputs the network will see
    base = interpolate(torch.from_numpy(coarse[:, None]), factor, skip)[:, 0].numpy()
    resid = hr_values - base
    value = float(np.sqrt(np.nanmean(resid**2)) if real else np.nanstd(resid))
    return value if np.isfinite(value) and value > 0 else None
