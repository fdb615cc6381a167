"""Verification metrics for downscaled fields, and :func:`evaluate` to get them all.

Deterministic (:mod:`.deterministic`): mse, rmse, mae, bias, max_abs_error,
psnr, ssim, ms_ssim, pearson_r, acc. Conservation (:mod:`.conservation`):
mass_violation, relative_mass_violation, negative_pixels. Probabilistic
(:mod:`.probabilistic`): crps_ensemble, rank_histogram, spread_skill.
Spectral (:mod:`.spectral`): power_spectrum. Climate suite
(``evaluate(..., suite="climate")``): distribution scores (:mod:`.distribution`),
climate-index biases through xclim (:mod:`.indices`), space and time structure
(:mod:`.structure`).
"""
from __future__ import annotations

import xarray as xr

from ..errors import DataError
from ..grid.cf import find_axes
from .bias import DEFAULT_QUANTILES, bias_metrics, quantile_bias, wet_day_frequency
from .climate import SUITES, check_suite, climate_summary, describe, evaluate_dataset, is_index_bias
from .conservation import infer_factor, mass_violation, negative_pixels, relative_mass_violation
from .deterministic import (
    MS_SSIM_WEIGHTS,
    acc,
    bias,
    check_pair,
    data_range_of,
    mae,
    max_abs_error,
    ms_ssim,
    mse,
    pearson_r,
    psnr,
    rechunk_for_core,
    rmse,
    squared_units,
    ssim,
    weights_for,
    wmean,
)
from .distribution import (
    CLIMATE_QUANTILES,
    distribution_cells,
    distribution_scores,
    ks_statistic,
    log_histogram_distance,
    perkins_skill_score,
    quantile_bias_map,
    wasserstein,
)
from .passes import compute_in_passes
from .probabilistic import crps_ensemble, ensemble_scores, rank_flatness, rank_histogram, spread_skill
from .spectral import log_spectral_distance, power_spectrum
from .structure import (
    climatological_mean_correlation,
    lag1_autocorrelation,
    lag1_autocorrelation_bias,
    multivariate_correlation_bias,
)

__all__ = [
    "evaluate", "mse", "rmse", "mae", "bias", "max_abs_error", "psnr", "ssim", "ms_ssim",
    "pearson_r", "acc", "mass_violation", "relative_mass_violation", "negative_pixels",
    "infer_factor", "crps_ensemble", "rank_histogram", "rank_flatness", "spread_skill", "power_spectrum",
    "log_spectral_distance", "MS_SSIM_WEIGHTS", "bias_metrics", "quantile_bias", "wet_day_frequency",
    "SUITES", "CLIMATE_QUANTILES", "distribution_scores", "perkins_skill_score", "wasserstein", "ks_statistic",
    "log_histogram_distance", "quantile_bias_map", "lag1_autocorrelation", "lag1_autocorrelation_bias",
    "climatological_mean_correlation", "multivariate_correlation_bias",
]

_LONG_NAMES = {
    "mse": "mean squared error",
    "rmse": "root mean squared error",
    "mae": "mean absolute error",
    "bias": "mean error (prediction minus truth)",
    "max_abs_error": "maximum absolute error",
    "psnr": "peak signal-to-noise ratio",
    "ssim": "structural similarity index",
    "ms_ssim": "multi-scale structural similarity index",
    "pearson_r": "Pearson correlation coefficient",
    "acc": "anomaly correlation coefficient",
    "mass_violation": "mean absolute difference between the coarsened prediction and the low-resolution input",
    "relative_mass_violation": "mass violation relative to the mean absolute low-resolution input",
    "negative_count": "number of negative values in the prediction",
    "negative_mean": "mean of the negative values in the prediction (0 if none)",
    "crps": "continuous ranked probability score",
    "spread": "ensemble spread (root mean ensemble variance)",
    "spread_skill_ratio": "spread-skill ratio sqrt((m+1)/m) spread / rmse of the ensemble mean (1: calibrated)",
    "rank_histogram": "rank histogram counts of the truth among the members",
    "rank_flatness": "rank histogram reliability index sum |p_k - 1/(m+1)| (0: flat)",
    "spectrum": "radially averaged power spectrum of the members",
    "spectrum_truth": "radially averaged power spectrum of the truth",
    "lsd": "log spectral distance of the member spectra from the truth spectrum",
    "wet_day_frequency": "fraction of predicted values at or above the wet threshold",
    "wet_day_frequency_bias": "wet-day frequency of the prediction minus that of the truth",
}


def _long_name(name: str) -> str:
    if name.startswith("quantile_bias_q"):
        return f"{name[len('quantile_bias_q'):]}% quantile of the prediction minus that of the truth"
    return _LONG_NAMES[name]


def _units(name: str, u: str) -> str:
    if name == "mse":
        return squared_units(u)
    if name in ("rmse", "mae", "bias", "max_abs_error", "mass_violation", "negative_mean", "crps", "spread") or \
            name.startswith("quantile_bias"):
        return u
    if name in ("spectrum", "spectrum_truth"):
        return squared_units(u)
    return "dB" if name in ("psnr", "lsd") else "1"


def evaluate(
    pred: xr.DataArray | xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    *,
    suite: str = "default",
    lr: xr.DataArray | None = None,
    factor: int | None = None,
    climatology: xr.DataArray | None = None,
    weighted: bool = True,
    per_time: bool = False,
    member_dim: str = "member",
    compute: bool = True,
    quantiles=None,
    wet_threshold: float | None = None,
    indices=None,
    index_freq: str = "YS",
    bins: int = 50,
    maps: bool = False,
) -> xr.Dataset:
    """All verification metrics of a prediction against the truth, as a Dataset.

    Parameters
    ----------
    pred, truth : DataArray or Dataset
        Prediction and reference on the same (y, x) grid; ``pred`` may carry an
        ensemble dimension ``member_dim`` that ``truth`` lacks. Datasets are
        scored variable by variable, every name prefixed ``<variable>_``
        (``lr`` and ``climatology`` are then Datasets too).
    suite : {"default", "climate"}
        ``"default"``: the scores listed below. ``"climate"`` adds what climate
        users judge a product by (see Returns); it needs a time dimension and
        excludes ``per_time``.
    lr : DataArray, optional
        Low-resolution input: adds ``mass_violation`` and
        ``relative_mass_violation`` (coarsened prediction against ``lr``).
    factor : int, optional
        Downscaling factor; inferred from the sizes of ``pred`` and ``lr`` when
        not given (a :class:`DataError` if they are not an integer multiple).
    climatology : DataArray, optional
        Broadcastable to the fields: adds the anomaly correlation ``acc``.
    weighted : bool
        cos(latitude)-weighted means over (y, x) on lat/lon grids (uniform on
        projected grids or when False). SSIM maps are weighted too.
    per_time : bool
        Keep the time dimension (found by :func:`find_axes`) instead of
        averaging over it: every variable is then a time series.
    member_dim : str
        Name of the ensemble dimension. When ``pred`` has it, ``crps`` is added
        and the deterministic metrics use the ensemble mean; the conservation
        metrics look at every member.
    compute : bool
        Compute the (small) result; ``False`` keeps it lazy. On Dask input the
        inputs are rechunked once to whole fields and the data range is taken
        first; with ``suite="climate"`` the per-cell distribution scores, which
        need the whole time axis of each cell, are computed apart, block by block
        over grid rows (:mod:`.passes`): the input is read once per block and the
        peak memory follows the block size, not the input size. Chunk the input
        in time (as files are stored): whole-time chunks make the per-field
        scores gather the whole input.
    quantiles : sequence of float, optional
        Adds ``quantile_bias_qXX`` (per-cell quantile along time of the prediction
        minus the truth's, grid-averaged) for each; ``()`` or ``per_time`` skips them.
        Default: (0.01, 0.5, 0.99) of the (ensemble-mean) prediction; with the
        climate suite (0.01, 0.05, 0.5, 0.95, 0.99, 0.999) of the pooled members.
    wet_threshold : float, optional
        Adds ``wet_day_frequency`` and ``wet_day_frequency_bias`` (values >= the
        threshold, in the field's units): for precipitation.
    indices : sequence of str, optional
        Climate suite: the xclim indices to score (:data:`.indices.INDICES`);
        default: all that fit the variable's CF metadata (none when it is neither
        an air temperature nor a precipitation). One that does not fit raises a
        :class:`DataError`.
    index_freq : str
        Climate suite: the period of each index value (xclim ``freq``, ``"YS"``).
    bins : int
        Climate suite: histogram bins of the Perkins score and log-histogram distance.
    maps : bool
        Climate suite: also return the per-cell values, as ``<name>_map``.

    Returns
    -------
    Dataset
        One variable per metric (scalars, or over time with ``per_time``):
        mse, rmse, mae, bias, max_abs_error, psnr, ssim, ms_ssim, pearson_r,
        [acc], [mass_violation, relative_mass_violation], negative_count,
        negative_mean, [crps]; each with ``long_name`` and ``units`` attrs.
        Ensembles also get (:func:`ensemble_scores`): spread,
        spread_skill_ratio, rank_histogram (dim ``rank``), rank_flatness,
        spectrum and spectrum_truth (dim ``wavenumber``) and lsd (dB).
        ``psnr``/``ssim`` use the range of ``truth`` as data range; ``ms_ssim``
        is NaN (with a warning) for fields smaller than 22 cells a side.

        ``suite="climate"`` adds, cell by cell along time then area-weighted:
        perkins_skill_score, wasserstein, ks_statistic, log_histogram_distance,
        quantile_bias_q01 ... q99.9 (:mod:`.distribution`; ensembles: members
        pooled, and ``<name>_per_member`` over ``member_dim``);
        log_spectral_distance (dB), lag1_autocorrelation_bias,
        climatological_mean_correlation (:mod:`.structure`); the xclim index
        biases txx_bias, tnn_bias, dtr_bias or rx1day_bias, rx5day_bias,
        r10mm_bias, cdd_bias, sdii_bias, wet_day_fraction_bias
        (:mod:`.indices`); for Datasets ``multivariate_correlation_bias`` over
        dim ``pair``.
    """
    check_suite(suite)
    climate = suite == "climate"
    if isinstance(pred, xr.Dataset) or isinstance(truth, xr.Dataset):
        return evaluate_dataset(
            evaluate, pred, truth, lr=lr, climatology=climatology, suite=suite, factor=factor, weighted=weighted,
            per_time=per_time, member_dim=member_dim, compute=compute, quantiles=quantiles,
            wet_threshold=wet_threshold, indices=indices, index_freq=index_freq, bins=bins, maps=maps)
    if climate and per_time:
        raise DataError("suite='climate' scores distributions along time: it cannot be combined with per_time=True")
    if quantiles is None:
        quantiles = CLIMATE_QUANTILES if climate else DEFAULT_QUANTILES
    pred, truth, axes = check_pair(pred, truth)
    axes = axes or find_axes(truth)
    if member_dim in truth.dims:
        raise DataError(f"truth must not have the ensemble dimension {member_dim!r}")
    ensemble = member_dim in pred.dims
    in_passes = compute and any(x is not None and x.chunks is not None for x in (pred, truth, lr))
    cell_pred, cell_truth = pred, truth
    data_range = None
    if in_passes:
        # Dask: take the range first (from the input's own chunks): the SSIM of every field needs the
        # range of all, so a lazy range keeps every chunk alive until the last one is read; then
        # rechunk once to whole fields for every per-field score (each rechunking its own held a copy)
        data_range = data_range_of(truth).compute()
        pred, truth = rechunk_for_core(pred, axes.spatial), rechunk_for_core(truth, axes.spatial)
    det = pred.mean(member_dim, keep_attrs=True) if ensemble else pred

    def dims_of(*objs):
        """All dims of ``objs`` (None), or all but time with per_time."""
        if not per_time:
            return None
        seen = []
        for o in objs:
            seen += [d for d in o.dims if d not in seen and d != axes.time]
        return seen

    if per_time and (axes.time is None or axes.time not in truth.dims):
        raise DataError(
            f"per_time=True needs a time dimension, but none was found among {tuple(truth.dims)} "
            "(name it 'time' or give it the CF attribute axis='T')."
        )
    d = dims_of(det, truth)
    kw = {"weighted": weighted, "dim": d}
    out = {
        "mse": mse(det, truth, **kw),
        "rmse": rmse(det, truth, **kw),
        "mae": mae(det, truth, **kw),
        "bias": bias(det, truth, **kw),
        "max_abs_error": max_abs_error(det, truth, dim=d),
        "psnr": psnr(det, truth, data_range=data_range, **kw),
        "ssim": ssim(det, truth, data_range=data_range, **kw),
        "ms_ssim": ms_ssim(det, truth, data_range=data_range, **kw),
        "pearson_r": pearson_r(det, truth, **kw),
    }
    if climatology is not None:
        out["acc"] = acc(det, truth, climatology, **kw)
    if lr is not None:
        if factor is None:
            factor = infer_factor(pred, lr, axes)
        dl = dims_of(pred, lr)
        out["mass_violation"] = mass_violation(pred, lr, factor, weighted=weighted, dim=dl)
        out["relative_mass_violation"] = relative_mass_violation(pred, lr, factor, weighted=weighted, dim=dl)
    if not per_time:
        out.update(bias_metrics(det, truth, quantiles=() if climate else tuple(quantiles or ()),
                                wet_threshold=wet_threshold, weighted=weighted))
    neg = negative_pixels(pred, dim=dims_of(pred))
    out["negative_count"], out["negative_mean"] = neg["negative_count"], neg["negative_mean"]
    if ensemble:
        c = crps_ensemble(pred, truth, member_dim)
        out["crps"] = wmean(c, weights_for(truth, axes, weighted), list(c.dims) if d is None else d)
        out.update(ensemble_scores(pred, truth, member_dim, weighted=weighted, dim=d))
    default_names = list(out)
    blocked = climate and in_passes  # the distribution scores are computed apart, block by block (.passes)
    if climate:
        if axes.time is None or axes.time not in truth.dims:
            raise DataError(f"suite='climate' needs a time dimension, but none was found among {tuple(truth.dims)}")
        out.update(climate_summary(pred, truth, weighted=weighted, member_dim=member_dim,
                                   quantiles=tuple(quantiles or ()), bins=bins, indices=indices,
                                   index_freq=index_freq, maps=maps, distribution=not blocked))
    units = str(truth.attrs.get("units") or pred.attrs.get("units") or "")
    ds = xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in v.dims]) for k, v in out.items()})
    for name in ds.data_vars:
        attrs = describe(name, units) if climate else None
        if attrs is None and climate and is_index_bias(name):  # the index biases describe themselves
            attrs = {k: out[name].attrs[k] for k in ("long_name", "units")}
        ds[name].attrs = attrs or {"long_name": _long_name(name), "units": _units(name, units)}
    ds.attrs = {
        "title": "xdownscale verification metrics",
        "area_weighted": int(bool(weighted and axes.kind == "latlon")),
        "per_time": int(bool(per_time)),
    }
    if climate:
        ds.attrs["suite"] = suite
    if ensemble:
        ds.attrs["ensemble_members"] = int(pred.sizes[member_dim])
        ds.attrs["deterministic_metrics_of"] = "ensemble mean"
    if not compute:
        return ds
    if blocked:
        cells = distribution_cells(cell_pred, cell_truth, member_dim=member_dim, quantiles=tuple(quantiles or ()),
                                   bins=bins)
        rows = next(d for d in cell_truth.dims if d in axes.spatial)
        return compute_in_passes(ds, cells, cell_truth, cell_pred, dim=rows, order=default_names, units=units,
                                 weighted=weighted, member_dim=member_dim, maps=maps)
    return ds.compute()
