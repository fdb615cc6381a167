"""Static covariates (orography, land-sea mask) for the temporal models, as for the spatial ones.

Pinned public API:
    m = xds.fit(hr, model="convgru" | "flowconvgru", factor=4, covariates=static_ds)
    xds.predict(lr, model=m, covariates=static_ds)         # or lr.downscale.predict(...)
    xds.fit(hr_ds, model="convgru", var=["t2m", "tp"], covariates=static_ds)

The covariates are folded onto the coarse grid (``xdownscale.data.covariates``) and given to the
network with every frame of the window; ``flowconvgru``'s voxel flow never warps them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.io.cf import fine_coordinates
from xdownscale.models.convgru import TemporalNet, inputs_needed
from xdownscale.testing import assert_conserves, synthetic_field, synthetic_pair
from xdownscale.testing import synthetic_statics as statics

F = 4
TINY = dict(batch_size=4, patch_size=16, samples_per_epoch=8, val_samples=4, channels=6, residual_blocks=1,
            progress=False, max_updates=4, seed=0)
FLOW = dict(flow_channels=4, time_factor=2)
OPTIONS = {"convgru": {}, "flowconvgru": FLOW}

pytestmark = pytest.mark.usefixtures("own_store")


def stir(module, seed: int = 0) -> None:
    """Random weights everywhere (the last layers start at zero): every input then shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def stirred(m, seed: int = 0):
    """The model ``m`` from its checkpoint, its body's weights stirred (``m`` itself untouched)."""
    out = xds.Downscaler.load(m.checkpoint)
    stir(out.module.body, seed)
    return out


@pytest.fixture(scope="module")
def hr():
    return synthetic_field("tcwv", times=10, ny=16, nx=24, seed=3)


@pytest.fixture(scope="module")
def cov(hr):
    return statics(hr)


@pytest.fixture(scope="module")
def trained(hr, cov, tmp_path_factory):
    """A tiny convgru (add) and flowconvgru (softmax) with covariates, trained once, saved."""
    d = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDOWNSCALE_HOME", str(d / "store"))
        return {model: xds.fit(hr, model=model, factor=F, constraint=c, covariates=cov, checkpoint=d / f"{model}.pt",
                               **TINY, **OPTIONS[model])
                for model, c in (("convgru", "add"), ("flowconvgru", "softmax"))}


# --- (a) fit, record, round trip, conservation ------------------------------------------------------
@pytest.mark.parametrize("model", ["convgru", "flowconvgru"])
def test_fit_with_covariates_records_them_and_round_trips_conserving(trained, hr, cov, model):
    m = trained[model]
    assert m.meta["covariates"] == ["orog", "lsm"]
    assert set(m.meta["normalization"]["covariates"]) == {"orog", "lsm"}
    assert m.config["in_channels"] == 1 + 2 * F * F and m.module.n_static == 2 * F * F
    assert m.module.body.encode[0].in_channels == 1 + 2 * F * F  # every frame carries the statics
    assert m.module.flow is None or m.module.flow.enc1[0].in_channels == 2 * 1 + 1  # the flow sees the field only
    lr = hr.downscale.coarsen(F)
    sr = lr.downscale.predict(model=m, covariates=cov).compute()
    assert sr.shape == hr.shape and sr.dims == hr.dims
    assert_conserves(sr, lr, F, rtol=1e-5)
    if model == "flowconvgru":
        assert float(sr.min()) >= 0
    loaded = xds.Downscaler.load(m.checkpoint)
    assert loaded.meta["covariates"] == ["orog", "lsm"]
    assert loaded.meta["normalization"]["covariates"] == m.meta["normalization"]["covariates"]
    np.testing.assert_array_equal(xds.predict(lr, model=loaded, covariates=cov).values, sr.values)
    # random weights (the trained last layer is near zero): the covariates reach the output, and
    # another orography gives another field, still conserving
    s = stirred(m)
    one = xds.predict(lr, model=s, covariates=cov).compute()
    other = xds.predict(lr, model=s, covariates=statics(hr, seed=9)).compute()
    assert float(abs(other - one).max()) > 1e-3
    assert_conserves(one, lr, F, rtol=1e-5)
    assert_conserves(other, lr, F, rtol=1e-5)


def test_flowconvgru_time_interpolation_with_covariates(trained, hr, cov):
    m = stirred(trained["flowconvgru"])
    inputs = hr.downscale.coarsen(F).isel(time=slice(0, None, 3))  # hours 0, 3, 6, 9
    st = xds.predict(inputs, model=m, covariates=cov, time_factor=3).compute()
    np.testing.assert_array_equal(st.time.values, hr.time.values)
    np.testing.assert_array_equal(st.synthesised.values, np.arange(10) % 3 != 0)
    assert_conserves(st.isel(time=slice(0, None, 3)), inputs, F, rtol=1e-5)
    assert np.isfinite(st.values).all() and float(st.min()) >= 0


# --- (b) a sub-grid pattern only the covariate tells ------------------------------------------------
def test_orography_covariate_beats_no_covariate_on_held_out_times():
    """Fine = smooth field + 2 K x the normalised sub-grid orography anomaly (zero block mean, so the
    coarse field carries none of it): only the covariate can tell the pattern."""
    base = synthetic_field("t2m", times=16, ny=32, nx=32, seed=11)
    orog = statics(base)["orog"]
    o = orog.values.astype("float64")
    anom = o - o.reshape(8, F, 8, F).mean((1, 3)).repeat(F, 0).repeat(F, 1)
    fine = base + (2.0 * anom / anom.std()).astype("float32")
    train, test = fine.isel(time=slice(0, 12)), fine.isel(time=slice(12, None))
    lr = test.downscale.coarsen(F)
    kw = dict(model="convgru", factor=F, constraint="add", batch_size=8, patch_size=16, samples_per_epoch=16,
              val_samples=8, channels=8, residual_blocks=1, progress=False, max_updates=300, seed=0)

    def rmse(pred) -> float:
        return float(np.sqrt(((pred.values - test.values) ** 2).mean()))

    without = rmse(xds.predict(lr, model=xds.fit(train, **kw)))
    with_cov = rmse(xds.predict(lr, model=xds.fit(train, covariates=orog, **kw), covariates=orog))
    bicubic = rmse(xds.predict(lr, model="bicubic", factor=F))
    assert with_cov < 0.7 * without and with_cov < 0.7 * bicubic, (with_cov, without, bicubic)


# --- (c) clear refusals ----------------------------------------------------------------------------
def test_missing_or_misplaced_covariates_are_refused_in_one_line(trained, hr, cov):
    m, lr = trained["convgru"], hr.downscale.coarsen(F)
    with pytest.raises(DataError, match=r"trained with covariates \['lsm', 'orog'\].*covariates=ds_static"):
        lr.downscale.predict(model=m)
    with pytest.raises(DataError, match=r"trained with covariates \['lsm', 'orog'\]"):
        xds.predict(lr, model=m.checkpoint, time_factor=1)  # from the checkpoint too
    with pytest.raises(DataError, match=r"covariate 'lsm' is missing"):
        lr.downscale.predict(model=m, covariates=cov[["orog"]])
    with pytest.raises(DataError, match=r"covariate 'orog' covers only \d+ % of the fine grid"):
        lr.downscale.predict(model=m, covariates=cov.coarsen(lat=F, lon=F).mean())  # coarse, not fine
    with pytest.raises(DataError, match=r"covariate 'orog' has shape \(4, 6\) but the fine grid is \(16, 24\)"):
        lr.downscale.predict(model=m, covariates=cov.coarsen(lat=F, lon=F).mean().drop_vars(["lat", "lon"]))
    with pytest.raises(DataError, match=r"trained with covariates"):
        xds.predict(lr.isel(time=[0, 2, 4]), model=trained["flowconvgru"], time_factor=2)


# --- (d) tiles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["convgru", "flowconvgru"])
def test_tiled_and_dask_prediction_with_covariates_match_the_whole_field(trained, model):
    m = stirred(trained[model], seed=1)
    halo = m.module.receptive_radius
    side = 2 * halo + 8  # two tiles of halo + 4 (a multiple of the flow's pooling) and more
    lr = synthetic_field("tcwv", times=4, ny=side, nx=side, seed=5)
    static = statics(synthetic_field("tcwv", times=1, ny=F * side, nx=F * side, seed=6)
                     .assign_coords(fine_coordinates(lr, F)))  # on the fine cells of lr, where they are sought
    # this synthetic domain has another grid spacing than the training one; the tiling is what is tested
    kw = dict(model=m, covariates=static, allow_other_variable=True, time_factor=2 if model == "flowconvgru" else 1)
    whole = lr.downscale.predict(**kw).compute()
    tiled = lr.downscale.predict(chunks=halo + 4, **kw)
    assert tiled.data.npartitions > 1
    np.testing.assert_allclose(tiled.compute().values, whole.values, rtol=1e-4, atol=1e-3)
    lazy = lr.chunk({"time": 2, "lat": halo + 4, "lon": halo + 4}).downscale.predict(chunks=halo + 4, **kw)
    np.testing.assert_allclose(lazy.compute().values, whole.values, rtol=1e-4, atol=1e-3)
    shifted = lr.downscale.predict(**{**kw, "covariates": static.roll(lat=3, lon=5)}).compute()
    assert float(abs(shifted - whole).max()) > 1e-2  # the covariates matter here, so the tiles test them


# --- (e) several targets ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["convgru", "flowconvgru"])
def test_multi_target_temporal_with_covariates_conserves_each_target(model, tmp_path):
    fine = synthetic_pair()
    static = statics(fine["t2m"])
    m = xds.fit(fine, model=model, factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"},
                covariates=static, checkpoint=tmp_path / "m.pt", **TINY, **OPTIONS[model])
    assert m.meta["covariates"] == ["orog", "lsm"] and m.module.n_static == 2 * F * F
    m = stirred(m)
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=m, covariates=static).compute()
    for v in ("t2m", "tp"):
        assert sr[v].shape == fine[v].shape
        assert_conserves(sr[v], lr[v], F, rtol=1e-5)
    assert float(sr["tp"].min()) >= 0
    other = xds.predict(lr, model=m, covariates=statics(fine["t2m"], seed=9)).compute()
    assert float(abs(other["t2m"] - sr["t2m"]).max()) > 1e-3  # the covariates reach the targets
    with pytest.raises(DataError, match=r"trained with covariates \['lsm', 'orog'\]"):
        xds.predict(lr, model=xds.Downscaler.load(tmp_path / "m.pt"))


# --- (f) flowconvgru: the statics are not advected ----------------------------------------------------
def test_flow_never_warps_the_static_channels():
    torch.manual_seed(0)
    n_static = 3
    net = TemporalNet("flowconvgru", F, in_channels=1 + n_static, constraint="add", mean=10.0, std=2.0, channels=4,
                      residual_blocks=1, window=3, flow_channels=4)
    for p in net.flow.out.parameters():  # a non-trivial flow
        torch.nn.init.normal_(p, std=0.3)
    seen = []
    net.body.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    b, h, w, tf = 2, 6, 5, 3
    frames = torch.randn(b, inputs_needed(3, tf), h, w)
    static = torch.randn(b, n_static, h, w)
    phase = torch.tensor([0.0, 1.0])  # synthesised frames in both windows
    x = torch.cat([frames[:, :1], phase.view(-1, 1, 1, 1).expand(b, 1, h, w), torch.full((b, 1, h, w), float(tf)),
                   frames, static], dim=1)
    net(x)
    body_in = seen[-1]
    assert body_in.shape == (b, 3, 1 + n_static, h, w)
    for n in range(3):  # every frame, input or synthesised, carries the statics exactly as given
        torch.testing.assert_close(body_in[:, n, 1:], static, rtol=0, atol=0)
    dense, _ = net.frames(x)
    torch.testing.assert_close(body_in[:, :, :1], dense)  # the dynamic channel is the (warped) dense window
    linear = (2 / 3) * frames[:, 0] + (1 / 3) * frames[:, 1]  # phase 0: the 2nd dense frame is 1/3 after input 0
    assert float((dense[0, 1, 0] - linear[0]).abs().max().detach()) > 1e-3  # the flow does warp the dynamic field
