"""The climate suite's distribution and structure scores, against scipy, pandas, numpy and hand values."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from conftest import REPO_ROOT

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.metrics import (
    climatological_mean_correlation,
    distribution_scores,
    lag1_autocorrelation,
    lag1_autocorrelation_bias,
    multivariate_correlation_bias,
    power_spectrum,
    quantile_bias_map,
)
from xdownscale.metrics.distribution import LOG_HIST_EPS, distribution_summary

pytestmark = pytest.mark.filterwarnings("ignore:ms_ssim")


def field(data, *, lat=(30.0, 70.0), name="tas", units="K", member=False):
    """(time, lat, lon) [or (member, time, lat, lon)] DataArray on a lat/lon grid."""
    data = np.asarray(data, dtype="float64")
    nt, ny, nx = data.shape[-3:]
    coords = {
        "time": pd.date_range("2001-01-01", periods=nt, freq="h"),
        "lat": ("lat", np.linspace(*lat, ny), {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", np.linspace(0.0, 10.0, nx), {"units": "degrees_east", "standard_name": "longitude"}),
    }
    dims = ("time", "lat", "lon")
    if member:
        dims = ("member",) + dims
    return xr.DataArray(data, dims=dims, coords=coords, name=name, attrs={"units": units})


def coslat_mean(cell: np.ndarray, lat: np.ndarray) -> float:
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], cell.shape)
    ok = np.isfinite(cell)
    return float((cell[ok] * w[ok]).sum() / w[ok].sum())


# ------------------------------------------------------------------ distribution scores
def test_wasserstein_and_ks_match_scipy_per_cell_with_ties_and_nan():
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=(40, 3, 4)), 1)  # rounding makes ties inside and across samples
    b = np.round(rng.gamma(2.0, 1.0, size=(40, 3, 4)), 1)
    a[[3, 7, 8], 0, 0] = np.nan
    b[5, 2, 3] = np.nan
    ds = distribution_scores(field(a), field(b), bins=7)
    for i in range(3):
        for j in range(4):
            x, y = a[:, i, j], b[:, i, j]
            x, y = x[~np.isnan(x)], y[~np.isnan(y)]
            assert ds.wasserstein[i, j] == pytest.approx(scipy.stats.wasserstein_distance(x, y), rel=1e-12)
            assert ds.ks_statistic[i, j] == pytest.approx(scipy.stats.ks_2samp(x, y).statistic, rel=1e-12)
            # histograms: an independent numpy computation over the common range
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            p = np.histogram(x, bins=7, range=(lo, hi))[0] / x.size
            q = np.histogram(y, bins=7, range=(lo, hi))[0] / y.size
            assert ds.perkins_skill_score[i, j] == pytest.approx(np.minimum(p, q).sum(), rel=1e-12)
            used = (p > 0) | (q > 0)
            lhd = np.abs(np.log10(p[used] + LOG_HIST_EPS) - np.log10(q[used] + LOG_HIST_EPS)).mean()
            assert ds.log_histogram_distance[i, j] == pytest.approx(lhd, rel=1e-12)


def test_distribution_hand_values():
    pred = field(np.array([0.0, 0.0, 1.0, 1.0])[:, None, None])
    truth = field(np.array([0.0, 1.0, 1.0, 1.0])[:, None, None])
    ds = distribution_scores(pred, truth, bins=2).isel(lat=0, lon=0)
    # histograms (1/2, 1/2) and (1/4, 3/4): overlap 1/2 + 1/4
    assert float(ds.perkins_skill_score) == pytest.approx(0.75)
    e = LOG_HIST_EPS
    assert float(ds.log_histogram_distance) == pytest.approx(
        (abs(np.log10(0.5 + e) - np.log10(0.25 + e)) + abs(np.log10(0.5 + e) - np.log10(0.75 + e))) / 2)
    # CDFs differ by 1/4 on [0, 1): W1 = 1/4, KS = 1/4
    assert float(ds.wasserstein) == pytest.approx(0.25)
    assert float(ds.ks_statistic) == pytest.approx(0.25)
    # identical samples and disjoint ones
    same = distribution_scores(truth, truth, bins=2).isel(lat=0, lon=0)
    assert [float(same[k]) for k in ("perkins_skill_score", "wasserstein", "ks_statistic",
                                     "log_histogram_distance")] == [1.0, 0.0, 0.0, 0.0]
    far = distribution_scores(truth + 5.0, truth, bins=4).isel(lat=0, lon=0)
    assert float(far.perkins_skill_score) == 0.0 and float(far.ks_statistic) == 1.0
    assert float(far.wasserstein) == pytest.approx(5.0)


def test_ensemble_scores_pool_members_and_score_each():
    rng = np.random.default_rng(2)
    ens = rng.normal(size=(3, 30, 2, 2))
    ens[1] += 2.0  # one biased member
    truth = rng.normal(size=(30, 2, 2))
    e, t = field(ens, member=True), field(truth)
    pooled = distribution_scores(e, t)
    x = ens[:, :, 1, 0].ravel()
    assert pooled.wasserstein[1, 0] == pytest.approx(scipy.stats.wasserstein_distance(x, truth[:, 1, 0]))
    assert pooled.ks_statistic[1, 0] == pytest.approx(scipy.stats.ks_2samp(x, truth[:, 1, 0]).statistic)
    each = distribution_scores(e, t, per_member=True)
    assert each.wasserstein.dims == ("member", "lat", "lon")
    for m in range(3):
        xr.testing.assert_allclose(each.isel(member=m, drop=True), distribution_scores(e.isel(member=m), t))
    summary = distribution_summary(e, t, quantiles=(0.5,))
    assert int(np.argmax(summary["wasserstein_per_member"].values)) == 1
    # pooled quantiles use all members, not the ensemble mean
    qmap = quantile_bias_map(e, t, 0.99)
    want = np.quantile(ens[:, :, 0, 1].ravel(), 0.99) - np.quantile(truth[:, 0, 1], 0.99)
    assert float(qmap[0, 1]) == pytest.approx(want)


def test_quantile_biases_and_area_weighted_aggregate():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(50, 4, 3))
    pred = truth * np.linspace(0.5, 2.0, 4)[None, :, None]  # cell-dependent error: weights matter
    p, t = field(pred, lat=(0.0, 80.0)), field(truth, lat=(0.0, 80.0))
    lat = p.lat.values
    out = distribution_summary(p, t, quantiles=(0.01, 0.999), maps=True)
    for q, name in ((0.01, "quantile_bias_q01"), (0.999, "quantile_bias_q99.9")):
        cell = np.quantile(pred, q, axis=0) - np.quantile(truth, q, axis=0)
        np.testing.assert_allclose(out[name + "_map"].values, cell, rtol=1e-12)
        assert float(out[name]) == pytest.approx(coslat_mean(cell, lat))
        assert float(out[name]) != pytest.approx(cell.mean(), rel=1e-3)  # the weights do matter here
    w1 = out["wasserstein_map"].values
    assert float(out["wasserstein"]) == pytest.approx(coslat_mean(w1, lat))
    unweighted = distribution_summary(p, t, quantiles=(), weighted=False)
    assert float(unweighted["wasserstein"]) == pytest.approx(w1.mean())


def test_distribution_scores_stay_lazy_on_dask():
    rng = np.random.default_rng(4)
    a, b = field(rng.normal(size=(24, 6, 8))), field(rng.normal(size=(24, 6, 8)))
    lazy = distribution_scores(a.chunk({"time": 6, "lat": 3}), b.chunk({"time": 8, "lat": 3}))
    assert lazy.wasserstein.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), distribution_scores(a, b))


# ------------------------------------------------------------------ structure
def test_lag1_autocorrelation_matches_pandas():
    rng = np.random.default_rng(5)
    x = np.zeros((60, 2, 3))
    for k in range(1, 60):  # AR(1), phi = 0.8
        x[k] = 0.8 * x[k - 1] + rng.normal(size=(2, 3))
    x[10, 0, 0] = np.nan
    r1 = lag1_autocorrelation(field(x))
    for i in range(2):
        for j in range(3):
            assert r1[i, j] == pytest.approx(pd.Series(x[:, i, j]).autocorr(1), rel=1e-10)
    noise = rng.normal(size=(60, 2, 3))
    bias = lag1_autocorrelation_bias(field(x), field(noise))
    cell = np.array([[pd.Series(x[:, i, j]).autocorr(1) - pd.Series(noise[:, i, j]).autocorr(1) for j in range(3)]
                     for i in range(2)])
    assert float(bias) == pytest.approx(coslat_mean(cell, field(x).lat.values))
    assert float(bias) > 0.5  # too persistent in time


def test_climatological_mean_correlation_by_hand():
    rng = np.random.default_rng(6)
    truth = rng.normal(size=(5, 4, 6)) + rng.normal(size=(4, 6))
    pred = truth + rng.normal(scale=0.5, size=truth.shape)
    p, t = field(pred, lat=(0.0, 80.0)), field(truth, lat=(0.0, 80.0))
    a, b = pred.mean(0), truth.mean(0)
    assert float(climatological_mean_correlation(p, t, weighted=False)) == pytest.approx(
        np.corrcoef(a.ravel(), b.ravel())[0, 1])
    w = np.broadcast_to(np.cos(np.deg2rad(p.lat.values))[:, None], a.shape)
    am, bm = (w * a).sum() / w.sum(), (w * b).sum() / w.sum()
    r = (w * (a - am) * (b - bm)).sum() / np.sqrt((w * (a - am) ** 2).sum() * (w * (b - bm) ** 2).sum())
    assert float(climatological_mean_correlation(p, t)) == pytest.approx(r)
    ens = xr.concat([p - 1.0, p + 1.0], "member")  # the member mean is p
    assert float(climatological_mean_correlation(ens, t)) == pytest.approx(r)


def test_multivariate_correlation_bias_by_hand():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(40, 2, 2))
    b_truth = a + 0.3 * rng.normal(size=a.shape)  # strongly correlated in the truth
    b_pred = rng.normal(size=a.shape)  # independent in the prediction
    truth = xr.Dataset({"tas": field(a), "pr": field(b_truth, name="pr")})
    pred = xr.Dataset({"tas": field(a), "pr": field(b_pred, name="pr")})
    out = multivariate_correlation_bias(pred, truth, weighted=False)
    cell = [np.corrcoef(a[:, i, j], b_pred[:, i, j])[0, 1] - np.corrcoef(a[:, i, j], b_truth[:, i, j])[0, 1]
            for i in range(2) for j in range(2)]
    assert list(out.pair.values) == ["tas~pr"]
    assert float(out.sel(pair="tas~pr")) == pytest.approx(np.mean(cell))
    assert float(out.sel(pair="tas~pr")) < -0.5
    with pytest.raises(DataError, match="at least 2 variables"):
        multivariate_correlation_bias(pred[["tas"]], truth[["tas"]])


def test_spectrum_fill_missing_keeps_complete_fields_and_fills_holes():
    rng = np.random.default_rng(8)
    da = field(rng.normal(size=(3, 16, 16)))
    xr.testing.assert_allclose(power_spectrum(da, fill_missing=True), power_spectrum(da))
    holes = da.where(da.lat < 60)  # like a land-only product: every field has missing cells
    assert power_spectrum(holes).isnull().all()
    filled = power_spectrum(holes, fill_missing=True)
    assert filled.notnull().all()
    # the filled field has zero anomaly where it was missing: its variance is the kept cells' share
    kept = holes.isel(time=0).values
    anomaly = np.where(np.isnan(kept), 0.0, kept - np.nanmean(kept))
    total = float(power_spectrum(holes.isel(time=0), fill_missing=True).sum())
    assert total <= (anomaly**2).mean() + 1e-12


# ------------------------------------------------------------------ evaluate(suite="climate")
DEFAULT_NAMES = ["mse", "rmse", "mae", "bias", "max_abs_error", "psnr", "ssim", "ms_ssim", "pearson_r",
                 "quantile_bias_q01", "quantile_bias_q50", "quantile_bias_q99", "negative_count", "negative_mean"]
CLIMATE_NAMES = ["perkins_skill_score", "wasserstein", "ks_statistic", "log_histogram_distance",
                 "quantile_bias_q01", "quantile_bias_q05", "quantile_bias_q50", "quantile_bias_q95",
                 "quantile_bias_q99", "quantile_bias_q99.9", "log_spectral_distance", "lag1_autocorrelation_bias",
                 "climatological_mean_correlation"]


def _pair(nt=24, seed=9):
    rng = np.random.default_rng(seed)
    truth = field(280 + rng.normal(size=(nt, 16, 16)).cumsum(0), units="m s-1", name="wind")
    return (truth + rng.normal(scale=0.5, size=truth.shape)).assign_attrs(truth.attrs), truth


def test_evaluate_climate_names_units_and_default_unchanged():
    pred, truth = _pair()
    default = xds.evaluate(pred, truth)
    assert list(default.data_vars) == DEFAULT_NAMES  # the default call is pinned
    assert "suite" not in default.attrs
    ds = xds.evaluate(pred, truth, suite="climate")
    assert [n for n in CLIMATE_NAMES if n not in ds] == []
    assert ds.attrs["suite"] == "climate"
    assert ds.wasserstein.attrs["units"] == "m s-1" and ds.log_spectral_distance.attrs["units"] == "dB"
    assert ds.perkins_skill_score.attrs["units"] == "1" and "Perkins" in ds.perkins_skill_score.attrs["long_name"]
    # the scores equal the module functions' (a wiring mutant would break these)
    cells = distribution_scores(pred, truth)
    assert float(ds.wasserstein) == pytest.approx(coslat_mean(cells.wasserstein.values, truth.lat.values))
    assert float(ds.rmse) == pytest.approx(float(default.rmse))
    # a wind speed is neither temperature nor precipitation: no index, no error
    assert not [n for n in ds.data_vars if n.endswith("_bias") and n.split("_")[0] in ("txx", "rx1day")]
    maps = xds.evaluate(pred, truth, suite="climate", maps=True)
    assert maps.wasserstein_map.dims == ("lat", "lon")


def test_evaluate_climate_ensemble_and_dataset():
    pred, truth = _pair(nt=12)
    ens = xr.concat([pred, pred + 1.0], "member")
    ds = xds.evaluate(ens, truth, suite="climate")
    assert ds.wasserstein_per_member.dims == ("member",)
    assert float(ds.wasserstein_per_member[1]) > float(ds.wasserstein_per_member[0])
    both_p = xr.Dataset({"u": pred, "v": -pred})
    both_t = xr.Dataset({"u": truth, "v": -truth})
    dsv = xds.evaluate(both_p, both_t, suite="climate")
    assert float(dsv.u_wasserstein) == pytest.approx(float(xds.evaluate(pred, truth, suite="climate").wasserstein))
    assert float(dsv.multivariate_correlation_bias.sel(pair="u~v")) == pytest.approx(0.0, abs=1e-12)
    # on Dask each variable goes through the blocked passes, ensembles too: the same numbers
    lazy = xds.evaluate(both_p.chunk({"time": 5}), both_t.chunk({"time": 4}), suite="climate")
    xr.testing.assert_allclose(lazy, dsv, rtol=1e-9)
    xr.testing.assert_allclose(xds.evaluate(ens.chunk({"time": 5}), truth.chunk({"time": 3}), suite="climate"), ds,
                               rtol=1e-9)


def test_evaluate_climate_refusals():
    pred, truth = _pair(nt=6)
    with pytest.raises(DataError, match="suite must be one of"):
        xds.evaluate(pred, truth, suite="climat")
    with pytest.raises(DataError, match="per_time"):
        xds.evaluate(pred, truth, suite="climate", per_time=True)
    with pytest.raises(DataError, match="time dimension"):
        xds.evaluate(pred.isel(time=0), truth.isel(time=0), suite="climate")


@pytest.mark.slow
def test_import_and_default_evaluate_do_not_import_xclim():
    code = ("import sys, numpy as np, xarray as xr, xdownscale as xds\n"
            "a = xr.DataArray(np.random.rand(2, 16, 16), dims=('time', 'y', 'x'))\n"
            "xds.evaluate(a, a)\n"
            "import xdownscale.metrics.distribution, xdownscale.metrics.indices, xdownscale.metrics.report\n"
            "print('xclim' in sys.modules, 'matplotlib' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_evaluate_climate_on_dask_equals_numpy_and_chunks_stay_bounded():
    from xdownscale.metrics.deterministic import rechunk_for_core

    pred, truth = _pair(nt=30)
    eager = xds.evaluate(pred, truth, suite="climate")
    lazy = xds.evaluate(pred.chunk({"time": 7}), truth.chunk({"time": 5, "lat": 8}), suite="climate", compute=False)
    assert any(v.chunks is not None for v in lazy.data_vars.values())
    xr.testing.assert_allclose(lazy.compute(), eager)
    # per-cell scores gather time, per-field scores gather the grid: the other dims shrink to fit the budget
    big = xr.DataArray(np.zeros((1000, 64, 80)), dims=("time", "lat", "lon")).chunk({"time": 100})
    cells = rechunk_for_core(big, ["time"], target=8 * 1000 * 64 * 10)  # room for 640 cells of 1000 steps
    assert cells.chunks == ((1000,), (8,) * 8, (80,))  # whole rows: blocks of rows stay whole chunks
    fields = rechunk_for_core(big, ["lat", "lon"], target=8 * 64 * 80 * 50)
    assert fields.chunks == ((50,) * 20, (64,), (80,))
    assert rechunk_for_core(big.compute(), ["time"]).chunks is None
    assert rechunk_for_core(cells, ["time"], target=8 * 1000 * 64 * 10) is cells  # fits already: no second copy
