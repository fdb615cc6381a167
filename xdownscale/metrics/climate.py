"""The ``suite="climate"`` part of :func:`xdownscale.evaluate`: distributions, indices, structure.

Names, long names and units of every entry are kept here so that
``evaluate``'s output describes itself.
"""
from __future__ import annotations

import xarray as xr

from ..errors import DataError
from .bias import quantile_name
from .distribution import CLIMATE_QUANTILES, DEFAULT_BINS, distribution_summary

SUITES = ("default", "climate")

LONG_NAMES = {
    "perkins_skill_score": "Perkins skill score: overlap of the prediction and truth histograms (1: identical)",
    "wasserstein": "Wasserstein-1 distance between the prediction and truth distributions",
    "ks_statistic": "two-sample Kolmogorov-Smirnov statistic (largest CDF difference)",
    "log_histogram_distance": "mean absolute difference of the log10 histograms (tails weigh as much as the bulk)",
    "log_spectral_distance": "log spectral distance of the prediction spectrum from the truth spectrum (Hann taper)",
    "lag1_autocorrelation_bias": "lag-1 autocorrelation in time of the prediction minus that of the truth",
    "climatological_mean_correlation": "spatial correlation of the time-mean prediction and truth",
    "multivariate_correlation_bias": "correlation in time between two variables in the prediction minus in the truth",
}
_UNITLESS = ("perkins_skill_score", "ks_statistic", "log_histogram_distance", "lag1_autocorrelation_bias",
             "climatological_mean_correlation", "multivariate_correlation_bias")


def _base(name: str) -> tuple[str, str]:
    for suffix in ("_per_member", "_map"):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def describe(name: str, units: str) -> dict | None:
    """``{"long_name", "units"}`` of a climate-suite entry, None if ``name`` is not one."""
    base, suffix = _base(name)
    extra = {"_per_member": " (each member)", "_map": " (per cell)"}.get(suffix, "")
    if base.startswith("quantile_bias_q"):
        pct = base[len("quantile_bias_q"):]
        return {"long_name": f"{pct}% quantile of the prediction minus that of the truth{extra}", "units": units}
    if base not in LONG_NAMES:
        return None
    u = "dB" if base == "log_spectral_distance" else ("1" if base in _UNITLESS else units)
    return {"long_name": LONG_NAMES[base] + extra, "units": u}


def is_index_bias(name: str) -> bool:
    """Whether ``name`` is ``<index>_bias`` or ``<index>_bias_map`` of a climate index."""
    from .indices import INDICES

    base = name.removesuffix("_map")
    return base.endswith("_bias") and base[: -len("_bias")] in INDICES


def check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise DataError(f"suite must be one of {', '.join(repr(s) for s in SUITES)}, got {suite!r}")


def climate_summary(pred: xr.DataArray, truth: xr.DataArray, *, weighted: bool = True, member_dim: str = "member",
                    quantiles=CLIMATE_QUANTILES, bins: int = DEFAULT_BINS, indices=None, index_freq: str = "YS",
                    maps: bool = False, distribution: bool = True) -> dict[str, xr.DataArray]:
    """Distribution scores (unless not ``distribution``), climate-index biases and structure scores of one
    variable."""
    from .indices import index_biases
    from .structure import structure_summary

    out = distribution_summary(pred, truth, weighted=weighted, member_dim=member_dim, quantiles=quantiles,
                               bins=bins, maps=maps) if distribution else {}
    out.update(structure_summary(pred, truth, weighted=weighted, member_dim=member_dim))
    out.update(index_biases(pred, truth, indices, weighted=weighted, member_dim=member_dim, freq=index_freq,
                            maps=maps))
    return out


def evaluate_dataset(evaluate, pred: xr.Dataset, truth: xr.Dataset, *, lr=None, climatology=None, **kwargs):
    """``evaluate`` of each variable of ``truth`` (prefixed ``<var>_``), and with the climate
    suite the ``multivariate_correlation_bias`` between them."""
    if not isinstance(pred, xr.Dataset) or not isinstance(truth, xr.Dataset):
        raise TypeError("pass pred and truth both as DataArrays or both as Datasets, "
                        f"got {type(pred).__name__} and {type(truth).__name__}")
    names = [v for v in truth.data_vars if v in pred.data_vars]
    if not names:
        raise DataError(f"pred and truth share no variable: pred has {list(pred.data_vars)}, "
                        f"truth has {list(truth.data_vars)}")
    compute = kwargs.pop("compute", True)  # each variable on its own: on Dask, in bounded memory
    parts, attrs = {}, {}
    for v in names:
        sub = evaluate(pred[v], truth[v], lr=None if lr is None else lr[v],
                       climatology=None if climatology is None else climatology[v], compute=compute, **kwargs)
        attrs = sub.attrs
        for k, da in sub.data_vars.items():
            parts[f"{v}_{k}"] = da
    if kwargs.get("suite") == "climate" and len(names) >= 2:
        from .structure import multivariate_correlation_bias

        mcb = multivariate_correlation_bias(pred[names], truth[names], weighted=kwargs.get("weighted", True),
                                            member_dim=kwargs.get("member_dim", "member"))
        parts["multivariate_correlation_bias"] = mcb.assign_attrs(describe("multivariate_correlation_bias", ""))
    ds = xr.Dataset(parts, attrs={**attrs, "variables": " ".join(map(str, names))})
    return ds.compute() if compute else ds


__all__ = ["SUITES", "climate_summary", "describe", "is_index_bias", "check_suite", "evaluate_dataset", "quantile_name"]
