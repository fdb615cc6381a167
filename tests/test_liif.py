"""The arbitrary-scale ``liif`` model: training over scales, prediction onto factors, grids and points."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

import xdownscale as xds
from xdownscale.data.pairs import coarsen_block
from xdownscale.engine.checkpoint import read_checkpoint
from xdownscale.errors import DataError
from xdownscale.families.implicit.fit import ScaleSampleDataset, degrade, overlap_matrix, resample_area
from xdownscale.io.cf import fine_coordinates
from xdownscale.models.liif import LIIFNet, grid_queries
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(epochs=2, batch_size=8, samples_per_epoch=16, val_samples=8, width=8, n_blocks=1, hidden=16, queries=128,
            lr_patch=8, scales=(1.5, 4.0), progress=False)


@pytest.fixture(scope="module")
def hr():
    return synthetic_field("t2m", times=6, ny=48, nx=64, seed=3)


@pytest.fixture(scope="module")
def model(hr, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDOWNSCALE_HOME", str(store))
        m = hr.downscale.fit(model="liif", seed=0, checkpoint=store / "liif.pt", **TINY)
    # a trained decoder head is no longer zero, so the outputs differ from plain bicubic
    assert any(float(p.detach().abs().sum()) > 0 for p in m.module.body.decoder.head[-1].parameters())
    return m


@pytest.fixture(scope="module")
def lr(hr):
    return hr.isel(time=slice(-2, None)).downscale.coarsen(4)


# ---------------------------------------------------------------- resampling and training samples
def test_overlap_matrix_rows_cover_the_coarse_cells():
    a = overlap_matrix(10, 4)  # ratio 2.5
    np.testing.assert_allclose(a.sum(axis=1), 2.5)
    np.testing.assert_allclose(a.sum(axis=0), 1.0)


def test_resample_area_conserves_for_non_integer_ratios_and_matches_block_mean():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 22, 33))
    w = np.cos(np.deg2rad(np.linspace(60, 30, 22)))
    c = resample_area(v, (4, 6), w)  # x5.5
    fine_mean = (v * w[:, None]).sum((-2, -1)) / (w.sum() * 33)
    ay = overlap_matrix(22, 4)
    coarse_w = ay @ w  # area of each coarse row
    np.testing.assert_allclose((c * coarse_w[:, None]).sum((-2, -1)) / (coarse_w.sum() * 6), fine_mean, rtol=1e-12)
    np.testing.assert_allclose(resample_area(v[:, :20, :32], (5, 8), w[:20]), coarsen_block(v[:, :20, :32], 4, w[:20]),
                               rtol=1e-12)


def test_training_samples_are_reproducible_and_span_the_scales(hr):
    field = hr.values
    stats = {"mean": float(field.mean()), "std": float(field.std())}
    ds = ScaleSampleDataset(field, np.ones(48), stats, np.arange(6), scales=(1.5, 4.0), lr_patch=8, queries=64,
                            n_samples=40, seed=1)
    x, y, q, c = ds[3]
    assert x.shape == (1, 8, 8) and y.shape == (64,) and q.shape == (64, 4) and c.shape == (1, 8, 8)
    assert torch.equal(ds[3][2], q)
    cells = np.array([float(ds[i][2][0, 2]) for i in range(40)])
    assert 1 / 4.0 - 0.02 <= cells.min() and cells.max() <= 1 / 1.5 + 0.02 and cells.std() > 0.05
    ds.set_epoch(1)
    assert not torch.equal(ds[3][2], q)


def test_high_order_degradation_is_seeded_and_changes_the_input():
    x = np.random.default_rng(0).normal(size=(1, 12, 12)).astype("float32")
    a, b = degrade(x, np.random.default_rng(5)), degrade(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and np.abs(a - x).mean() > 1e-3


def test_untrained_net_is_bicubic_at_integer_factors():
    net = LIIFNet(width=8, n_blocks=1, hidden=16, mean=1.0, std=2.0)
    x = torch.randn(2, 1, 6, 7)
    out = net(x, grid_queries(6, 7, 3, 2)).reshape(2, 18, 21)
    ref = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)[:, 0] * 2.0 + 1.0
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- prediction onto factors, grids, points
@pytest.mark.parametrize("factor", [2, 2.5, 3, 5.5])
def test_shapes_and_cf_metadata_for_several_factors(model, lr, factor):
    out = lr.downscale.predict(model=model, factor=factor)
    assert out.dims == lr.dims and out.chunks is not None  # lazy
    assert out.sizes["lat"] == round(12 * factor) and out.sizes["lon"] == round(16 * factor)
    v = out.compute()
    assert np.isfinite(v.values).all()
    assert v.attrs["units"] == "K" and "area: mean" in v.attrs["cell_methods"]
    assert "model=liif" in v.attrs["history"] and v.attrs["xdownscale_model"] == "liif"
    np.testing.assert_allclose(v.attrs["xdownscale_scale"], [factor, factor], rtol=1e-3)
    assert v.lat.attrs["standard_name"] == "latitude" and v.lon.attrs["units"] == "degrees_east"
    assert (np.diff(v.lat.values) < 0).all()  # descending like the source
    lat_b = (float(lr.lat[0]) + 1.25, float(lr.lat[-1]) - 1.25)  # coarse cells span 2.5 deg
    assert lat_b[1] < v.lat.values.min() and v.lat.values.max() < lat_b[0]
    if factor == int(factor):
        np.testing.assert_allclose(v.lat.values, fine_coordinates(lr, int(factor))["lat"].values)
        assert int(v.attrs["xdownscale_factor"]) == factor


def test_like_puts_the_prediction_on_the_truth_labels(model, hr, lr):
    truth = hr.isel(time=slice(-2, None))
    out = lr.downscale.predict(model=model, factor=4, like=truth)
    assert (out - truth).sizes == truth.sizes


def test_chunked_prediction_equals_whole_field(model, lr):
    whole = lr.downscale.predict(model=model, factor=2.5, chunks=1000).compute()
    tiled = lr.downscale.predict(model=model, factor=2.5, chunks=7)
    assert len(tiled.chunks[1]) > 1
    np.testing.assert_allclose(tiled.values, whole.values, rtol=0, atol=1e-4)


def test_target_grid_offset_from_the_source(model, lr):
    lat = np.linspace(56.3, 33.1, 30)  # not aligned with the source cells, ascending/descending irrelevant
    lon = np.linspace(-37.7, -3.2, 41)
    target = xr.Dataset(coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                                "lon": ("lon", lon, {"units": "degrees_east"})})
    out = lr.downscale.predict(model=model, target=target).compute()
    assert out.shape == (2, 30, 41)
    np.testing.assert_array_equal(out.lat.values, lat)
    # the grid query equals point queries at the same places with the same cell size
    iy, ix = np.array([0, 7, 29]), np.array([3, 20, 40])
    cell = float(np.abs(np.diff(lat)).mean()) / 2.5
    pts = xr.Dataset({"lat": ("station", lat[iy]), "lon": ("station", lon[ix])})
    pv = lr.downscale.predict(model=model, points=pts, point_cell=cell)
    grid_vals = out.values[:, iy, ix]
    np.testing.assert_allclose(pv.values, grid_vals, atol=0.05)


def test_nested_target_grid_equals_the_factor_prediction(model, hr, lr):
    truth = hr.isel(time=slice(-2, None))
    a = lr.downscale.predict(model=model, target=truth).compute()
    b = lr.downscale.predict(model=model, factor=4).compute()
    np.testing.assert_allclose(a.values, b.values, atol=1e-4)
    assert int(a.attrs["xdownscale_factor"]) == 4


def test_points_keep_their_dims_and_coordinates(model, lr):
    pts = xr.Dataset({"lat": ("station", [40.1, 50.5, 35.0]), "lon": ("station", [-20.0, -10.3, -30.0])},
                     coords={"station": ["a", "b", "c"]})
    out = lr.downscale.predict(model=model, points=pts)
    assert out.dims == ("time", "station") and list(out.station.values) == ["a", "b", "c"]
    np.testing.assert_array_equal(out.lat.values, [40.1, 50.5, 35.0])
    assert np.isfinite(out.values).all() and out.attrs["units"] == "K"
    # close to the coarse field there (smooth synthetic field): within a few kelvin
    near = lr.sel(lat=xr.DataArray(pts.lat.values, dims="station"), lon=xr.DataArray(pts.lon.values, dims="station"),
                  method="nearest")
    assert float(np.abs(out - near.values).max()) < 6.0


def test_dataset_in_dataset_out(model, lr):
    out = lr.to_dataset().downscale.predict(model=model, factor=2.5)
    assert isinstance(out, xr.Dataset) and out["t2m"].shape == (2, 30, 40)


# ---------------------------------------------------------------- conservation
@pytest.mark.parametrize("constraint", ["add", "mult"])
@pytest.mark.parametrize("chunks", [None, 5])
def test_constraint_conserves_where_the_target_nests(model, lr, constraint, chunks):
    out = lr.downscale.predict(model=model, factor=4, constraint=constraint, chunks=chunks).compute()
    assert_conserves(out, lr, 4, rtol=1e-6)
    plain = lr.downscale.predict(model=model, factor=4).compute()
    with pytest.raises(AssertionError):
        assert_conserves(plain, lr, 4, rtol=1e-6)


def test_softmax_at_prediction_rescales_each_block_of_the_physical_field(model, lr):
    # liif's output is physical (kelvin here), not the layer's log-mass pre-activation: fed as
    # log-mass, exp(280 K - max) put nearly all of a block's mass on its warmest cell (0.84x
    # bicubic became 250x on WFDE5 Tair)
    plain = lr.downscale.predict(model=model, factor=4).compute()
    soft = lr.downscale.predict(model=model, factor=4, constraint="softmax").compute()
    assert_conserves(soft, lr, 4, rtol=1e-6)
    mult = lr.downscale.predict(model=model, factor=4, constraint="mult").compute()
    np.testing.assert_allclose(soft.values, mult.values, rtol=1e-5)
    assert float(np.abs(soft - plain).max()) < 0.02 * float(plain.max())


def test_a_field_that_stops_at_zero_is_never_predicted_below_it(tmp_path):
    rain = synthetic_field("tp", times=6, ny=48, nx=64, seed=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m = rain.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "r.pt", **TINY)
    assert not [w for w in seen if "stops at zero" in str(w.message)]  # liif bounds it itself: nothing to warn
    assert m.config["lower_bound"] == 0.0
    assert m.meta["training"]["integer_share"] == 0.5  # rain keeps half its batches at scales in between
    lr = rain.isel(time=slice(-2, None)).downscale.coarsen(4)
    out = lr.downscale.predict(model=m, factor=4).compute()
    # the bicubic base overshoots below zero beside dry cells; those cells come out dry, not negative
    bicubic = lr.downscale.predict(model="bicubic", factor=4).compute()
    assert float(bicubic.min()) < 0 and float(out.min()) == 0.0


def test_a_positive_field_without_zeros_is_not_clipped_at_zero(hr, tmp_path):
    # degC that happened to stay above zero in training: a colder input must still come out below zero
    warm = (hr - 273.15).clip(min=0.5).assign_attrs(units="degC")
    m = warm.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "c.pt", **TINY)
    assert m.config["lower_bound"] is None
    cold = (warm.isel(time=slice(-2, None)) - 30.0).downscale.coarsen(4)
    assert float(cold.downscale.predict(model=m, factor=4).max()) < 0


def test_constraint_on_a_non_nested_target_is_a_clear_error(model, lr):
    with pytest.raises(DataError, match="nests the source"):
        lr.downscale.predict(model=model, factor=2.5, constraint="add")


# ---------------------------------------------------------------- reproducibility, checkpoints, store
def test_fit_is_reproducible_from_a_seed(hr, model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path))
    again = hr.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "again.pt", **TINY)
    for k, v in model.module.state_dict().items():
        torch.testing.assert_close(again.module.state_dict()[k], v, rtol=0, atol=0)


def test_checkpoint_round_trip_and_store_lookup(model, lr, tmp_path, monkeypatch):
    payload = read_checkpoint(model.checkpoint)  # weights_only=True
    assert payload["network"]["model"] == "liif" and payload["network"]["factor"] == 0
    assert payload["network"]["scales"] == [1.5, 4.0]
    loaded = xds.load(model.checkpoint)
    a = lr.downscale.predict(model=model, factor=2.5).values
    np.testing.assert_array_equal(lr.downscale.predict(model=loaded, factor=2.5).values, a)
    np.testing.assert_array_equal(lr.downscale.predict(model=str(model.checkpoint), factor=2.5).values, a)
    monkeypatch.setenv("XDOWNSCALE_HOME", str(model.checkpoint.parent))
    np.testing.assert_array_equal(lr.downscale.predict(model="liif", factor=2.5).values, a)
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "empty"))
    with pytest.raises(xds.ModelNotFoundError, match="liif"):
        lr.downscale.predict(model="liif", factor=2.5)


# ---------------------------------------------------------------- errors
def test_target_outside_the_source_domain(model, lr):
    target = xr.Dataset(coords={"lat": np.linspace(70, 40, 10), "lon": np.linspace(-30, -10, 10)})
    with pytest.raises(DataError, match="outside the source domain"):
        lr.downscale.predict(model=model, target=target)
    pts = xr.Dataset({"lat": ("station", [45.0]), "lon": ("station", [10.0])})
    with pytest.raises(DataError, match="outside the source domain"):
        lr.downscale.predict(model=model, points=pts)


@pytest.mark.parametrize("kwargs,match", [
    (dict(factor=2, target="x"), "exactly one of"),
    (dict(factor=0.5), ">= 1"),
    (dict(factor=2, members=3), "does not take"),
])
def test_predict_errors(model, lr, kwargs, match):
    with pytest.raises(DataError, match=match):
        lr.downscale.predict(model=model, **kwargs)


def test_points_without_coordinates(model, lr):
    with pytest.raises(DataError, match="no latitude"):
        lr.downscale.predict(model=model, points=xr.Dataset({"x": ("s", [1.0])}))


@pytest.mark.parametrize("kwargs,match", [
    (dict(widht=8), "Did you mean 'width'"),
    (dict(constraint="add"), "pass it to predict"),
    (dict(degradation="jpeg"), "high-order"),
    (dict(scales=(4, 2)), "smallest"),
])
def test_fit_errors(hr, kwargs, match):
    with pytest.raises(DataError, match=match):
        hr.downscale.fit(model="liif", epochs=1, progress=False, **kwargs)


def test_fit_refuses_a_range_of_scales_on_a_real_pair(hr):
    """A real pair has one scale (tests/test_liif_predictors.py trains liif on one)."""
    with pytest.raises(DataError, match="drop lr="):
        xds.fit(hr, lr=hr.downscale.coarsen(4), model="liif", scales=(1.5, 4.0), epochs=1, progress=False)


def test_target_longitudes_in_the_other_convention(model, lr):
    lat, lon = np.linspace(55.0, 35.0, 9), np.linspace(-35.0, -5.0, 11)
    a = lr.downscale.predict(model=model, target=xr.Dataset(coords={"lat": lat, "lon": lon})).compute()
    b = lr.downscale.predict(model=model, target=xr.Dataset(coords={"lat": lat, "lon": lon + 360.0})).compute()
    np.testing.assert_allclose(a.values, b.values, atol=1e-4)
    np.testing.assert_array_equal(b.lon.values, lon + 360.0)


def test_a_batch_shares_one_scale_and_small_scales_keep_the_full_window():
    """On a 20x28 field with scales up to 8 and lr_patch 8: a x2 batch keeps 8x8 coarse windows, only large
    scales shrink theirs (never below 4 cells), and every batch of the loader has one window size."""
    rng = np.random.default_rng(0)
    field = rng.normal(size=(6, 20, 28))
    ds = ScaleSampleDataset(field, np.ones(20), {"mean": 0.0, "std": 1.0}, np.arange(6), scales=(1.5, 8.0),
                            lr_patch=8, queries=32, n_samples=64, seed=0, batch_size=8)
    assert ds.scales[1] == pytest.approx(5.0)  # 20 cells / 4-cell windows
    sizes = {}
    for i in range(64):
        s, p = ds.scale_and_window(i)
        sizes.setdefault(i // 8, set()).add((s, p))
        assert p == min(8, int(20 // s)) and p >= 4
        assert ds[i][0].shape[-1] == p
    assert all(len(v) == 1 for v in sizes.values())
    assert {p for v in sizes.values() for _, p in v} >= {8}


@pytest.mark.parametrize("share, lo, hi", [(0.0, 0.0, 0.3), (0.5, 0.4, 0.8), (1.0, 1.0, 1.0)])
def test_integer_share_draws_that_share_of_batches_at_whole_factors(share, lo, hi):
    """With scales 1.5-4 the whole factors are 2, 3 and 4: their windows nest exactly (cell = 1/k). A
    uniform draw lands on a whole ratio too when the window rounds to one (about 15 % here)."""
    field = np.random.default_rng(0).normal(size=(4, 48, 64))
    ds = ScaleSampleDataset(field, np.ones(48), {"mean": 0.0, "std": 1.0}, np.arange(4), scales=(1.5, 4.0),
                            lr_patch=8, queries=16, n_samples=80, seed=2, integer_share=share)
    cells = np.array([float(ds[i][2][0, 2]) for i in range(80)])
    whole = np.isclose(cells[:, None], [1 / 2, 1 / 3, 1 / 4], atol=1e-6).any(axis=1)
    assert lo <= whole.mean() <= hi
    if share == 1.0:
        assert {round(1 / c) for c in cells} == {2, 3, 4}


def test_liif_trains_at_its_family_learning_rate_unless_one_is_given(model, hr, tmp_path):
    assert model.meta["training"]["config"]["learning_rate"] == pytest.approx(3e-3)
    m = hr.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "l.pt", learning_rate=1e-3,
                         **{**TINY, "epochs": 1})
    assert m.meta["training"]["config"]["learning_rate"] == pytest.approx(1e-3)
    assert m.meta["training"]["integer_share"] == 1.0  # a field that never stops at zero: whole factors only
    asked = hr.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "h.pt", integer_share=0.3,
                             **{**TINY, "epochs": 1})
    assert asked.meta["training"]["integer_share"] == 0.3


def test_integer_share_outside_zero_one_is_a_clear_error(hr):
    with pytest.raises(DataError, match="integer_share"):
        hr.downscale.fit(model="liif", integer_share=1.5, **TINY)


def test_validation_windows_are_capped_unless_asked_for(hr, tmp_path):
    """A quarter of a large epoch (1,000 windows here) would cost as much as training; 512 are kept."""
    opts = {**TINY, "epochs": None, "max_updates": 1, "samples_per_epoch": 4000, "val_samples": None}
    m = hr.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "l.pt", **opts)
    assert m.meta["training"]["val_samples"] == 512
    m = hr.downscale.fit(model="liif", seed=0, checkpoint=tmp_path / "l.pt", **{**opts, "val_samples": 600})
    assert m.meta["training"]["val_samples"] == 600
