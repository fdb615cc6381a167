"""``liif`` from inputs that are not its targets (issue #15), through the API of every family.

Pinned public API:
    xds.fit(fine_ds, model="liif", var=["msl", "tp"] or "tp", predictors=["t2m"])   # scale-free
    xds.fit(lr=coarse_ds, hr=fine_ds, model="liif", var=[...], predictors=None | [...])   # one scale
    xds.predict(coarse_ds, model=m, factor=4, constraint={"tp": "add", "t2m": "add@t2m_src"}) -> Dataset
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.grid.regrid import shift_by_cells
from xdownscale.testing import assert_conserves, synthetic_field

F = 4
TRAIN = dict(epochs=1, batch_size=2, samples_per_epoch=4, val_samples=2, progress=False, seed=0)
LIIF = dict(width=4, n_blocks=1, hidden=8, queries=32, lr_patch=4)

pytestmark = pytest.mark.usefixtures("own_store")


@pytest.fixture(scope="module")
def fine():
    """msl (Pa), tp (kg m-2 s-1) and t2m (K): nine orders of magnitude apart, so an input read with
    another variable's statistics lands far outside its range."""
    t2m = synthetic_field("t2m", times=6, ny=16, nx=16, seed=1)
    msl = (101000.0 + 300.0 * (synthetic_field("t2m", times=6, ny=16, nx=16, seed=3) - 280.0)).rename("msl")
    tp = (synthetic_field("tp", times=6, ny=16, nx=16, seed=2) * 1e-4).rename("tp")
    return xr.Dataset({"msl": msl.assign_attrs(units="Pa", standard_name="air_pressure_at_mean_sea_level"),
                       "tp": tp.assign_attrs(units="kg m-2 s-1", standard_name="precipitation_flux"),
                       "t2m": t2m})


# ---------------------------------------------------------------- (a) predictors from hr
def test_predictors_from_hr_are_inputs_that_predict_needs_and_each_target_conserves(fine, tmp_path):
    m = xds.fit(fine, model="liif", var=["msl", "tp"], predictors=["t2m"], scales=(2.0, 4.0),
                checkpoint=tmp_path / "m.pt", **TRAIN, **LIIF)
    assert m.meta["predictors"] == ["msl", "tp", "t2m"] and m.factor == 0  # targets first, still scale-free
    assert m.module.body.encoder.head.in_channels == 3  # the encoder takes every input
    stats = {s["name"]: s for s in m.config["inputs"]}
    assert stats["t2m"]["mean"] == pytest.approx(float(fine["t2m"].mean()), rel=1e-3)  # its own statistics
    assert stats["tp"]["std"] == pytest.approx(m.meta["normalization"]["targets"][1]["std"])
    for factor in (2, 4):
        lr = fine.downscale.coarsen(factor)
        out = xds.predict(lr, model=tmp_path / "m.pt", factor=factor, constraint="add").compute()
        assert sorted(out.data_vars) == ["msl", "tp"]  # the targets only
        for name in ("msl", "tp"):
            assert out[name].shape == fine[name].shape and out[name].attrs["units"] == fine[name].attrs["units"]
            assert_conserves(out[name], lr[name], factor, rtol=1e-5)
    with pytest.raises(DataError, match=r"^input 't2m' is not in the coarse Dataset; it holds \['msl', 'tp'\]: pass "
                                        r"every input[^\n]*$"):
        xds.predict(fine.downscale.coarsen(F)[["msl", "tp"]], model=m, factor=F)


def test_one_target_with_predictors_is_wired_to_its_own_coarse_field(fine):
    """One target with predictors goes through the multi-target path. With the decoder's output
    zeroed, the target is the bicubic interpolation of its own coarse field: catches a base read
    from the predictor's channel or de-normalised with its statistics."""
    m = xds.fit(fine, model="liif", var="tp", predictors=["t2m", "msl"], scales=(2.0, 4.0), **TRAIN, **LIIF)
    assert m.meta["predictors"] == ["tp", "t2m", "msl"]
    with torch.no_grad():
        for p in m.module.body.decoder.head[-1].parameters():
            p.zero_()
    lr = fine.downscale.coarsen(F)
    out = xds.predict(lr, model=m, factor=F).compute()
    assert list(out.data_vars) == ["tp"]
    bicubic = xds.predict(lr["tp"], model="bicubic", factor=F).compute().clip(min=0)  # tp stops at zero
    np.testing.assert_allclose(out["tp"].values, bicubic.values, atol=1e-3 * float(fine["tp"].std()))


# ---------------------------------------------------------------- (b) a predictor that matters
def _waves(nt: int, seed: int, n: int = 32) -> xr.Dataset:
    """p: three random plane waves of 12-16 fine cells (3-4 coarse cells at x4), new ones each time;
    y = p**2 has half their wavelength, below two coarse cells: its own coarse field keeps little of
    its detail, while the coarse p, interpolated and squared, gives it back. The predictor is p in
    other units, t = 280 + 5 p (K): read with y's statistics, it would be far off."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    p = np.zeros((nt, n, n))
    for _ in range(3):
        lam, ang, phase = (rng.uniform(a, b, nt)[:, None, None] for a, b in ((12, 16), (0, 2 * np.pi), (0, 2 * np.pi)))
        p += np.sin(2 * np.pi * (np.cos(ang) * yy + np.sin(ang) * xx) / lam + phase) / np.sqrt(1.5)
    coords = {"time": pd.date_range("2020-01-01", periods=nt, freq="h"),
              "lat": ("lat", 50.0 - 0.1 * np.arange(n), {"units": "degrees_north", "standard_name": "latitude"}),
              "lon": ("lon", 0.1 * np.arange(n), {"units": "degrees_east", "standard_name": "longitude"})}
    pred = xr.DataArray(p.astype("float32"), dims=("time", "lat", "lon"), coords=coords)
    return xr.Dataset({"y": (pred**2).assign_attrs(units="1"), "t": (280.0 + 5.0 * pred).assign_attrs(units="K")})


WAVES = dict(model="liif", var=["y"], factor=F, max_updates=150, batch_size=8, width=16, n_blocks=2, hidden=32,
             queries=128, lr_patch=6, val_samples=8, progress=False, seed=0)


def _rmse(out: xr.DataArray, truth: xr.DataArray) -> float:
    return float(np.sqrt(((out - truth) ** 2).mean()))


def test_a_target_driven_by_a_predictor_is_learnt_from_it():
    train, test = _waves(24, seed=0), _waves(8, seed=1)
    lr = test.downscale.coarsen(F)
    rmse = {}
    for name, predictors in (("with t", ["t"]), ("without", None)):
        m = xds.fit(train, predictors=predictors, **WAVES)
        rmse[name] = _rmse(xds.predict(lr if predictors else lr[["y"]], model=m, factor=F)["y"], test["y"])
    assert rmse["with t"] < 0.7 * rmse["without"], rmse  # about 0.27 against 0.53 on held-out times


def test_a_pair_learns_its_target_from_a_coarse_predictor_alone():
    """lr holds t only (not the target): windows of lr cut elsewhere than under their fine cells,
    or t read with other statistics, leave the model at about the target's spread."""
    train, test = _waves(24, seed=0), _waves(8, seed=1)
    m = xds.fit(lr=train.downscale.coarsen(F)[["t"]], hr=train[["y"]], **{**WAVES, "factor": None})
    assert m.meta["predictors"] == ["t"] and m.factor == F
    out = xds.predict(test.downscale.coarsen(F)[["t"]], model=m)["y"]  # x4 by default
    assert out.shape == test["y"].shape
    assert _rmse(out, test["y"]) < 0.6 * float(test["y"].std()), _rmse(out, test["y"])


# ---------------------------------------------------------------- (c) a real pair: one scale
@pytest.fixture(scope="module")
def pair():
    """A fine (t2m, tp) Dataset and a coarse one at x4 whose centres sit on every 4th fine point
    (point-nested, as ARPEGE in AROME): t2m comes from another source (t2m_src), tp by its own name.
    8 times: the model trains on the first 6, predicts the last 2."""
    box = dict(ny=34, nx=34, lat=(60.0, 51.75), lon=(0.0, 8.25))  # not whole blocks: trim=True crops
    fine = xr.Dataset({"t2m": synthetic_field("t2m", times=8, seed=1, **box),
                       "tp": synthetic_field("tp", times=8, seed=2, **box)})
    points = fine.isel(lat=slice(0, 32, F), lon=slice(0, 32, F))
    coarse = fine.downscale.coarsen(F, trim=True).assign_coords(lat=points.lat.values, lon=points.lon.values)
    coarse = xr.Dataset({"t2m_src": (coarse["t2m"] + 0.5).assign_attrs(coarse["t2m"].attrs), "tp": coarse["tp"]})
    return fine, coarse


@pytest.fixture(scope="module")
def pair_model(pair, tmp_path_factory):
    fine, coarse = pair
    path = tmp_path_factory.mktemp("pair") / "m.pt"
    with pytest.warns(UserWarning, match="regridding it conservatively"):
        xds.fit(lr=coarse.isel(time=slice(0, 6)), hr=fine.isel(time=slice(0, 6)), model="liif", var=["t2m", "tp"],
                trim=True, checkpoint=path, **TRAIN, **LIIF)
    return xds.load(path)


def test_a_real_pair_trains_at_its_one_scale_and_predicts_every_target(pair, pair_model):
    fine, coarse = pair
    m = pair_model
    assert m.factor == F and m.config["scales"] == [4.0, 4.0] and m.meta["training"]["scales"] == [4.0, 4.0]
    assert m.meta["grid"]["pair"] == "real" and m.meta["grid"]["input_offset"] == [-0.375, -0.375]
    assert m.meta["predictors"] == ["t2m_src", "tp"]  # every gridded variable of lr
    new = coarse.isel(time=slice(6, 8))  # times the model has not seen
    with pytest.warns(UserWarning, match="offset by"):
        sr = new.downscale.predict(model=m, constraint={"tp": "add", "t2m": "add@t2m_src"}).compute()  # x4 default
    assert sorted(sr.data_vars) == ["t2m", "tp"] and sr.sizes["time"] == 2
    for dim in ("lat", "lon"):  # on the fine lattice of training, not nested in the point grid
        gap = np.abs(sr[dim].values[:, None] - fine[dim].values[None, :]).min(axis=1)
        assert gap.max() < 1e-6, dim
    assert sr.sizes["lat"] == 28 and sr.sizes["lon"] == 28
    moved = {n: shift_by_cells(new[n], m.meta["grid"]["input_offset"]) for n in ("t2m_src", "tp")}
    assert_conserves(sr["tp"], moved["tp"], F, rtol=1e-5)
    assert_conserves(sr["t2m"], moved["t2m_src"], F, rtol=1e-5)
    assert sr["t2m"].attrs["units"] == "K" and sr["tp"].attrs["units"] == fine["tp"].attrs["units"]
    assert "constraint=add" in sr["t2m"].attrs["history"]
    with pytest.warns(UserWarning, match="offset by"), pytest.warns(UserWarning, match=r"trained at the single "
                                                                                 r"scale x4 of its pair .* untested"):
        other = xds.predict(new, model=m, factor=2)
    assert other.sizes["lat"] == 2 * 7


def test_a_pair_model_reads_each_base_from_the_input_of_its_variable(pair, pair_model):
    """The decoder's output zeroed: tp is the bicubic interpolation of lr's tp (input 1, not 0) and
    t2m, with no input of its name, its training mean."""
    fine, coarse = pair
    bare = xds.load(pair_model.checkpoint)  # a copy of its own
    with torch.no_grad():
        for p in bare.module.body.decoder.head[-1].parameters():
            p.zero_()
    new = coarse.isel(time=slice(6, 8))
    with pytest.warns(UserWarning, match="offset by"):
        out = xds.predict(new, model=bare).compute()
    tp = shift_by_cells(new["tp"], bare.meta["grid"]["input_offset"])
    base = xds.predict(tp, model="bicubic", factor=F).values.clip(min=0)  # tp stops at zero in training
    np.testing.assert_allclose(out["tp"].values, base, atol=1e-4 * float(fine["tp"].std()))
    np.testing.assert_allclose(out["t2m"].values, bare.meta["normalization"]["targets"][0]["mean"], rtol=1e-6)


# ---------------------------------------------------------------- (d) clear errors
def test_pair_models_refuse_inputs_they_cannot_use_in_one_line(pair, pair_model):
    fine, coarse = pair
    new = coarse.isel(time=slice(6, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the offset regridding
        with pytest.raises(DataError, match=r"^input 't2m_src' has grid spacing 2 x 2, not the 1 x 1 of the "
                                            r"model's coarse training inputs: regrid it first[^\n]*$"):
            xds.predict(new.coarsen(lat=2, lon=2, boundary="trim").mean(keep_attrs=True), model=pair_model)
        with pytest.raises(DataError, match=r"^input 't2m_src' is not in the coarse Dataset; it holds \['tp'\]"):
            xds.predict(new[["tp"]], model=pair_model)
        with pytest.raises(DataError, match=r"^'tp' has dims \{'level': 2, .* not those of 't2m_src' \{'time': 2, "
                                            r"'lat': 8, 'lon': 8\}: put every input's coarse field on one grid"):
            xds.predict(new.assign(tp=new["tp"].expand_dims(level=2)), model=pair_model)
        with pytest.raises(DataError, match=r"^constraint 'add' for 't2m' needs a coarse field to conserve, and 't2m' "
                                            r"is not among the inputs \['t2m_src', 'tp'\]"):
            xds.predict(new, model=pair_model, constraint="add")


def test_fit_on_a_pair_names_a_missing_predictor_and_refuses_a_range_of_scales(pair, fine):
    hr, lr = pair
    with pytest.raises(DataError, match=r"^predictor 'q' is not in lr; it holds \['t2m_src', 'tp'\]"):
        xds.fit(lr=lr, hr=hr, model="liif", var=["t2m", "tp"], predictors=["tp", "q"], trim=True, **TRAIN, **LIIF)
    with pytest.raises(DataError, match=r"^scales=\(2.0, 4.0\): a real pair has one scale"):
        xds.fit(lr=lr, hr=hr, model="liif", var=["t2m", "tp"], scales=(2.0, 4.0), trim=True, **TRAIN, **LIIF)
    coarse_t2m = fine["t2m"].coarsen(lat=2, lon=2).mean().rename(lat="clat", lon="clon")  # a grid of its own
    with pytest.raises(DataError, match=r"^predictor 'q' is not on hr's fine grid"):
        xds.fit(fine.assign(q=coarse_t2m), model="liif", var="tp", predictors=["q"], **TRAIN, **LIIF)
