"""Climate-index biases through xclim, against numpy hand values, and the refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("xclim", reason="climate indices need xclim (pip install 'xdownscale[climate]')")

from xdownscale.errors import DataError
from xdownscale.metrics.indices import (
    applicable_indices,
    climate_indices,
    daily,
    index_biases,
    variable_kind,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def grid(data, *, freq="h", start="2001-06-01", name="tas", **attrs):
    data = np.asarray(data, dtype="float64")
    nt, ny, nx = data.shape
    return xr.DataArray(
        data, dims=("time", "lat", "lon"), name=name, attrs=attrs,
        coords={"time": pd.date_range(start, periods=nt, freq=freq),
                "lat": ("lat", np.linspace(40.0, 60.0, ny), {"units": "degrees_north"}),
                "lon": ("lon", np.linspace(0.0, 5.0, nx), {"units": "degrees_east"})})


def test_temperature_indices_hand_values_and_partial_day_dropped():
    rng = np.random.default_rng(0)
    x = 280 + 5 * rng.normal(size=(3 * 24, 2, 2))
    hourly = np.concatenate([x, np.full((1, 2, 2), 1000.0)])  # a lone step of a 4th day: must not count
    tas = grid(hourly, units="K", standard_name="air_temperature")
    ind = climate_indices(tas)
    days = x.reshape(3, 24, 2, 2)
    np.testing.assert_allclose(ind.txx.squeeze("period").values, days.max(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(ind.tnn.squeeze("period").values, days.min(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(ind.dtr.squeeze("period").values,
                               (days.max(axis=1) - days.min(axis=1)).mean(axis=0), rtol=1e-12)
    assert ind.txx.attrs["units"] == "K"
    # biases: a warmer afternoon of one day moves TXx and DTR, not TNn
    warmer = hourly.copy()
    warmer[12:15] += 30.0
    b = index_biases(grid(warmer, units="K", standard_name="air_temperature"), tas, weighted=False)
    want_txx = (np.concatenate([x[:12], x[12:15] + 30, x[15:]]).max(0) - x.max(0)).mean()
    assert float(b["txx_bias"]) == pytest.approx(want_txx)
    assert float(b["tnn_bias"]) == pytest.approx(0.0, abs=1e-9)
    assert float(b["dtr_bias"]) > 0
    assert b["txx_bias"].attrs["units"] == "K" and "TXx" in b["txx_bias"].attrs["long_name"]


AMOUNTS = np.array([0.0, 12.0, 3.0, 0.5, 20.0, 0.0, 0.0])  # mm per day
HAND = {"rx1day": 20.0, "rx5day": 35.5, "r10mm": 2.0, "cdd": 2.0, "sdii": 35.0 / 3, "wet_day_fraction": 3 / 7}


@pytest.mark.parametrize("form", ["flux", "hourly_amount", "daily_amount"])
def test_precipitation_indices_hand_values(form):
    per_day = np.broadcast_to(AMOUNTS[:, None, None], (7, 2, 2))
    if form == "flux":  # kg m-2 s-1, the same rate all day: daily mean = amount / 86400
        pr = grid(np.repeat(per_day, 24, axis=0) / 86400.0, name="pr", units="kg m-2 s-1",
                  standard_name="precipitation_flux")
    elif form == "hourly_amount":  # mm per hour: the daily *sum* is the amount
        pr = grid(np.repeat(per_day, 24, axis=0) / 24.0, name="tp", units="mm")
    else:
        pr = grid(per_day, freq="D", name="tp", units="mm", standard_name="lwe_thickness_of_precipitation_amount")
    ind = climate_indices(pr)
    for name, want in HAND.items():
        assert float(ind[name].mean()) == pytest.approx(want, rel=1e-6), name
    assert ind.rx1day.attrs["units"] == "mm" and ind.rx5day.attrs["units"] == "mm"
    assert ind.cdd.attrs["units"] == "days" and ind.sdii.attrs["units"] == "mm d-1"
    if form != "flux":
        return
    b = index_biases(pr * 4, pr)  # pred lacks units: scored with the truth's metadata
    assert float(b["rx1day_bias"]) == pytest.approx(60.0, rel=1e-6)
    assert float(b["r10mm_bias"]) == pytest.approx(1.0)  # 3 mm becomes 12 mm
    assert float(b["wet_day_fraction_bias"]) == pytest.approx(1 / 7)  # 0.5 mm becomes 2 mm: wet
    assert float(b["cdd_bias"]) == pytest.approx(0.0)


def test_ensemble_index_bias_averages_members():
    rng = np.random.default_rng(1)
    t = grid(280 + rng.normal(size=(48, 2, 3)), units="K")
    ens = xr.concat([t + 1.0, t + 3.0], "member").assign_attrs(t.attrs)
    b = index_biases(ens, t, ["txx"], maps=True)
    assert float(b["txx_bias"]) == pytest.approx(2.0)
    assert b["txx_bias_map"].dims == ("lat", "lon")


def test_refusals_are_one_clear_line():
    t = grid(np.zeros((48, 2, 2)), units="K", standard_name="air_temperature", name="Tair")
    cases = [
        (lambda: index_biases(t, t, ["rx1day"]), "needs a precipitation but Tair is a temperature"),
        (lambda: index_biases(t, t, ["txx", "tx90"]), "unknown climate index 'tx90'"),
        (lambda: climate_indices(t.assign_attrs(units="")), "no 'units'"),
        (lambda: climate_indices(t.assign_attrs(standard_name="dew_point_temperature")), "air_temperature"),
        (lambda: climate_indices(t.assign_attrs(units="m s-1", standard_name=""), ["rx1day"]), "no standard_name"),
        (lambda: climate_indices(t.assign_attrs(units="bogus_unit")), "cannot read the units"),
        (lambda: climate_indices(grid(np.zeros((4, 2, 2)), freq="7D", units="K")), "time step of 7 days"),
        (lambda: climate_indices(grid(np.zeros((4, 2, 2)), freq="D", units="K"), ["txx"]), "daily maximums"),
        (lambda: climate_indices(t.isel(time=slice(0, 20))), "no complete day"),
        (lambda: climate_indices(t.assign_attrs(units="mm h-1", standard_name="lwe_precipitation_rate"), ["cdd"]),
         "needs at least 3 complete days, Tair has 2"),
    ]
    for call, words in cases:
        with pytest.raises(DataError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
    # daily maxima that say so are accepted
    tx = grid(np.arange(8.0)[:, None, None] * np.ones((8, 2, 2)), freq="D", units="degC",
              cell_methods="time: maximum")
    assert float(climate_indices(tx, ["txx"]).txx.mean()) == 7.0
    assert variable_kind(grid(np.zeros((2, 1, 1)), units="m", name="pr")) == ("precipitation", "amount")
    # a short record gets the indices it can carry (xclim needs 3 daily steps for some, Rx5day 5)
    two_days = t.assign_attrs(units="mm h-1", standard_name="lwe_precipitation_rate")
    assert applicable_indices(two_days) == ("rx1day", "wet_day_fraction")
    assert applicable_indices(grid(np.zeros((5, 1, 1)), freq="D", units="mm d-1", name="pr")) == \
        ("rx1day", "rx5day", "r10mm", "cdd", "sdii", "wet_day_fraction")


def test_daily_resampling_operation_per_index():
    x = np.arange(48.0)[:, None, None] * np.ones((48, 1, 1))
    t = grid(x, units="K")
    assert daily(t, "max").values.ravel().tolist() == [23.0, 47.0]
    assert daily(t, "min").values.ravel().tolist() == [0.0, 24.0]
    flux = grid(x, units="kg m-2 s-1", name="pr")
    assert daily(flux, "precip").values.ravel().tolist() == [11.5, 35.5]  # mean of a flux
    amount = grid(x, units="mm", name="pr")
    out = daily(amount, "precip")
    assert out.values.ravel().tolist() == [276.0, 852.0] and out.attrs["units"] == "mm d-1"  # sum of amounts


@pytest.mark.realdata
def test_wfde5_indices_match_numpy(data_dir):
    tair = xr.open_dataset(data_dir / "wfde5-uk" / "air_temperature.nc")["Tair"].isel(time=slice(0, 240)).load()
    pr = xr.open_dataset(data_dir / "wfde5-uk" / "precipitation_flux.nc")["pr"].isel(time=slice(0, 240)).load()
    txx = climate_indices(tair, ["txx"]).txx.squeeze("period")
    np.testing.assert_allclose(txx.values, tair.max("time").values, rtol=1e-6)  # NaN (sea) where the data is
    days = pr.values.reshape(10, 24, *pr.shape[1:]).mean(axis=1) * 86400.0  # kg m-2 s-1 -> mm per day
    rx1 = climate_indices(pr, ["rx1day"]).rx1day.squeeze("period")
    np.testing.assert_allclose(rx1.values, days.max(axis=0), rtol=1e-4)
