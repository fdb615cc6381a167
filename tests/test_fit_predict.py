"""End-to-end behaviour of fit / predict / checkpoints / the accessor on small synthetic fields."""
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.engine.checkpoint import read_checkpoint
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(epochs=2, batch_size=8, patch_size=32, width=8, n_blocks=1, progress=False)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def hr():
    return synthetic_field("tcwv", times=8, ny=32, nx=48, seed=1)


@pytest.mark.parametrize("constraint", ["add", "mult", "softmax", "scadd"])
@pytest.mark.parametrize("descending", [True, False])
def test_hard_constraints_conserve_in_physical_units(constraint, descending, tmp_path):
    lat = (60.0, 30.0) if descending else (30.0, 60.0)
    hr = synthetic_field("tcwv", times=4, ny=32, nx=32, seed=2, lat=lat)
    m = hr.downscale.fit(model="cnn", factor=4, constraint=constraint, checkpoint=tmp_path / "m.pt", **TINY)
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model=m)
    assert sr.shape == hr.shape
    assert_conserves(sr, lr, 4, rtol=1e-5)
    if constraint in ("softmax", "scadd"):
        assert float(sr.min()) >= 0


def test_softmax_rejects_negative_fields(tmp_path):
    t = synthetic_field("t2m", times=3, ny=16, nx=16) - 290.0
    with pytest.raises(xds.DataError, match="non-negative"):
        t.downscale.fit(model="cnn", factor=4, constraint="softmax", **TINY)


@pytest.mark.parametrize("constraint", ["none", "add"])
def test_rain_fitted_with_a_constraint_that_allows_negatives_is_warned_about(constraint, tmp_path):
    rain = synthetic_field("tp", times=4, ny=16, nx=16, seed=2)
    with pytest.warns(UserWarning, match=rf"^'tp' stops at zero in the training data, but constraint='{constraint}' "
                                         r"lets its predictions go below zero.*pass constraint='softmax'"):
        m = rain.downscale.fit(model="cnn", factor=4, constraint=constraint, checkpoint=tmp_path / "m.pt", **TINY)
    # the warning is true: the bicubic skip alone leaves cells beside dry ones below zero
    assert float(rain.downscale.coarsen(4).downscale.predict(model=m).min()) < 0


@pytest.mark.parametrize("kind, constraint", [("tp", "softmax"), ("tp", "scadd"), ("tcwv", "none")])
def test_no_negative_warning_where_the_output_stays_up_or_the_field_never_stops_at_zero(kind, constraint, tmp_path):
    field = synthetic_field(kind, times=4, ny=16, nx=16, seed=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        field.downscale.fit(model="cnn", factor=4, constraint=constraint, checkpoint=tmp_path / "m.pt", **TINY)
    assert not [w for w in seen if "stops at zero" in str(w.message)]


def test_several_targets_name_the_one_that_stops_at_zero(tmp_path):
    ds = xr.Dataset({"tp": synthetic_field("tp", times=4, ny=16, nx=16, seed=2),
                     "tcwv": synthetic_field("tcwv", times=4, ny=16, nx=16, seed=3)})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        xds.fit(ds, model="cnn", factor=4, var=["tp", "tcwv"], constraint="add", checkpoint=tmp_path / "m.pt", **TINY)
    named = [str(w.message).split()[0] for w in seen if "stops at zero" in str(w.message)]
    assert named == ["'tp'"]


def test_fit_is_reproducible_from_a_seed(hr, tmp_path):
    a = xds.fit(hr, model="cnn", factor=4, constraint="add", seed=3, checkpoint=tmp_path / "a.pt", **TINY)
    b = xds.fit(hr, model="cnn", factor=4, constraint="add", seed=3, checkpoint=tmp_path / "b.pt", **TINY)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.history == [dict(h, seconds=a.history[i]["seconds"], samples_per_s=a.history[i]["samples_per_s"])
                         for i, h in enumerate(b.history)]


def test_checkpoint_describes_itself_and_loads_safely(hr, tmp_path):
    m = xds.fit(hr, model="espcn", factor=4, constraint="softmax", checkpoint=tmp_path / "e.pt", **TINY)
    payload = read_checkpoint(tmp_path / "e.pt")  # torch.load(weights_only=True) inside
    assert payload["network"]["model"] == "espcn" and payload["network"]["factor"] == 4
    assert payload["variable"] == "tcwv" and payload["attrs"]["units"] == "kg m-2"
    assert set(payload["normalization"]["target"]) >= {"mean", "std"}
    assert payload["xdownscale_version"] == xds.__version__
    assert payload["grid"]["kind"] == "latlon"
    m2 = xds.load(tmp_path / "e.pt")
    assert (m2.factor, m2.variable, m2.model_name, m2.constraint) == (4, "tcwv", "espcn", "softmax")
    lr = hr.downscale.coarsen(4)
    np.testing.assert_allclose(lr.downscale.predict(model=m).values, lr.downscale.predict(model=m2).values)
    # a checkpoint path and the model store resolve to the same model
    by_path = lr.downscale.predict(model=str(tmp_path / "e.pt"))
    by_name = lr.downscale.predict(model="espcn", factor=4)
    np.testing.assert_array_equal(by_path.values, by_name.values)
    assert by_name.attrs["xdownscale_checkpoint_sha256"] == m2.checkpoint_hash


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(xds.CheckpointError, match="not an xdownscale checkpoint"):
        xds.load(bad)


def test_missing_checkpoint_error_says_which_fit_to_run(hr):
    lr = hr.downscale.coarsen(4)
    with pytest.raises(xds.ModelNotFoundError, match=r"fit\(model='cnn', factor=4\)"):
        lr.downscale.predict(model="cnn", factor=4)


def test_unknown_model_suggests_close_names(hr):
    with pytest.raises(KeyError, match="bicubic"):
        hr.downscale.coarsen(4).downscale.predict(model="bicubik", factor=4)


def test_resume_continues_training(hr, tmp_path):
    ck = tmp_path / "r.pt"
    xds.fit(hr, model="cnn", factor=4, constraint="add", checkpoint=ck, **dict(TINY, epochs=1))
    m = xds.fit(hr, model="cnn", factor=4, constraint="add", checkpoint=ck, resume=ck, **dict(TINY, epochs=3))
    assert [h["epoch"] for h in m.history] == [0, 1, 2]


def test_real_pair_and_dataset_predictors(tmp_path):
    t = synthetic_field("t2m", times=6, ny=32, nx=32, seed=4)
    u = synthetic_field("tcwv", times=6, ny=32, nx=32, seed=5).rename("u10")
    ds = xr.Dataset({"t2m": t, "u10": u})
    m = ds.downscale.fit(var="t2m", predictors=["t2m", "u10"], model="cnn", factor=4, constraint="add",
                         checkpoint=tmp_path / "p.pt", **TINY)
    assert m.module.body.head[0].in_channels == 2
    out = ds.downscale.coarsen(4).downscale.predict(model=m)
    assert isinstance(out, xr.Dataset) and out["t2m"].shape == t.shape
    pair = xds.fit(lr=t.downscale.coarsen(4), hr=t, model="cnn", checkpoint=tmp_path / "q.pt", **TINY)
    assert pair.factor == 4 and pair.meta["grid"]["pair"] == "real"


def test_covariates_become_input_channels(tmp_path):
    hr = synthetic_field("t2m", times=4, ny=32, nx=32, seed=6)
    orog = (hr.isel(time=0, drop=True) * 0 + np.linspace(0, 1000, 32)[None, :]).rename("orog")
    m = hr.downscale.fit(model="cnn", factor=4, constraint="add", covariates=orog, checkpoint=tmp_path / "c.pt", **TINY)
    assert m.module.body.head[0].in_channels == 1 + 16
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model=m, covariates=orog)
    assert_conserves(sr, lr, 4)
    with pytest.raises(xds.DataError, match="covariates"):
        lr.downscale.predict(model=m)


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "conservative"])
def test_baselines_need_no_training(hr, name):
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model=name, factor=4)
    assert sr.shape == hr.shape and bool(np.isfinite(sr).all())
    if name in ("nearest", "conservative"):
        assert_conserves(sr, lr, 4, rtol=1e-6)


def test_baseline_needs_a_factor(hr):
    with pytest.raises(xds.DataError, match="factor"):
        hr.downscale.coarsen(4).downscale.predict(model="bicubic")


def test_trained_cnn_beats_bicubic_on_a_smooth_field(tmp_path):
    hr = synthetic_field("tcwv", times=16, ny=64, nx=64, seed=7)
    m = hr.downscale.fit(model="cnn", factor=4, constraint="softmax", epochs=6, batch_size=16, patch_size=32,
                         width=16, n_blocks=2, checkpoint=tmp_path / "s.pt", progress=False, seed=0)
    lr = hr.downscale.coarsen(4)
    rmse = lambda p: float(np.sqrt(((p.values - hr.values) ** 2).mean()))  # noqa: E731
    assert rmse(lr.downscale.predict(model=m)) < rmse(lr.downscale.predict(model="bicubic", factor=4))


def test_projected_grid_and_2d_field(tmp_path):
    hr = synthetic_field("tp", times=4, ny=32, nx=32).rename({"lat": "y", "lon": "x"})
    hr = hr.assign_coords(y=np.arange(32) * 1000.0, x=np.arange(32) * 1000.0)
    hr.y.attrs, hr.x.attrs = {"units": "m", "axis": "Y"}, {"units": "m", "axis": "X"}
    m = hr.downscale.fit(model="cnn", factor=2, constraint="softmax", checkpoint=tmp_path / "y.pt", **TINY)
    lr2d = hr.isel(time=0).downscale.coarsen(2)
    sr = lr2d.downscale.predict(model=m)
    assert sr.dims == ("y", "x") and sr.shape == (32, 32)
    assert_conserves(sr, lr2d, 2)
    assert float(sr.min()) >= 0


def test_like_puts_the_prediction_on_the_exact_truth_grid(hr):
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model="bicubic", factor=4, like=hr)
    assert (sr.lat.values == hr.lat.values).all() and (sr.lon.values == hr.lon.values).all()
    assert (sr - hr).shape == hr.shape  # aligns label for label
    with pytest.raises(xds.DataError, match="like= grid"):
        lr.downscale.predict(model="bicubic", factor=4, like=hr.isel(lat=slice(1, None)))


def test_a_domain_smaller_than_a_patch_trains_on_whole_fields(tmp_path):
    from xdownscale.data import PatchDataset, fit_stats, make_pair

    hr = synthetic_field("t2m", times=4, ny=20, nx=28, seed=8)
    pair = make_pair(hr, 4)
    ds = PatchDataset(pair, fit_stats(hr), [0, 1], patch_size=64, n_samples=3, seed=0)
    x, y, w, c = ds[0]
    assert y.shape == (1, 20, 28) and x.shape == (1, 5, 7) and c.shape == (1, 5, 7) and w.shape == (1, 20, 1)
    m = hr.downscale.fit(model="cnn", factor=4, constraint="add", checkpoint=tmp_path / "w.pt", **TINY)
    assert_conserves(hr.downscale.coarsen(4).downscale.predict(model=m), hr.downscale.coarsen(4), 4)


def test_a_misspelt_model_option_is_named(hr):
    with pytest.raises(xds.DataError, match="did you mean 'width'|Did you mean 'width'"):
        hr.downscale.fit(model="cnn", factor=4, widht=8, epochs=1)


def test_fit_without_a_model_trains_the_default_body_and_predict_without_one_finds_it(hr):
    """The accessor's defaults on both sides name the same model; the body's options are recorded,
    so changing a registered default later cannot change what a stored checkpoint rebuilds."""
    from xdownscale.config import DEFAULT_MODEL, DEFAULT_MODEL_OPTIONS, TrainConfig

    m = hr.downscale.fit(factor=4, constraint="add", max_updates=2, progress=False)
    assert m.model_name == DEFAULT_MODEL != "cnn"
    assert {k: m.meta["network"][k] for k in DEFAULT_MODEL_OPTIONS} == DEFAULT_MODEL_OPTIONS
    assert m.meta["training"]["config"]["batch_size"] == TrainConfig.batch_size == 32
    lr = xds.coarsen(hr.isel(time=[0]), 4)
    sr = lr.downscale.predict(factor=4)
    assert "espcn" in sr.attrs["history"] and sr.shape[-2:] == hr.shape[-2:]
