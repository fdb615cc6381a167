"""Tests of xdownscale.metrics against independent implementations."""
from __future__ import annotations

import numpy as np
import properscoring
import pytest
import xarray as xr
from scipy import ndimage
from skimage.metrics import structural_similarity

from xdownscale.errors import DataError
from xdownscale.metrics import (
    acc,
    bias,
    crps_ensemble,
    evaluate,
    mae,
    mass_violation,
    max_abs_error,
    ms_ssim,
    mse,
    negative_pixels,
    pearson_r,
    power_spectrum,
    psnr,
    rank_histogram,
    relative_mass_violation,
    rmse,
    spread_skill,
    ssim,
)
from xdownscale.metrics.deterministic import ms_ssim_scales

SKI = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def latlon(values, lat=None, lon=None, *, time=True, units="K", name="tas"):
    """Wrap an array (..., nlat, nlon) as a CF-ish lat/lon DataArray."""
    values = np.asarray(values, dtype="float64")
    ny, nx = values.shape[-2:]
    lat = np.linspace(-60.0, 70.0, ny) if lat is None else np.asarray(lat, dtype="float64")
    lon = np.linspace(0.0, 360.0, nx, endpoint=False) if lon is None else np.asarray(lon, dtype="float64")
    dims = ["lat", "lon"]
    coords = {"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})}
    lead = values.shape[:-2]
    if len(lead) >= 1 and time:
        dims = ["time"] + dims
        coords["time"] = np.arange(lead[-1])
        if len(lead) == 2:
            dims = ["member"] + dims
    elif lead:
        dims = [f"d{i}" for i in range(len(lead))] + dims
    return xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"units": units})


def smooth_field(shape, seed=0, sigma=2.0, scale=1.0, offset=0.0):
    """Random smooth field(s): Gaussian-filtered white noise, periodic."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    s = (0,) * (len(shape) - 2) + (sigma, sigma)
    a = ndimage.gaussian_filter(a, s, mode="wrap")
    return offset + scale * a / a.std()


def pair(shape=(3, 40, 48), seed=0, noise=0.3):
    t = latlon(smooth_field(shape, seed, offset=280.0, scale=5.0))
    rng = np.random.default_rng(seed + 100)
    p = t + noise * 5.0 * smooth_field(shape, seed + 1, sigma=1.0) + rng.normal(0, 0.2, size=shape)
    p.attrs = dict(t.attrs)
    return p, t


def coslat(da):
    return np.broadcast_to(np.cos(np.deg2rad(da.lat.values))[:, None], (da.sizes["lat"], da.sizes["lon"]))


# ----------------------------------------------------------------------------- SSIM family
@pytest.mark.parametrize("shape,seed", [((40, 48), 0), ((11, 30), 1), ((64, 64), 2)])
def test_ssim_matches_skimage_unweighted(shape, seed):
    p, t = pair((2,) + shape, seed)
    r = float(t.max() - t.min())
    got = ssim(p, t, weighted=False, dim=[]).values  # per field
    for i in range(2):
        ref = structural_similarity(p.values[i], t.values[i], data_range=r, **SKI)
        assert got[i] == pytest.approx(ref, abs=1e-6)
    assert float(ssim(p, t, weighted=False)) == pytest.approx(got.mean(), abs=1e-12)
    r2 = 7.5
    ref = structural_similarity(p.values[0], t.values[0], data_range=r2, **SKI)
    assert float(ssim(p.isel(time=0), t.isel(time=0), data_range=r2, weighted=False)) == pytest.approx(ref, abs=1e-6)


def test_ssim_projected_grid_ignores_weighted_flag():
    p, t = pair((1, 32, 32), 3)
    p, t = (a.isel(time=0).rename(lat="y", lon="x").drop_vars(["y", "x"]) for a in (p, t))
    r = float(t.max() - t.min())
    ref = structural_similarity(p.values, t.values, data_range=r, **SKI)
    assert float(ssim(p, t)) == pytest.approx(ref, abs=1e-6)


def test_ssim_area_weighted_map_mean():
    p, t = pair((1, 40, 40), 4)
    p, t = p.isel(time=0), t.isel(time=0)
    r = float(t.max() - t.min())
    _, smap = structural_similarity(p.values, t.values, data_range=r, full=True, **SKI)
    w = coslat(t)
    c = (slice(5, -5), slice(5, -5))
    expected = np.sum(smap[c] * w[c]) / np.sum(w[c])
    got = float(ssim(p, t, weighted=True))
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(float(ssim(p, t, weighted=False)), abs=1e-6)


def _masked_ssim_by_hand(x, y, r, w=None):
    """SSIM over valid cells, written out cell by cell: for every valid interior cell, the 11x11
    Gaussian window's weights are restricted to the valid cells and renormalised."""
    g1 = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    g2 = np.outer(g1, g1)
    ok = ~(np.isnan(x) | np.isnan(y))
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    w = np.ones(x.shape) if w is None else w
    num = den = 0.0
    for i in range(5, x.shape[0] - 5):
        for j in range(5, x.shape[1] - 5):
            if not ok[i, j]:
                continue
            win = (slice(i - 5, i + 6), slice(j - 5, j + 6))
            k = g2 * ok[win]
            k = k / k.sum()
            a, b = np.where(ok[win], x[win], 0.0), np.where(ok[win], y[win], 0.0)
            ua, ub = (k * a).sum(), (k * b).sum()
            va, vb, vab = (k * a * a).sum() - ua**2, (k * b * b).sum() - ub**2, (k * a * b).sum() - ua * ub
            s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
            num, den = num + w[i, j] * s, den + w[i, j]
    return num / den


def test_ssim_over_valid_cells_of_a_land_only_field():
    """Every 11x11 window touches a NaN (sea cells on a 4-cell lattice): SSIM is still defined over the
    valid cells, and equals a cell-by-cell evaluation with renormalised window weights."""
    p, t = pair((1, 36, 40), 5)
    p, t = p.isel(time=0), t.isel(time=0)
    sea = np.zeros(t.shape, bool)
    sea[::4, ::4] = True
    sea[20:, 25:] = True  # and a sea basin
    pn, tn = p.where(~sea), t.where(~sea)
    tn[8, 9] = np.nan  # NaN in one input only counts as missing too
    r = float(t.max() - t.min())
    got = float(ssim(pn, tn, data_range=r, weighted=False))
    assert np.isfinite(got)
    assert got == pytest.approx(_masked_ssim_by_hand(pn.values, tn.values, r), abs=1e-9)
    w = coslat(t)
    assert float(ssim(pn, tn, data_range=r, weighted=True)) == pytest.approx(
        _masked_ssim_by_hand(pn.values, tn.values, r, w), abs=1e-9)


def test_ssim_hand_case_constant_fields_with_nan():
    """pred = truth + 1 on constant truth 10, with NaN cells everywhere: no local variance, so
    SSIM = luminance term = (2*11*10 + C1) / (11^2 + 10^2 + C1) with C1 = (0.01 R)^2."""
    t = latlon(np.full((2, 30, 30), 10.0))
    t[:, 2::5, 3::5] = np.nan
    p = t + 1.0
    c1 = (0.01 * 10.0) ** 2
    expected = (2 * 11 * 10 + c1) / (11**2 + 10**2 + c1)
    got = ssim(p, t, data_range=10.0, dim=[])
    np.testing.assert_allclose(got.values, expected, rtol=0, atol=1e-12)
    # lazily too, one field per chunk
    lazy = ssim(p.chunk({"time": 1}), t.chunk({"time": 1}), data_range=10.0, dim=[])
    np.testing.assert_allclose(lazy.values, expected, rtol=0, atol=1e-12)


def test_ssim_warns_when_a_field_has_no_valid_cell():
    p, t = pair((2, 24, 24), 6)
    t = t.copy()
    t[1, 5:-5, 5:-5] = np.nan  # the second field is valid only in the border strip SSIM leaves out
    with pytest.warns(RuntimeWarning, match="no cell that is valid"):
        out = ssim(p, t, dim=[]).values
    assert np.isfinite(out[0]) and np.isnan(out[1])


def test_ms_ssim_over_valid_cells():
    t = latlon(smooth_field((1, 48, 48), 11, offset=10.0))
    t[:, ::4, ::4] = np.nan
    assert float(ms_ssim(t, t)) == pytest.approx(1.0, abs=1e-12)
    noisy = t + 0.3 * np.random.default_rng(1).normal(size=t.shape)
    v = float(ms_ssim(noisy, t))
    assert 0.0 < v < 1.0


def test_ms_ssim_identity_and_noise():
    t = latlon(smooth_field((1, 96, 96), 6, offset=10.0), time=True)
    assert float(ms_ssim(t, t)) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(7)
    vals = [float(ms_ssim(t + s * rng.normal(size=t.shape), t)) for s in (0.05, 0.2, 0.5, 1.0)]
    assert all(a > b for a, b in zip(vals, vals[1:])), vals
    assert 0.0 < vals[-1] < 1.0


def test_ms_ssim_scale_rule_and_too_small():
    assert ms_ssim_scales(176, 200) == 5
    assert ms_ssim_scales(175, 200) == 4
    assert ms_ssim_scales(22, 22) == 2
    assert ms_ssim_scales(21, 50) == 1
    t = latlon(smooth_field((2, 20, 30), 8))
    with pytest.warns(RuntimeWarning, match="too small"):
        out = ms_ssim(t + 1.0, t)
    assert np.isnan(float(out))
    # two scales (24x24): cs at full resolution and SSIM after 2x2 pooling, renormalised weights
    t = latlon(smooth_field((1, 24, 26), 9), time=True).isel(time=0)
    p = t + 0.3 * latlon(smooth_field((1, 24, 26), 10, sigma=1.0)).isel(time=0)
    r = float(t.max() - t.min())

    def g(a):
        return ndimage.gaussian_filter(a, 1.5, mode="reflect", truncate=3.5)

    x, y = p.values, t.values
    ux, uy = g(x), g(y)
    cs = (2 * (g(x * y) - ux * uy) + (0.03 * r) ** 2) / (g(x * x) - ux**2 + g(y * y) - uy**2 + (0.03 * r) ** 2)
    cs0 = cs[5:-5, 5:-5].mean()
    pool = lambda a: a.reshape(12, 2, 13, 2).mean(axis=(1, 3))  # noqa: E731
    s1 = structural_similarity(pool(x), pool(y), data_range=r, **SKI)
    w = np.array([0.0448, 0.2856]) / (0.0448 + 0.2856)
    assert float(ms_ssim(p, t, weighted=False)) == pytest.approx(cs0 ** w[0] * s1 ** w[1], abs=1e-6)


# ----------------------------------------------------------------------------- pointwise scores
def test_pointwise_scores_unweighted_match_numpy():
    p, t = pair((3, 20, 24), 10)
    e = p.values - t.values
    assert float(mse(p, t, weighted=False)) == pytest.approx(np.mean(e**2), rel=1e-12)
    assert float(rmse(p, t, weighted=False)) == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-12)
    assert float(mae(p, t, weighted=False)) == pytest.approx(np.mean(abs(e)), rel=1e-12)
    assert float(bias(p, t, weighted=False)) == pytest.approx(np.mean(e), rel=1e-10)
    assert float(max_abs_error(p, t)) == pytest.approx(np.max(abs(e)), rel=1e-12)
    r = np.corrcoef(p.values.ravel(), t.values.ravel())[0, 1]
    assert float(pearson_r(p, t, weighted=False)) == pytest.approx(r, rel=1e-10)
    per = mse(p, t, weighted=False, dim=["lat", "lon"])
    assert per.dims == ("time",)
    np.testing.assert_allclose(per.values, np.mean(e**2, axis=(1, 2)), rtol=1e-12)


def test_area_weighting_matches_hand_coslat_mean_and_skips_nan():
    p, t = pair((2, 18, 20), 11)
    p[0, 3, 4] = np.nan
    t[1, 10, 2] = np.nan
    e = p.values - t.values
    w = np.broadcast_to(coslat(t), e.shape)
    ok = ~np.isnan(e)
    expected = np.sum(w[ok] * e[ok] ** 2) / np.sum(w[ok])
    assert float(mse(p, t)) == pytest.approx(expected, rel=1e-12)
    assert float(mse(p, t)) != pytest.approx(float(mse(p, t, weighted=False)), rel=1e-6)
    assert float(bias(p, t)) == pytest.approx(np.sum(w[ok] * e[ok]) / np.sum(w[ok]), rel=1e-10)
    # weighted Pearson by hand
    a, b, ww = p.values[ok], t.values[ok], w[ok]
    am, bm = np.sum(ww * a) / ww.sum(), np.sum(ww * b) / ww.sum()
    cov = np.sum(ww * (a - am) * (b - bm))
    r = cov / np.sqrt(np.sum(ww * (a - am) ** 2) * np.sum(ww * (b - bm) ** 2))
    assert float(pearson_r(p, t)) == pytest.approx(r, rel=1e-10)
    # projected grids are uniform
    pp, tt = (x.rename(lat="y", lon="x").drop_vars(["y", "x"]) for x in (p, t))
    assert float(mse(pp, tt)) == pytest.approx(np.nanmean(e**2), rel=1e-12)


def test_psnr_by_hand():
    p, t = pair((2, 16, 16), 12)
    m = np.mean((p.values - t.values) ** 2)
    r = t.values.max() - t.values.min()
    assert float(psnr(p, t, weighted=False)) == pytest.approx(10 * np.log10(r**2 / m), rel=1e-12)
    assert float(psnr(p, t, data_range=50.0, weighted=False)) == pytest.approx(10 * np.log10(2500 / m), rel=1e-12)
    assert np.isinf(float(psnr(t, t)))


def test_acc_by_hand():
    p, t = pair((3, 16, 20), 13)
    clim = t.mean("time") + 0.5
    a, b = (p - clim).values, (t - clim).values
    w = np.broadcast_to(coslat(t), a.shape)
    expected = np.sum(w * a * b) / np.sqrt(np.sum(w * a * a) * np.sum(w * b * b))
    assert float(acc(p, t, clim)) == pytest.approx(expected, rel=1e-10)
    assert float(acc(t, t, clim)) == pytest.approx(1.0)
    ac, bc = a - a.mean(), b - b.mean()
    assert float(acc(p, t, clim, weighted=False, centered=True)) == pytest.approx(
        np.sum(ac * bc) / np.sqrt(np.sum(ac**2) * np.sum(bc**2)), rel=1e-10)


def test_nearly_equal_coordinates_are_snapped():
    p, t = pair((1, 12, 12), 14)
    p = p.assign_coords(lat=p.lat.astype("float32"))
    assert float(mse(p, t, weighted=False)) == pytest.approx(np.mean((p.values - t.values) ** 2))
    with pytest.raises(DataError, match="different coordinates"):
        mse(p.assign_coords(lat=p.lat + 3.0), t)


# ----------------------------------------------------------------------------- conservation
def test_mass_violation_zero_for_block_constant_field():
    f = 4
    lr = latlon(smooth_field((2, 10, 12), 15, offset=3.0), lat=np.linspace(-50, 58, 10),
                lon=np.arange(12) * 12.0 + 6.0)
    flat = np.repeat(lr.lat.values, f) + np.tile(np.arange(f) - (f - 1) / 2, 10) * (12.0 / f)
    flon = np.repeat(lr.lon.values, f) + np.tile(np.arange(f) - (f - 1) / 2, 12) * 3.0
    up = latlon(np.repeat(np.repeat(lr.values, f, axis=1), f, axis=2), lat=flat, lon=flon)
    assert float(mass_violation(up, lr)) < 1e-12
    assert float(mass_violation(up + 0.25, lr, f)) == pytest.approx(0.25, rel=1e-10)
    w = np.broadcast_to(coslat(lr), lr.shape)
    rel = 0.25 / (np.sum(w * abs(lr.values)) / np.sum(w))
    assert float(relative_mass_violation(up + 0.25, lr)) == pytest.approx(rel, rel=1e-10)
    assert mass_violation(up, lr, dim=["lat", "lon"]).dims == ("time",)
    with pytest.raises(DataError, match="integer multiple"):
        mass_violation(up.isel(lat=slice(0, 38)), lr)


def test_mass_violation_is_area_weighted_hand_case():
    """Coarse rows at 10, 40 and 70 degrees N, errors 1, 3 and 5 (both signs): the cos(latitude)-weighted
    mean |error| is (0.98481*1 + 0.76604*3 + 0.34202*5) / (0.98481 + 0.76604 + 0.34202) = 2.3857...,
    not the plain mean 3."""
    f = 2
    lr = latlon(np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]), lat=[10.0, 40.0, 70.0], lon=[15.0, 45.0])
    fine_lat = np.array([2.5, 17.5, 32.5, 47.5, 62.5, 77.5])
    fine_lon = np.array([7.5, 22.5, 37.5, 52.5])
    err = np.array([[1.0, -1.0], [3.0, -3.0], [-5.0, 5.0]])  # per coarse cell, constant over its block
    up = np.repeat(np.repeat(lr.values + err, f, axis=1), f, axis=2)
    pred = latlon(up, lat=fine_lat, lon=fine_lon)
    c = np.cos(np.deg2rad([10.0, 40.0, 70.0]))
    expected = (c[0] * 1 + c[1] * 3 + c[2] * 5) / c.sum()
    assert expected == pytest.approx(2.38574, abs=1e-5)
    assert float(mass_violation(pred, lr)) == pytest.approx(expected, rel=1e-12)
    assert float(mass_violation(pred, lr, weighted=False)) == pytest.approx(3.0, rel=1e-12)
    scale = (c[0] * 1.5 + c[1] * 3.5 + c[2] * 5.5) / c.sum()  # weighted mean |lr| over the same cells
    assert float(relative_mass_violation(pred, lr)) == pytest.approx(expected / scale, rel=1e-12)


def test_negative_pixels():
    a = latlon(np.array([[[1.0, -2.0], [np.nan, -4.0]], [[1.0, 2.0], [3.0, 0.0]]]))
    out = negative_pixels(a)
    assert int(out.negative_count) == 2
    assert float(out.negative_mean) == pytest.approx(-3.0)
    per = negative_pixels(a, dim=["lat", "lon"])
    assert per.negative_count.values.tolist() == [2, 0]
    assert per.negative_mean.values.tolist() == [-3.0, 0.0]


# ----------------------------------------------------------------------------- probabilistic
def test_crps_matches_properscoring():
    rng = np.random.default_rng(16)
    ens = latlon(rng.normal(size=(7, 3, 6, 5)))
    truth = latlon(rng.normal(size=(3, 6, 5)))
    ens[2, 0, 1, 1] = np.nan
    truth[1, 2, 3] = np.nan
    got = crps_ensemble(ens, truth)
    ref = properscoring.crps_ensemble(truth.values, ens.values, axis=0)
    assert got.dims == truth.dims
    np.testing.assert_allclose(got.values, ref, rtol=1e-10, atol=1e-12, equal_nan=True)
    lazy = crps_ensemble(ens.chunk({"time": 1}), truth.chunk({"time": 1}))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, ref, rtol=1e-10, atol=1e-12, equal_nan=True)
    with pytest.raises(DataError, match="ensemble dimension 'ens'"):
        crps_ensemble(ens, truth, member_dim="ens")


def test_rank_histogram_calibrated_is_flat():
    rng = np.random.default_rng(17)
    m, n = 9, 20 * 25 * 10
    ens = latlon(rng.normal(size=(m, 10, 20, 25)))
    truth = latlon(rng.normal(size=(10, 20, 25)))
    h = rank_histogram(ens, truth)
    assert h.dims == ("rank",) and h.sizes["rank"] == m + 1
    assert int(h.sum()) == n
    expected = n / (m + 1)
    chi2 = float(((h - expected) ** 2 / expected).sum())
    assert chi2 < 35.0  # 9 dof: P(chi2 > 35) ~ 6e-5
    # ties broken at random, reproducibly; NaN points left out
    zeros = latlon(np.zeros((m, 10, 20, 25)))
    hz = rank_histogram(zeros, truth * 0.0, seed=3)
    assert float(((hz - expected) ** 2 / expected).sum()) < 35.0
    assert (rank_histogram(zeros, truth * 0.0, seed=3) == hz).all()
    truth[0, 0, 0] = np.nan
    assert int(rank_histogram(ens, truth).sum()) == n - 1


def test_spread_skill_ratio_of_calibrated_ensemble():
    rng = np.random.default_rng(18)
    ens = latlon(rng.normal(size=(5, 20, 20, 25)))
    truth = latlon(rng.normal(size=(20, 20, 25)))
    out = spread_skill(ens, truth)
    assert float(out.ratio) == pytest.approx(1.0, abs=0.05)
    assert float(out.rmse) == pytest.approx(float(rmse(ens.mean("member"), truth)))


# ----------------------------------------------------------------------------- spectra
def _slope(spec, kmin, kmax):
    k = spec.wavenumber.values
    sel = (k >= kmin) & (k <= kmax)
    return np.polyfit(np.log(k[sel]), np.log(spec.values[sel]), 1)[0]


def test_power_spectrum_white_noise_is_flat():
    rng = np.random.default_rng(19)
    n = 64
    da = latlon(rng.normal(0.0, 2.0, size=(8, n, n)))
    spec = power_spectrum(da)
    assert spec.dims == ("wavenumber",)
    assert spec.wavenumber.values[0] == pytest.approx(1 / n) and spec.wavenumber.values[-1] == pytest.approx(0.5)
    assert spec.attrs["units"] == "K^2" and spec.wavenumber.attrs["units"] == "cycles per grid cell"
    assert abs(_slope(spec, 2 / n, 0.5)) < 0.1
    np.testing.assert_allclose(spec.values[4:].mean(), 4.0 / n**2, rtol=0.1)  # sigma^2 per mode
    assert power_spectrum(da, dim=[]).dims == ("time", "wavenumber")


def test_power_spectrum_power_law_slope():
    rng = np.random.default_rng(20)
    n = 128
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    amp = np.where(k > 0, k, np.inf) ** -1.5  # power ~ k^-3
    fields = [np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((n, n)))).real for _ in range(4)]
    spec = power_spectrum(latlon(np.stack(fields)))
    assert _slope(spec, 4 / n, 0.4) == pytest.approx(-3.0, abs=0.3)


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_shapes_attrs_and_per_time():
    p, t = pair((4, 48, 48), 21)
    lr = t.coarsen(lat=4, lon=4).mean()
    ds = evaluate(p, t, lr=lr, climatology=t.mean("time"))
    names = {"mse", "rmse", "mae", "bias", "max_abs_error", "psnr", "ssim", "ms_ssim", "pearson_r",
             "acc", "mass_violation", "relative_mass_violation", "negative_count", "negative_mean"}
    assert names <= set(ds.data_vars)
    assert all(ds[v].ndim == 0 for v in ds.data_vars)
    assert ds.rmse.attrs["units"] == "K" and ds.mse.attrs["units"] == "K^2"
    assert ds.psnr.attrs["units"] == "dB" and ds.ssim.attrs["units"] == "1"
    assert all("long_name" in ds[v].attrs and "units" in ds[v].attrs for v in ds.data_vars)
    assert float(ds.rmse) == pytest.approx(float(rmse(p, t)))
    per = evaluate(p, t, lr=lr, per_time=True)
    assert all(per[v].dims == ("time",) and per[v].size == 4 for v in per.data_vars)
    np.testing.assert_allclose(per.ssim.values, ssim(p, t, dim=["lat", "lon"]).values)


def test_evaluate_ensemble_and_dask():
    p, t = pair((3, 24, 24), 22)
    rng = np.random.default_rng(23)
    ens = xr.concat([p + rng.normal(size=p.shape) for _ in range(4)], "member")
    ds = evaluate(ens, t)
    assert "crps" in ds and ds.crps.attrs["units"] == "K"
    assert float(ds.mse) == pytest.approx(float(mse(ens.mean("member"), t)))
    w = coslat(t)[None]
    ref = properscoring.crps_ensemble(t.values, ens.values, axis=0)
    assert float(ds.crps) == pytest.approx(np.sum(w * ref) / np.sum(w * np.ones_like(ref)), rel=1e-10)
    lazy = evaluate(ens.chunk({"time": 1}), t.chunk({"time": 1}), per_time=True, compute=False)
    assert lazy.mse.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), evaluate(ens, t, per_time=True))


def test_error_messages():
    p, t = pair((2, 32, 32), 24)
    small = t.coarsen(lat=2, lon=2).mean()
    with pytest.raises(DataError, match=r"lat=32.*lat=16"):
        evaluate(p, small)
    with pytest.raises(DataError, match="differ in shape"):
        mse(p, small)
    with pytest.raises(DataError, match="integer multiple"):
        evaluate(p, t, lr=t.isel(lat=slice(0, 10), lon=slice(0, 10)))
    with pytest.raises(DataError, match="time dimension"):
        evaluate(p.isel(time=0), t.isel(time=0), per_time=True)
    with pytest.raises(DataError, match="at least 11x11"):
        ssim(p.isel(lat=slice(0, 8)), t.isel(lat=slice(0, 8)))
