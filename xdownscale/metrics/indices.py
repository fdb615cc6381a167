"""Climate indices of the prediction and of the truth through xclim, reported as biases.

The indices are xclim's (``xclim.indices``); this module only prepares the
input: it decides from the CF metadata (``units``, ``standard_name``,
``cell_methods``) whether a variable is a near-surface air temperature or a
precipitation, resamples sub-daily data to daily values with the operation each
index needs, and refuses an index that does not fit the variable with one
:class:`~xdownscale.errors.DataError` line.

=================  ==================  ===================================  ==========
name               variable            xclim function (daily input)         units
=================  ==================  ===================================  ==========
txx                temperature         tx_max (daily maximum)               input's
tnn                temperature         tn_min (daily minimum)               input's
dtr                temperature         daily_temperature_range (max - min)  input's
rx1day             precipitation       max_1day_precipitation_amount        mm
rx5day             precipitation       max_n_day_precipitation_amount(5)    mm
r10mm              precipitation       wetdays(thresh="10 mm/day")          days
cdd                precipitation       maximum_consecutive_dry_days(1 mm)   days
sdii               precipitation       daily_pr_intensity(1 mm/day)         mm d-1
wet_day_fraction   precipitation       wetdays_prop(1 mm/day)               1
=================  ==================  ===================================  ==========

Sub-daily temperature becomes daily maxima/minima; a sub-daily precipitation
flux or rate (``kg m-2 s-1``, ``mm/h``) becomes its daily mean and an amount per
step (``mm``, ``m``, ``kg m-2``) its daily sum, as a rate per day. Only complete
days are kept (a day with fewer steps than the time step implies is dropped).
Daily temperature is accepted for ``txx``/``tnn`` only when its
``cell_methods`` say ``time: maximum``/``time: minimum``. Indices are computed
per ``freq`` period (default ``"YS"``: one value per year and cell) and the
bias is the mean over periods and (area-weighted) over cells of prediction
minus truth; ensembles are scored member by member and the biases averaged.
xclim is imported only when an index is computed.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError
from .deterministic import check_pair, grid_axes, weights_for, wmean

__all__ = ["INDICES", "TEMPERATURE_INDICES", "PRECIPITATION_INDICES", "variable_kind", "daily", "climate_indices",
           "index_biases"]

TEMPERATURE_INDICES = ("txx", "tnn", "dtr")
PRECIPITATION_INDICES = ("rx1day", "rx5day", "r10mm", "cdd", "sdii", "wet_day_fraction")
INDICES = TEMPERATURE_INDICES + PRECIPITATION_INDICES

LONG_NAMES = {
    "txx": "maximum of the daily maximum temperature (TXx)",
    "tnn": "minimum of the daily minimum temperature (TNn)",
    "dtr": "mean daily temperature range (DTR)",
    "rx1day": "maximum 1-day precipitation amount (Rx1day)",
    "rx5day": "maximum 5-day precipitation amount (Rx5day)",
    "r10mm": "number of days with precipitation >= 10 mm (R10mm)",
    "cdd": "maximum number of consecutive dry days, precipitation < 1 mm/day (CDD)",
    "sdii": "simple daily intensity index: mean precipitation of days >= 1 mm (SDII)",
    "wet_day_fraction": "fraction of days with precipitation >= 1 mm (wet-day frequency)",
}
_TEMPERATURE_NAMES = {"air_temperature"}
_PRECIPITATION_NAMES = {
    "precipitation_flux", "precipitation_amount", "lwe_precipitation_rate", "lwe_thickness_of_precipitation_amount",
    "thickness_of_rainfall_amount", "rainfall_flux", "rainfall_amount", "rainfall_rate", "lwe_precipitation_flux",
}
_UNKNOWN_NAMES = {"", "unknown", "undefined"}
# complete days an index needs (xclim infers the sampling frequency of daily data from 3 steps)
MIN_DAYS = dict({n: 1 for n in TEMPERATURE_INDICES}, rx1day=1, rx5day=5, r10mm=3, cdd=3, sdii=3,
                wet_day_fraction=1)
# without a standard_name, a length per time (m s-1) or a length (m) may be anything: these names say precipitation
_PRECIPITATION_VARS = {"pr", "tp", "precip", "precipitation", "prcp", "rr", "rain", "rainfall", "tot_prec", "rf"}


def _pint(units: str):
    from xclim.core.units import units2pint

    try:
        return units2pint(units)
    except Exception as e:  # pint raises several kinds
        raise DataError(f"cannot read the units {units!r} ({type(e).__name__}): give CF units such as 'K', "
                        "'degC', 'kg m-2 s-1' or 'mm'") from None


def variable_kind(da: xr.DataArray) -> tuple[str, str]:
    """``("temperature" | "precipitation", "rate" | "amount" | "temperature")`` from the CF
    metadata of ``da``, or a :class:`DataError` saying why neither fits."""
    name = da.name or "the variable"
    units = str(da.attrs.get("units", "")).strip()
    if not units:
        raise DataError(f"{name!s} has no 'units' attribute: climate indices need CF units "
                        "(e.g. 'K' for temperature, 'kg m-2 s-1' or 'mm' for precipitation)")
    std = str(da.attrs.get("standard_name", "")).strip().lower()
    dim = _pint(units).dimensionality
    if dim == {"[temperature]": 1}:
        if std in _UNKNOWN_NAMES or std in _TEMPERATURE_NAMES:
            return "temperature", "temperature"
        raise DataError(f"{name!s} has temperature units but standard_name {std!r}: the temperature indices need "
                        "air_temperature")
    kinds = {"rate": ({"[mass]": 1, "[length]": -2, "[time]": -1}, {"[length]": 1, "[time]": -1}),
             "amount": ({"[mass]": 1, "[length]": -2}, {"[length]": 1})}
    for kind, (mass, length) in kinds.items():
        if dim in (mass, length):
            if std in _PRECIPITATION_NAMES:
                return "precipitation", kind
            if std not in _UNKNOWN_NAMES:
                raise DataError(f"{name!s} has units {units!r} but standard_name {std!r}, which is not a "
                                "precipitation")
            if dim == mass or str(da.name).lower() in _PRECIPITATION_VARS:
                return "precipitation", kind
            raise DataError(f"{name!s} has units {units!r} and no standard_name: set standard_name "
                            "'precipitation_flux' (or 'lwe_thickness_of_precipitation_amount') if it is a "
                            "precipitation")
    raise DataError(f"{name!s} has units {units!r}, which are neither a temperature nor a precipitation "
                    "flux, rate or amount")


def _step_seconds(da: xr.DataArray, time: str) -> float:
    t = np.asarray(da[time].values)
    if t.size < 2 or not np.issubdtype(t.dtype, np.datetime64):
        raise DataError(f"climate indices need a datetime {time!r} coordinate with at least 2 steps")
    return float(np.median(np.diff(t).astype("timedelta64[s]").astype("float64")))


def _cell_method(da: xr.DataArray, time: str) -> str:
    cm = str(da.attrs.get("cell_methods", "")).replace(" ", "")
    for op in ("maximum", "minimum", "mean", "sum"):
        if f"{time}:{op}" in cm or f"time:{op}" in cm:
            return op
    return ""


def daily(da: xr.DataArray, op: str, time: str = "time") -> xr.DataArray:
    """Daily values of ``da`` for the index's operation ``op`` ("max", "min" or "precip").

    Sub-daily input is resampled over complete days; daily input is returned
    unchanged if its ``cell_methods`` fit ``op`` (temperature) and refused
    otherwise. Precipitation comes back as a rate (daily mean of a flux, or
    daily sum of amounts per day).
    """
    step = _step_seconds(da, time)
    kind, form = variable_kind(da)
    name = da.name or "the variable"
    if step > 86400 * 1.01:
        raise DataError(f"{name!s} has a time step of {step / 86400:g} days: climate indices need daily or "
                        "sub-daily data")
    if step >= 86400 * 0.99:  # already daily
        if kind == "temperature":
            want = {"max": "maximum", "min": "minimum"}[op]
            if _cell_method(da, time) != want:
                raise DataError(f"daily {name!s} must be daily {want}s (cell_methods 'time: {want}') for this "
                                "index; give sub-daily data to compute them")
            return da
        return _per_day(da) if form == "amount" else da
    per_day = int(round(86400 / step))
    if abs(per_day * step - 86400) > 1:
        raise DataError(f"{name!s} has a time step of {step:g} s, which does not divide a day")
    full = da[time].resample({time: "D"}).count()
    days = full[time].values[full.values == per_day]
    if days.size == 0:
        raise DataError(f"{name!s} has no complete day ({per_day} steps of {step:g} s): climate indices need "
                        "daily values")
    res = da.resample({time: "D"})
    if kind == "temperature":
        out = res.max() if op == "max" else res.min()
    elif form == "amount":
        out = res.sum(min_count=1)
    else:
        out = res.mean()
    out = out.sel({time: days})
    out.attrs = dict(da.attrs)
    out.attrs.pop("cell_methods", None)
    if kind == "precipitation" and form == "amount":
        out = _per_day(out)
    return out


def _per_day(da: xr.DataArray) -> xr.DataArray:
    """Daily amounts (e.g. mm) as a rate per day (mm d-1): the same numbers, new units."""
    from xclim.core.units import pint2cfunits, units, units2pint

    return da.assign_attrs(units=pint2cfunits(units2pint(da) / units.day))


def complete_days(da: xr.DataArray, time: str = "time") -> int:
    """The number of complete days in ``da`` (its daily steps, or the days with every sub-daily step)."""
    step = _step_seconds(da, time)
    if step >= 86400 * 0.99:
        return int(da.sizes[time])
    full = da[time].resample({time: "D"}).count()
    return int((full.values == int(round(86400 / step))).sum())


def _compute_one(da: xr.DataArray, index: str, freq: str, time: str) -> xr.DataArray:
    import xclim.indices as xi
    from xclim.core.units import convert_units_to

    kind, _ = variable_kind(da)
    need = "temperature" if index in TEMPERATURE_INDICES else "precipitation"
    if kind != need:
        raise DataError(f"index {index!r} needs a {need} but {da.name or 'the variable'!s} is a {kind} "
                        f"(units {da.attrs.get('units')!r}); indices for it: "
                        f"{', '.join(TEMPERATURE_INDICES if kind == 'temperature' else PRECIPITATION_INDICES)}")
    n = complete_days(da, time)
    if 0 < n < MIN_DAYS[index]:
        raise DataError(f"index {index!r} needs at least {MIN_DAYS[index]} complete days, "
                        f"{da.name or 'the variable'!s} has {n}")
    if index == "txx":
        return xi.tx_max(daily(da, "max", time), freq=freq)
    if index == "tnn":
        return xi.tn_min(daily(da, "min", time), freq=freq)
    if index == "dtr":
        return xi.daily_temperature_range(daily(da, "min", time), daily(da, "max", time), freq=freq)
    pr = daily(da, "precip", time)
    if index == "rx1day":
        out = convert_units_to(xi.max_1day_precipitation_amount(pr, freq=freq), "mm/d", context="hydro")
        out.attrs["units"] = "mm"  # the amount fallen in one day
        return out
    if index == "rx5day":
        return convert_units_to(xi.max_n_day_precipitation_amount(pr, window=5, freq=freq), "mm", context="hydro")
    if index == "r10mm":
        return xi.wetdays(pr, thresh="10 mm/day", freq=freq)
    if index == "cdd":
        return xi.maximum_consecutive_dry_days(pr, thresh="1 mm/day", freq=freq)
    if index == "sdii":
        return convert_units_to(xi.daily_pr_intensity(pr, thresh="1 mm/day", freq=freq), "mm/d", context="hydro")
    return xi.wetdays_prop(pr, thresh="1 mm/day", freq=freq)


def _time_dim(da: xr.DataArray) -> str:
    axes = grid_axes(da)
    if axes is None or axes.time is None or axes.time not in da.dims:
        raise DataError(f"climate indices need a time dimension, but none was found among {tuple(da.dims)}")
    return axes.time


def applicable_indices(da: xr.DataArray) -> tuple[str, ...]:
    """The indices that fit ``da``'s variable and its length in complete days, () when none
    does (no units, another variable, no time axis, too short)."""
    try:
        kind, _ = variable_kind(da)
        n = complete_days(da, _time_dim(da))
    except DataError:
        return ()
    names = TEMPERATURE_INDICES if kind == "temperature" else PRECIPITATION_INDICES
    return tuple(i for i in names if n >= MIN_DAYS[i])


def _check_names(indices) -> list[str]:
    names = [indices] if isinstance(indices, str) else list(indices)
    unknown = [n for n in names if n not in INDICES]
    if unknown:
        raise DataError(f"unknown climate index {unknown[0]!r}: choose from {', '.join(INDICES)}")
    return names


def climate_indices(da: xr.DataArray, indices=None, *, freq: str = "YS") -> xr.Dataset:
    """The climate indices of ``da`` (all that fit its variable by default) per ``freq`` period."""
    time = _time_dim(da)
    names = applicable_indices(da) if indices is None else _check_names(indices)
    if indices is None and not names:  # say why
        kind, _ = variable_kind(da)
        daily(da, "max" if kind == "temperature" else "precip", time)  # no complete day
        raise DataError(f"{da.name or 'the variable'!s} has only {complete_days(da, time)} complete days: too short "
                        "for any climate index")
    out = {}
    for n in names:
        v = _compute_one(da, n, freq, time)
        units = v.attrs.get("units", "")
        out[n] = v.rename({time: "period"}) if time in v.dims else v
        out[n].attrs = {"long_name": LONG_NAMES[n], "units": "days" if units == "d" else units}
    return xr.Dataset(out)


def index_biases(pred: xr.DataArray, truth: xr.DataArray, indices=None, *, weighted: bool = True,
                 member_dim: str = "member", freq: str = "YS", maps: bool = False) -> dict[str, xr.DataArray]:
    """``{"<index>_bias": prediction minus truth, averaged over periods, members and cells}``.

    ``indices=None`` takes those that fit the truth's variable (none when it is
    neither a temperature nor a precipitation); naming one that does not fit
    raises a :class:`DataError`. ``maps`` adds ``<index>_bias_map`` (per cell).
    The prediction is scored with the truth's metadata when it lacks units.
    """
    pred, truth, axes = check_pair(pred, truth)
    if not pred.attrs.get("units"):
        pred = pred.assign_attrs({k: v for k, v in truth.attrs.items() if k in ("units", "standard_name")})
    names = applicable_indices(truth) if indices is None else _check_names(indices)
    if not names:
        return {}
    ip = climate_indices(pred, names, freq=freq)
    it = climate_indices(truth, names, freq=freq)
    w = weights_for(truth, axes, weighted)
    out = {}
    for n in names:
        diff = ip[n].astype("float64") - it[n].astype("float64")
        cell = diff.mean([d for d in ("period", member_dim) if d in diff.dims])
        cell = cell.drop_vars([c for c in cell.coords if c not in cell.dims])
        attrs = {"long_name": f"{LONG_NAMES[n]}: prediction minus truth", "units": it[n].attrs["units"]}
        out[f"{n}_bias"] = wmean(cell, w, list(cell.dims)).rename(f"{n}_bias").assign_attrs(attrs)
        if maps:
            out[f"{n}_bias_map"] = cell.rename(f"{n}_bias_map").assign_attrs(attrs)
    return out
