"""Quantile mapping (EQM/QDM) against hand-computed cases and xsdba; bias metrics in evaluate."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.bias_correction import quantile_map_array, quantile_mapping, quantile_nodes
from xdownscale.metrics import quantile_bias, wet_day_frequency
from xdownscale.testing import synthetic_field

# hist = [0, 1, 2, 3], ref = 2 * hist, 4 quantiles: nodes eps, .125, .375, .625, .875, 1 - eps;
# numpy's linear quantiles: hist_q = 3 q (1.5 at the median), ref_q = 6 q, so af(q) = 3 q.
HIST = np.array([[0.0, 1.0, 2.0, 3.0]]).T
REF = 2 * HIST


def test_quantile_nodes():
    np.testing.assert_allclose(quantile_nodes(4, eps=1e-6), [1e-6, 0.125, 0.375, 0.625, 0.875, 1 - 1e-6])


def test_eqm_matches_a_hand_computed_case():
    sim = np.array([[1.5, 0.75, 3.0, 5.0]]).T
    out = quantile_map_array(sim, REF, HIST, method="eqm", n_quantiles=4)
    # 1.5 has rank 0.5 in hist -> af = 1.5 -> 3.0; 0.75 -> rank .25 -> af .75 -> 1.5;
    # 3.0 (hist max) -> af(1 - eps) = 3 -> 6.0; 5.0 beyond the max: constant af 3 -> 8.0
    np.testing.assert_allclose(out[:, 0], [3.0, 1.5, 6.0, 8.0], atol=1e-4)


def test_qdm_matches_a_hand_computed_case():
    sim = np.array([[1.0, 2.0, 3.0, 4.0]]).T  # hist shifted by +1: QDM keeps the shift
    out = quantile_map_array(sim, REF, HIST, method="qdm", n_quantiles=4)
    # sim_q = 1 + 3 q, so 2.0 has rank 1/3 in sim -> af = 1.0 -> 3.0; 3.0 -> rank 2/3 -> af 2 -> 5.0;
    # EQM instead ranks 2.0 in hist (rank 2/3) and gives 4.0
    np.testing.assert_allclose(out[1:3, 0], [3.0, 5.0], atol=1e-4)
    eqm = quantile_map_array(sim, REF, HIST, method="eqm", n_quantiles=4)
    np.testing.assert_allclose(eqm[1, 0], 4.0, atol=1e-4)


def test_multiplicative_kind_scales():
    out = quantile_map_array(np.array([[1.5]]), REF + 1, HIST + 1, kind="*", n_quantiles=4)
    # hist+1 = [1..4]: hist_q = 1 + 3q; ref+1 = [1, 3, 5, 7]: ref_q = 1 + 6q. 1.5 has rank 1/6, between
    # the nodes .125 (factor 1.75 / 1.375 = 14/11) and .375 (3.25 / 2.125 = 26/17), 1/6 of the way:
    # factor = 14/11 + (26/17 - 14/11) / 6, times 1.5
    expected = 1.5 * (14 / 11 + (26 / 17 - 14 / 11) / 6)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5)


def _series(values, name="t"):
    v = np.asarray(values, dtype="float64")
    return xr.DataArray(v, dims=("time", "y"), coords={"time": pd.date_range("2000-01-01", periods=len(v)),
                                                       "y": np.arange(v.shape[1])}, name=name,
                        attrs={"units": "K"})


def test_numpy_backend_agrees_with_xsdba():
    pytest.importorskip("xsdba")
    rng = np.random.default_rng(0)
    ref, hist = _series(rng.normal(280, 3, (300, 3))), _series(rng.gamma(4, 1.0, (300, 3)) + 278)
    sim = _series(rng.gamma(4, 1.2, (200, 3)) + 279)
    for method, tol in (("eqm", 0.05), ("qdm", 0.25)):  # QDM: xsdba ranks sim empirically, we interpolate
        ours = quantile_mapping(sim, ref, hist, method=method, n_quantiles=30)
        theirs = quantile_mapping(sim, ref, hist, method=method, n_quantiles=30, backend="xsdba")
        _agree_inside(sim, hist, ours, theirs, tol)


def _agree_inside(sim, hist, ours, theirs, tol):
    # away from the tails, where the extrapolation and QDM's ranking (empirical vs interpolated) differ
    interior = ((sim > hist.quantile(0.05, "time")) & (sim < hist.quantile(0.95, "time"))
                & (sim > sim.quantile(0.05, "time")) & (sim < sim.quantile(0.95, "time")))
    assert int(interior.sum()) > 300
    np.testing.assert_allclose(ours.where(interior).values, theirs.where(interior).values, atol=tol, equal_nan=True)


def test_bias_correct_after_bicubic_removes_a_value_dependent_bias():
    hr = synthetic_field("t2m", times=40, ny=16, nx=16, seed=4)
    lr = xds.coarsen(hr, 2)
    biased = (lr + 1.5 + 0.3 * (lr - 285.0)).rename(lr.name).assign_attrs(lr.attrs)
    train, test = slice(0, 40, 2), slice(1, 40, 2)  # interleaved: the same climate in both
    bic = xds.predict(biased.isel(time=test), model="bicubic", factor=2, like=hr).compute()
    for method in ("eqm", "qdm"):
        out = xds.bias_correct(biased.isel(time=test), ref=hr.isel(time=train), hist=biased.isel(time=train),
                               method=method, n_quantiles=20)
        assert out.dims == hr.dims and out.shape == (20, 16, 16)
        assert method.upper() in out.attrs["bias_correction"]
        before, after = xds.evaluate(bic, hr.isel(time=test)), xds.evaluate(out, hr.isel(time=test))
        assert abs(float(after["bias"])) < 0.3 * abs(float(before["bias"]))
        assert float(after["rmse"]) < float(before["rmse"])


def test_bad_options_are_named():
    with pytest.raises(xds.DataError, match="method"):
        quantile_map_array(HIST, REF, HIST, method="cdf")
    with pytest.raises(xds.DataError, match="kind"):
        quantile_map_array(HIST, REF, HIST, kind="x")
    with pytest.raises(xds.DataError, match="grid of sim"):
        quantile_mapping(_series(np.ones((5, 3))), _series(np.ones((5, 2))), _series(np.ones((5, 3))))


def test_quantile_bias_and_wet_day_frequency_by_hand():
    truth = _series(np.arange(101.0)[:, None] * np.ones((1, 2)))
    pred = truth + 2.0
    np.testing.assert_allclose(float(quantile_bias(pred, truth, 0.5, weighted=False)), 2.0)
    pred2 = truth * 2  # quantile q of 0..200 is 200 q: bias 100 q
    np.testing.assert_allclose(float(quantile_bias(pred2, truth, 0.99, weighted=False)), 99.0)
    rain = _series([[0.0, 0.5], [1.0, 2.0], [0.2, 0.0], [3.0, 0.1]], name="pr")
    np.testing.assert_allclose(float(wet_day_frequency(rain, 1.0, weighted=False)), 3 / 8)


def test_evaluate_reports_bias_metrics_with_units():
    truth = synthetic_field("tp", times=6, ny=16, nx=16, seed=5)
    pred = truth * 1.5
    s = xds.evaluate(pred, truth, wet_threshold=0.1)
    for name in ("quantile_bias_q01", "quantile_bias_q50", "quantile_bias_q99", "wet_day_frequency_bias"):
        assert name in s
    assert s["quantile_bias_q99"].attrs["units"] == "kg m-2"
    assert float(s["quantile_bias_q99"]) > 0 and float(s["wet_day_frequency_bias"]) >= 0
    assert "quantile_bias_q50" not in xds.evaluate(pred, truth, quantiles=())
