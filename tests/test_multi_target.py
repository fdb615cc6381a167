"""Several targets in one network, from inputs that need not be the targets (issue #15).

Pinned public API:
    hr_ds.downscale.fit(var=["t2m", "tp"], factor=4, constraint={"t2m": "add", "tp": "softmax"})
    xds.fit(lr=coarse_ds, hr=fine_ds, var=[...], predictors=[...], constraint={"tp": ("softmax", "tp_src")})
    xds.predict(coarse_ds, model=m) -> xr.Dataset of every target
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.testing import another_model, assert_conserves, synthetic_field, synthetic_pair

F = 4
TRAIN = dict(epochs=1, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False, seed=0,
             width=8, n_blocks=1)


pytestmark = pytest.mark.usefixtures("own_store")


@pytest.fixture(scope="module")
def fine():
    return synthetic_pair()


@pytest.fixture(scope="module")
def coarse(fine):
    return another_model(fine, F)


def test_joint_fit_conserves_each_target_and_round_trips(fine, tmp_path):
    m = fine.downscale.fit(model="cnn", factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"},
                           checkpoint=tmp_path / "m.pt", **TRAIN)
    loaded = xds.load(tmp_path / "m.pt")
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=loaded)
    assert isinstance(sr, xr.Dataset) and sorted(sr.data_vars) == ["t2m", "tp"]
    for v in ("t2m", "tp"):  # each target is conserved against its own coarse field
        assert assert_conserves(sr[v], lr[v], F) < 1e-5
        assert sr[v].attrs["units"] == fine[v].attrs["units"]  # its own CF metadata, not the first target's
    assert float(sr["tp"].min()) >= 0  # softmax on tp only
    assert "constraint=softmax" in sr["tp"].attrs["history"] and "constraint=add" in sr["t2m"].attrs["history"]
    assert sr["t2m"].shape == fine["t2m"].shape
    np.testing.assert_allclose(sr["t2m"].values, xds.predict(lr, model=m)["t2m"].values, rtol=1e-6)


def test_outputs_are_wired_to_their_own_source_and_statistics(fine, tmp_path):
    """With the body's output zeroed, each target is its source's bicubic interpolation through its
    own constraint: catches a target read through another input or de-normalised with wrong statistics."""
    m = fine.downscale.fit(model="cnn", factor=F, var=["tp", "t2m"], constraint="add", **TRAIN)
    with torch.no_grad():
        for p in m.module.body.parameters():
            p.zero_()
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=m)
    for v in ("t2m", "tp"):
        ref = xds.predict(lr[v], model="bicubic", factor=F, constraint="add")
        np.testing.assert_allclose(sr[v].values, ref.values, rtol=1e-5, atol=1e-5 * float(abs(ref).max()))


def test_real_pair_inputs_differ_from_targets(fine, coarse, tmp_path):
    m = xds.fit(lr=coarse, hr=fine, var=["t2m", "tp"], model="espcn",
                constraint={"t2m": "add", "tp": ("softmax", "tp_src")}, **TRAIN)
    assert m.meta["predictors"] == ["t2m", "tp", "tp_src", "q"]  # every gridded variable of lr by default
    assert m.module.body is not None and m.config["in_channels"] == 4
    sr = xds.predict(coarse, model=m)
    assert sorted(sr.data_vars) == ["t2m", "tp"]
    assert_conserves(sr["t2m"], coarse["t2m"], F)
    assert_conserves(sr["tp"], coarse["tp_src"], F)  # conserves the named input, not the same-named one
    with pytest.raises(AssertionError):
        assert_conserves(sr["tp"], coarse["tp"], F)


def test_predictors_narrow_the_inputs_and_none_needs_no_source(fine, coarse):
    m = xds.fit(lr=coarse, hr=fine, var=["t2m", "tp"], predictors=["t2m", "q"],
                constraint={"t2m": "add", "tp": "none"}, **TRAIN)
    assert m.meta["predictors"] == ["t2m", "q"] and m.config["in_channels"] == 2
    sr = xds.predict(coarse[["q", "t2m"]], model=m)  # only the inputs are needed, in any order
    assert_conserves(sr["t2m"], coarse["t2m"], F)
    assert np.isfinite(sr["tp"].values).all()
    with pytest.raises(DataError, match="input 'q' that the model was trained on is not in the Dataset"):
        xds.predict(coarse[["t2m"]], model=m)


@pytest.mark.parametrize("kwargs,message", [
    (dict(var=["t2m", "rain"]), r"target 'rain' is not in hr.*pass var="),
    (dict(var=["t2m", "tp"], predictors=["t2m", "humidity"]), r"predictor 'humidity' is not in lr.*predictors="),
    (dict(var=["t2m", "tp"], constraint={"t2m": "add", "msl": "add"}), r"constraint given for 'msl', which is not a "
                                                                         r"target"),
    (dict(var=["t2m", "tp"], predictors=["t2m", "q"], constraint={"tp": "add"}), r"constraint 'add' for 'tp' needs a "
                                                                                  r"coarse field.*'none'"),
    (dict(var=["t2m", "tp"], constraint={"tp": ("add", "tp_model")}), r"names input 'tp_model', which is not among"),
])
def test_bad_input_gets_one_line_naming_the_variable(fine, coarse, kwargs, message):
    with pytest.raises(DataError, match=message):
        xds.fit(lr=coarse, hr=fine, **kwargs, **TRAIN)


def test_softmax_on_a_negative_target_is_refused(fine):
    celsius = fine.assign(t2m=fine["t2m"] - 273.15)
    with pytest.raises(DataError, match=r"'softmax' needs a non-negative field, but 't2m' reaches"):
        celsius.downscale.fit(factor=F, var=["t2m", "tp"], constraint={"t2m": "softmax"}, **TRAIN)


def test_inputs_with_other_time_steps_are_refused(fine, coarse):
    shifted = coarse.assign_coords(time=coarse["time"] + np.timedelta64(1, "h"))
    with pytest.raises(DataError, match=r"input 't2m' has time steps that do not match the targets' \(6 vs 6, first "
                                        r"2020-01-01T01.*xr.align"):
        xds.fit(lr=shifted, hr=fine, var=["t2m", "tp"], **TRAIN)
    with pytest.raises(DataError, match=r"input 't2m' has time steps that do not match the targets' \(5 vs 6"):
        xds.fit(lr=coarse.isel(time=slice(1, None)), hr=fine, var=["t2m", "tp"], **TRAIN)


def test_a_family_without_several_targets_is_refused_in_one_line(fine, monkeypatch):
    """Every family trains several targets today; a new one that does not is refused before any
    work, naming its family and the models that can."""
    from xdownscale.families.temporal import TemporalFamily

    monkeypatch.setattr(TemporalFamily, "supports_multi_target", lambda self, model: False)
    with pytest.raises(DataError, match=r"model 'convgru' \(family 'temporal'\) cannot train several targets yet: "
                                        r"var=\[...\] is for cnn, diffusion, espcn, gan, liif, maunet, "
                                        r"maunet-light, rnngan for now"):
        xds.fit(fine, model="convgru", factor=F, var=["t2m", "tp"])


def test_single_target_calls_are_unchanged(fine):
    """A name (not a list) stays on the single-target path: a DataArray comes back."""
    m = fine.downscale.fit(model="cnn", factor=F, var="t2m", constraint="add", **TRAIN)
    sr = xds.predict(fine.downscale.coarsen(F), model=m, var="t2m")
    assert list(sr.data_vars) == ["t2m"] and "multi_target" not in m.meta
    with pytest.raises(DataError, match="by target: give the targets too"):
        fine.downscale.fit(factor=F, var="t2m", constraint={"t2m": "add"}, **TRAIN)


def test_cli_fits_several_targets_and_writes_every_one(fine, coarse, tmp_path):
    from xdownscale.cli import main

    fine.to_netcdf(tmp_path / "fine.nc")
    coarse.to_netcdf(tmp_path / "coarse.nc")
    small = ["--epochs", "1", "--batch-size", "2", "--patch-size", "16", "--samples-per-epoch", "4", "--width", "8",
             "--n-blocks", "1", "-q"]
    assert main(["fit", str(tmp_path / "fine.nc"), "--lr-data", str(tmp_path / "coarse.nc"), "--var", "t2m,tp",
                 "--predictors", "t2m,tp,q", "--constraint", "t2m=add,tp=softmax", "--out", str(tmp_path / "m.pt"),
                 *small]) == 0
    m = xds.load(tmp_path / "m.pt")
    assert m.meta["predictors"] == ["t2m", "tp", "q"] and m.constraint == "t2m=add,tp=softmax"
    assert main(["predict", str(tmp_path / "coarse.nc"), "--model", str(tmp_path / "m.pt"),
                 "--out", str(tmp_path / "sr.nc"), "-q"]) == 0
    with xr.open_dataset(tmp_path / "sr.nc") as sr:
        assert {"t2m", "tp"} <= set(sr.data_vars)
        assert_conserves(sr["t2m"], coarse["t2m"], F)
        assert_conserves(sr["tp"], coarse["tp"], F)


def test_offset_inputs_give_the_fine_grid_of_training(tmp_path):
    """Point-nested coarse inputs (as ARPEGE in AROME) are regridded onto the fine grid's blocks in
    training; a prediction from such inputs lands on the same fine lattice, also from another region."""
    box = dict(ny=34, nx=34, lat=(60.0, 51.75), lon=(0.0, 8.25))  # not whole blocks: trim=True crops
    fine = xr.Dataset({"t2m": synthetic_field("t2m", times=6, seed=1, **box),
                       "tp": synthetic_field("tp", times=6, seed=2, **box)})
    points = fine.isel(lat=slice(0, 32, F), lon=slice(0, 32, F))  # centres on every 4th fine point
    lr = fine.downscale.coarsen(F, trim=True)[["t2m", "tp"]].assign_coords(lat=points.lat.values,
                                                                           lon=points.lon.values)
    with pytest.warns(UserWarning, match="regridding it conservatively"):
        m = xds.fit(lr=lr, hr=fine, var=["t2m", "tp"], trim=True, **TRAIN)
    assert m.meta["grid"]["input_offset"] == [-0.375, -0.375]
    for shift in (0.0, 2.0):  # the training region, and one two coarse cells east
        moved = lr.assign_coords(lon=lr.lon + shift)
        with pytest.warns(UserWarning, match="offset by"):
            sr = xds.predict(moved, model=m)
        for dim, lattice in (("lat", fine.lat.values), ("lon", fine.lon.values + shift)):
            gap = np.abs(sr[dim].values[:, None] - lattice[None, :]).min(axis=1)
            assert gap.max() < 1e-6, dim  # on the training lattice (not nested in the point grid)
        assert sr.sizes["lat"] == 28 and np.isfinite(sr["tp"].values).all()


def test_export_and_distill_refuse_a_model_with_several_targets(fine, tmp_path):
    m = fine.downscale.fit(factor=F, var=["t2m", "tp"], **TRAIN)
    with pytest.raises(DataError, match=r"several targets \(t2m\+tp\): export\(\) handles single-target"):
        xds.export(m, tmp_path / "m.onnx")
    with pytest.raises(DataError, match="distill\\(\\) takes single-target teachers"):
        xds.distill(m, "maunet-light", fine["t2m"])


def test_gan_members_are_joint_draws_reproducible_per_member(fine):
    m = xds.fit(fine, model="gan", factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"},
                noise_channels=2, content_members=2, val_members=2, **TRAIN)
    lr = fine.downscale.coarsen(F)
    three = xds.predict(lr, model=m, members=3, seed=7).compute()
    two = xds.predict(lr, model=m, members=2, seed=7).compute()
    assert three.sizes["member"] == 3 and sorted(three.data_vars) == ["t2m", "tp"]
    for v in ("t2m", "tp"):  # member k of seed s is the same field whatever the ensemble size
        np.testing.assert_allclose(two[v].isel(member=1).values, three[v].isel(member=1).values, rtol=1e-6)
        assert float(np.abs(three[v].isel(member=0) - three[v].isel(member=2)).max()) > 0  # the noise matters
        assert_conserves(three[v].isel(member=2), lr[v], F)


def test_static_covariates_feed_every_target(fine):
    orog = (fine["t2m"].isel(time=0, drop=True) * 0 + np.linspace(0, 1000, 16)[None, :]).rename("orog")
    m = fine.downscale.fit(factor=F, var=["t2m", "tp"], constraint="add", covariates=orog, **TRAIN)
    assert m.config["in_channels"] == 2 + F * F  # two coarse inputs, then the folded fine covariate
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=m, covariates=orog)
    for v in ("t2m", "tp"):
        assert_conserves(sr[v], lr[v], F)
    with pytest.raises(DataError, match="covariates"):
        xds.predict(lr, model=m).compute()


def test_soft_targets_get_the_loss_term_towards_their_source(fine):
    from xdownscale.engine.trainer import soft_channels, soft_term

    m = fine.downscale.fit(factor=F, var=["t2m", "tp"], constraint={"t2m": "soft", "tp": "add"}, **TRAIN)
    net = m.module
    assert soft_channels(net) == [0]
    pred = torch.stack([torch.full((2, 16, 16), 3.0), torch.full((2, 16, 16), 5.0)], dim=1)
    coarse = torch.stack([torch.full((2, 4, 4), 1.0), torch.full((2, 4, 4), 0.0)], dim=1)
    want = ((3.0 - 1.0) / float(net.std[0, 0])) ** 2  # only t2m's misfit, in its own units
    assert float(soft_term(net, coarse, pred, None, soft_channels(net))) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("skip", ["bicubic", None])
def test_bf16_prediction_keeps_every_target_conserved_in_float32(fine, tmp_path, skip):
    """Only the shared body is lowered: each target's skip and constraint stay float32, so a
    bf16 prediction conserves as an fp32 one does (a constraint run in bf16 leaves ~1e-3; without
    a skip nothing float32 is added to the body's output, so it must be cast back itself)."""
    m = fine.downscale.fit(model="espcn", factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"},
                           checkpoint=tmp_path / "m.pt", skip=skip, **TRAIN)
    lr = fine.downscale.coarsen(F)
    full = xds.predict(lr, model=m)
    low = xds.predict(lr, model=m, precision="bf16")
    for v in ("t2m", "tp"):
        assert assert_conserves(low[v], lr[v], F) < 1e-5
        assert not np.array_equal(low[v].values, full[v].values)  # the body did run lowered
        assert "precision=bf16" in low[v].attrs["history"]
