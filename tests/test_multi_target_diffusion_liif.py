"""Several targets in one ``diffusion`` model and in one ``liif`` (issue #15).

Pinned public API:
    xds.fit(fine_ds, model="diffusion", factor=4, var=["msl", "tp"], constraint={"msl": "add", "tp": "softmax"})
    xds.predict(coarse_ds, model=m, members=N, seed=s) -> Dataset, a (member, time, lat, lon) field per target
    xds.fit(fine_ds, model="liif", var=["msl", "tp"])
    xds.predict(coarse_ds, model=m, factor=4, constraint={"msl": "add", "tp": "softmax"}) -> Dataset

The targets differ by nine orders of magnitude (Pa and kg m-2 s-1), so an output wired to the
other target's source or statistics lands far outside its own range.
"""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.testing import assert_conserves, synthetic_field

F = 4
TRAIN = dict(epochs=1, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False, seed=0)
DIFFUSION = dict(base_channels=4, channel_mults=(1,), patch=16, timesteps=10, sample_steps=2)
LIIF = dict(width=4, n_blocks=1, hidden=8, queries=32, lr_patch=4, scales=(2.0, 4.0))
SAMPLE = dict(members=2, steps=2)


pytestmark = pytest.mark.usefixtures("own_store")


@pytest.fixture(scope="module")
def fine():
    t2m = synthetic_field("t2m", times=6, ny=16, nx=16, seed=1)
    msl = (101000.0 + 300.0 * (t2m - 280.0)).rename("msl").assign_attrs(
        units="Pa", standard_name="air_pressure_at_mean_sea_level", long_name="mean sea level pressure")
    tp = (synthetic_field("tp", times=6, ny=16, nx=16, seed=2) * 1e-4).rename("tp").assign_attrs(
        units="kg m-2 s-1", standard_name="precipitation_flux", long_name="total precipitation")
    return xr.Dataset({"msl": msl, "tp": tp})


@pytest.fixture(scope="module")
def coarse(fine):
    return fine.downscale.coarsen(F)


@pytest.fixture(scope="module")
def diffusion_path(fine, tmp_path_factory):
    path = tmp_path_factory.mktemp("diffusion") / "m.pt"
    xds.fit(fine, model="diffusion", factor=F, var=["msl", "tp"], constraint={"msl": "add"}, checkpoint=path,
            **TRAIN, **DIFFUSION)
    return path


@pytest.fixture(scope="module")
def liif_path(fine, tmp_path_factory):
    path = tmp_path_factory.mktemp("liif") / "m.pt"
    xds.fit(fine, model="liif", var=["msl", "tp"], checkpoint=path, **TRAIN, **LIIF)
    return path


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Identical values and metadata (the history line's time stamp aside)."""
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
        assert sorted(a[name].attrs) == sorted(b[name].attrs)
        for key in set(a[name].attrs) - {"history"}:
            np.testing.assert_array_equal(np.asarray(a[name].attrs[key]), np.asarray(b[name].attrs[key]))


def _in_own_range(out: xr.DataArray, truth: xr.DataArray) -> None:
    lo, hi = float(truth.min()), float(truth.max())
    span = hi - lo
    assert lo - span <= float(out.min()) and float(out.max()) <= hi + span, (truth.name, float(out.mean()))


# ---------------------------------------------------------------------------------------- diffusion
def test_diffusion_targets_come_back_in_their_own_units_and_range(diffusion_path, fine, coarse):
    out = xds.predict(coarse, model=diffusion_path, **SAMPLE, seed=0)
    assert sorted(out.data_vars) == ["msl", "tp"]
    for name in ("msl", "tp"):
        da = out[name]
        assert da.dims == ("member", "time", "lat", "lon") and da.sizes["member"] == 2
        assert np.isfinite(da.values).all()
        _in_own_range(da, fine[name])  # tp is not projected ("none"): its range is the network's own
        assert da.attrs["units"] == fine[name].attrs["units"]
        assert da.attrs["standard_name"] == fine[name].attrs["standard_name"]
    for k in range(2):  # msl conserves its own coarse field in every member
        assert_conserves(out["msl"].isel(member=k), coarse["msl"], F, rtol=1e-5)
    assert "constraint=add" in out["msl"].attrs["history"] and "constraint=none" in out["tp"].attrs["history"]


def test_diffusion_members_are_joint_draws_reproducible_by_seed(diffusion_path, coarse):
    m = xds.load(diffusion_path)
    a = xds.predict(coarse, model=m, **SAMPLE, seed=1)
    again = xds.predict(coarse, model=diffusion_path, **SAMPLE, seed=1)  # by path: the same file, the same draw
    other = xds.predict(coarse, model=m, **SAMPLE, seed=2)
    for name in ("msl", "tp"):
        np.testing.assert_array_equal(a[name].values, again[name].values)
        assert not np.allclose(a[name].values, other[name].values)  # a new seed redraws every target
        assert not np.allclose(a[name].isel(member=0).values, a[name].isel(member=1).values)
    assert a.attrs["ensemble_seed"] == 1 and a["tp"].attrs["xdownscale_seed"] == 1


def test_diffusion_round_trip_by_path_gives_identical_output(fine, coarse, tmp_path):
    fitted = xds.fit(fine, model="diffusion", factor=F, var=["msl", "tp"], constraint={"msl": "add", "tp": "softmax"},
                     checkpoint=tmp_path / "m.pt", **TRAIN, **DIFFUSION)
    direct = xds.predict(coarse, model=fitted, **SAMPLE, seed=3)
    by_path = xds.predict(coarse, model=tmp_path / "m.pt", **SAMPLE, seed=3)
    _same(direct, by_path)
    assert float(direct["tp"].min()) >= 0.0
    for k in range(2):
        assert_conserves(direct["tp"].isel(member=k), coarse["tp"], F, rtol=1e-5)


def test_diffusion_predicts_from_other_inputs(fine, coarse, tmp_path):
    """Inputs other than the targets: tp conserves another source's precipitation, q and a static
    fine covariate only inform."""
    lr = coarse.assign(tp_src=(coarse["tp"] * 1.3 + 1e-6).assign_attrs(coarse["tp"].attrs),
                       q=coarse["msl"] * 0 + np.random.default_rng(0).random(coarse["msl"].shape))
    orog = (fine["msl"].isel(time=0, drop=True) * 0 + np.linspace(0.0, 1000.0, 16)).rename("orog")
    m = xds.fit(lr=lr, hr=fine, model="diffusion", var=["msl", "tp"], predictors=["msl", "tp_src", "q"],
                constraint={"msl": "add", "tp": ("softmax", "tp_src")}, covariates=orog,
                checkpoint=tmp_path / "m.pt", **TRAIN, **DIFFUSION)
    assert m.module.in_channels == 3 + F * F  # the inputs, then the covariate folded onto the coarse grid
    out = xds.predict(lr, model=tmp_path / "m.pt", covariates=orog, **SAMPLE)
    for k in range(2):
        assert_conserves(out["tp"].isel(member=k), lr["tp_src"], F, rtol=1e-5)
        assert_conserves(out["msl"].isel(member=k), lr["msl"], F, rtol=1e-5)
    assert out["tp"].attrs["units"] == "kg m-2 s-1"
    with pytest.raises(DataError, match=r"input 'q' that the model was trained on is not in the Dataset"):
        xds.predict(lr.drop_vars("q"), model=tmp_path / "m.pt", covariates=orog, **SAMPLE)
    with pytest.raises(DataError, match=r"trained with covariates \['orog'\]"):
        xds.predict(lr, model=tmp_path / "m.pt", **SAMPLE)


def test_diffusion_refuses_bad_constraints_in_one_line(fine):
    with pytest.raises(DataError, match=r"^constraint 'soft' for 'tp': diffusion projects each sample onto a hard "
                                        r"constraint[^\n]*$"):
        xds.fit(fine, model="diffusion", factor=F, var=["msl", "tp"], constraint={"tp": "soft"}, **TRAIN,
                **DIFFUSION)
    with pytest.raises(DataError, match=r"^constraint given for 'mslp', which is not a target \['msl', 'tp'\][^\n]*$"):
        xds.fit(fine, model="diffusion", factor=F, var=["msl", "tp"], constraint={"mslp": "add"}, **TRAIN,
                **DIFFUSION)


# ---------------------------------------------------------------------------------------- liif
@pytest.mark.parametrize("factor", [2, 4])
def test_liif_conserves_each_target_at_two_scales(liif_path, fine, factor):
    lr = fine.downscale.coarsen(factor)
    out = xds.predict(lr, model=liif_path, factor=factor, constraint={"msl": "add", "tp": "softmax"}).compute()
    assert sorted(out.data_vars) == ["msl", "tp"]
    for name in ("msl", "tp"):
        assert out[name].shape == fine[name].shape
        assert_conserves(out[name], lr[name], factor, rtol=1e-5)
        assert out[name].attrs["xdownscale_factor"] == factor
    assert float(out["tp"].min()) >= 0.0
    assert "constraint=softmax" in out["tp"].attrs["history"] and "constraint=add" in out["msl"].attrs["history"]
    one = xds.predict(lr, model=liif_path, factor=factor, constraint="add").compute()  # one name for every target
    for name in ("msl", "tp"):
        assert_conserves(one[name], lr[name], factor, rtol=1e-5)


def test_liif_targets_come_back_in_their_own_units_and_range(liif_path, fine, coarse):
    out = xds.predict(coarse, model=liif_path, factor=2.5).compute()  # not nested: nothing projected
    for name in ("msl", "tp"):
        assert out[name].sizes["lat"] == 10 and np.isfinite(out[name].values).all()
        _in_own_range(out[name], fine[name])
        assert out[name].attrs["units"] == fine[name].attrs["units"]


def test_liif_never_predicts_rain_below_zero_and_leaves_pressure_unbounded(liif_path, fine, coarse):
    # only tp stops at zero in training: its bicubic base overshoots below zero beside dry cells
    assert [t.get("lower_bound") for t in xds.load(liif_path).config["targets"]] == [None, 0.0]
    out = xds.predict(coarse, model=liif_path, factor=2.5).compute()
    assert float(out["tp"].min()) == 0.0 and float((out["tp"] == 0).mean()) > float((fine["tp"] == 0).mean()) / 4


def test_liif_round_trip_by_path_gives_identical_output(fine, coarse, tmp_path):
    fitted = xds.fit(fine, model="liif", var=["msl", "tp"], checkpoint=tmp_path / "m.pt", **TRAIN, **LIIF)
    assert fitted.factor == 0 and xds.load(tmp_path / "m.pt").config == fitted.config
    direct = xds.predict(coarse, model=fitted, factor=F, constraint={"tp": "mult"}).compute()
    by_path = xds.predict(coarse, model=tmp_path / "m.pt", factor=F, constraint={"tp": "mult"}).compute()
    _same(direct, by_path)


def test_liif_bad_calls_get_one_clear_line(liif_path, fine, coarse):
    with pytest.raises(DataError, match=r"^constraint given for 'mslp', which is not a target \['msl', 'tp'\][^\n]*$"):
        xds.predict(coarse, model=liif_path, factor=F, constraint={"mslp": "add"})
    with pytest.raises(DataError, match=r"^constraint 'soft' for 'tp': at prediction liif applies a hard one"):
        xds.predict(coarse, model=liif_path, factor=F, constraint={"tp": "soft"})
    with pytest.raises(DataError, match=r"^target 'tp' is not in the coarse Dataset; it holds \['msl'\]"):
        xds.predict(coarse[["msl"]], model=liif_path, factor=F)
    with pytest.raises(DataError, match=r"needs a target that nests the source"):
        xds.predict(coarse, model=liif_path, factor=2.5, constraint={"msl": "add"})
    with pytest.raises(DataError, match=r"^liif takes no covariates= \(static fields\) yet: drop covariates="):
        xds.fit(fine, model="liif", var=["msl", "tp"], covariates=fine["msl"].isel(time=0, drop=True).rename("orog"),
                **TRAIN, **LIIF)


def test_cli_predicts_every_target_of_a_liif_at_the_asked_factor(liif_path, fine, tmp_path):
    from xdownscale.cli import main

    lr = fine.downscale.coarsen(2)
    lr.to_netcdf(tmp_path / "coarse.nc")
    assert main(["predict", str(tmp_path / "coarse.nc"), "--model", str(liif_path), "--factor", "2",
                 "--out", str(tmp_path / "sr.nc"), "-q"]) == 0
    with xr.open_dataset(tmp_path / "sr.nc") as sr:
        for name in ("msl", "tp"):
            assert sr[name].shape == fine[name].shape and sr[name].attrs["units"] == fine[name].attrs["units"]


def test_cli_liif_takes_a_constraint_per_target_at_prediction(liif_path, fine, tmp_path):
    from xdownscale.cli import main

    lr = fine.downscale.coarsen(2)
    lr.to_netcdf(tmp_path / "coarse.nc")
    assert main(["predict", str(tmp_path / "coarse.nc"), "--model", str(liif_path), "--factor", "2",
                 "--constraint", "msl=add,tp=softmax", "--out", str(tmp_path / "sr.nc"), "-q"]) == 0
    with xr.open_dataset(tmp_path / "sr.nc") as sr:
        for name in ("msl", "tp"):
            assert_conserves(sr[name].load(), lr[name], 2, rtol=1e-5)
        assert float(sr["tp"].min()) >= 0
