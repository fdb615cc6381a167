"""Several targets and extra predictors for the temporal models and rnngan (issue #15).

Pinned public API:
    xds.fit(hr_ds, model="convgru", var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"})
    xds.fit(model="convgru", lr=coarse_ds, hr=fine_ds, var="t2m", predictors=["t2m", "q"])
    xds.fit(hr_ds, model="rnngan", var=["t2m", "tp"]); xds.predict(coarse_ds, model=m, members=N)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.families.temporal.dataset import WindowSamples
from xdownscale.testing import another_model, assert_conserves, synthetic_pair

F = 4
TRAIN = dict(epochs=1, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False, seed=0)
TEMPORAL = {"convgru": dict(channels=4, residual_blocks=1, window=3),
            "flowconvgru": dict(channels=4, residual_blocks=1, window=3, flow_channels=4, time_factor=2)}
RNNGAN = dict(width=8, n_blocks=1, noise_channels=2, window=2, content_members=2, val_members=2)


pytestmark = pytest.mark.usefixtures("own_store")


@pytest.fixture(scope="module")
def fine():
    return synthetic_pair()


@pytest.fixture(scope="module")
def coarse(fine):
    return another_model(fine, F)


def _stir(module, seed: int = 0) -> None:
    """Random weights everywhere (the last layers start at zero): every input then shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("model", sorted(TEMPORAL))
def test_joint_temporal_fit_conserves_each_target_and_round_trips(fine, model, tmp_path):
    m = xds.fit(fine, model=model, factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "softmax"},
                checkpoint=tmp_path / "m.pt", **TRAIN, **TEMPORAL[model])
    assert m.module.n_targets == 2 and m.meta["temporal"]["window"] == 3
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=tmp_path / "m.pt").compute()
    assert isinstance(sr, xr.Dataset) and sorted(sr.data_vars) == ["t2m", "tp"]
    for v in ("t2m", "tp"):
        assert sr[v].shape == fine[v].shape and sr[v].dims == fine[v].dims
        assert assert_conserves(sr[v], lr[v], F) < 1e-5
        assert sr[v].attrs["units"] == fine[v].attrs["units"]  # its own CF metadata
    assert float(sr["tp"].min()) >= 0
    assert "constraint=softmax" in sr["tp"].attrs["history"] and "constraint=add" in sr["t2m"].attrs["history"]
    # the checkpoint by path gives the trained model's output exactly
    np.testing.assert_array_equal(sr["tp"].values, xds.predict(lr, model=m)["tp"].values)


def test_outputs_are_wired_to_their_own_source(fine, coarse):
    """With the body's output zeroed each target is its own source's bicubic interpolation through its
    constraint; inputs in another order than the targets, so a target read through the wrong input fails."""
    m = xds.fit(lr=coarse, hr=fine, model="convgru", var=["tp", "t2m"], predictors=["q", "t2m", "tp"],
                constraint="add", **TRAIN, **TEMPORAL["convgru"])
    with torch.no_grad():
        for p in m.module.body.parameters():
            p.zero_()
    sr = xds.predict(coarse, model=m)
    for v in ("t2m", "tp"):
        ref = xds.predict(coarse[v], model="bicubic", factor=F, constraint="add")
        np.testing.assert_allclose(sr[v].values, ref.values, rtol=1e-5, atol=1e-5 * float(abs(ref).max()))


def test_a_target_conserves_a_named_input(fine, coarse):
    m = xds.fit(lr=coarse, hr=fine, model="flowconvgru", var=["t2m", "tp"],
                constraint={"t2m": "add", "tp": ("softmax", "tp_src")}, **TRAIN, **TEMPORAL["flowconvgru"])
    sr = xds.predict(coarse, model=m)
    assert_conserves(sr["t2m"], coarse["t2m"], F)
    assert_conserves(sr["tp"], coarse["tp_src"], F)
    with pytest.raises(AssertionError):
        assert_conserves(sr["tp"], coarse["tp"], F)


def test_synthesised_times_for_every_target(fine):
    m = xds.fit(fine, model="flowconvgru", factor=F, var=["t2m", "tp"], constraint={"t2m": "add", "tp": "none"},
                **TRAIN, **TEMPORAL["flowconvgru"])
    lr = fine.downscale.coarsen(F)
    sr = xds.predict(lr, model=m, time_factor=2)
    n = lr.sizes["time"]
    for v in ("t2m", "tp"):
        assert sr[v].sizes["time"] == 2 * n - 1
    real = sr.isel(time=~sr["synthesised"].values)
    np.testing.assert_array_equal(real["time"].values, lr["time"].values)
    assert_conserves(real["t2m"], lr["t2m"], F)  # input times conserve their input
    assert np.isfinite(sr["tp"].values).all()


def test_one_target_driven_by_predictors_that_reach_the_network(fine, coarse):
    m = xds.fit(model="convgru", lr=coarse, hr=fine, var="t2m", predictors=["t2m", "q"], constraint="add",
                **TRAIN, **TEMPORAL["convgru"])
    assert m.meta["predictors"] == ["t2m", "q"] and m.module.n_targets == 1
    _stir(m.module.body)
    sr = xds.predict(coarse, model=m)
    assert list(sr.data_vars) == ["t2m"]
    assert_conserves(sr["t2m"], coarse["t2m"], F)
    other = coarse.assign(q=coarse["q"][::-1].assign_coords(time=coarse["time"]))  # the predictor's times reversed
    moved = xds.predict(other, model=m)
    assert_conserves(moved["t2m"], coarse["t2m"], F)  # still the target's own coarse field
    diff = abs(moved["t2m"] - sr["t2m"]).max(dim=("lat", "lon")).values
    assert (diff > 1e-3).all(), diff  # q reaches the network at every time step


def test_prediction_packs_the_window_as_training_does(fine, coarse):
    """The network sees at prediction exactly the packed window of training (every input at the same
    time steps as the target, frame by frame): catches predictors shifted or interleaved otherwise."""
    window = 3
    m = xds.fit(model="convgru", lr=coarse, hr=fine, var="t2m", predictors=["q", "t2m"], constraint="add",
                **TRAIN, **TEMPORAL["convgru"])
    seen = []
    hook = m.module.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    try:
        xds.predict(coarse, model=m).compute()
    finally:
        hook.remove()
    packed = torch.cat([x for x in seen if x.shape[-2:] == (4, 4)]).numpy()  # not the memory probe's tiles
    names = ["q", "t2m"]
    series = np.stack([coarse[n].transpose("time", "lat", "lon").values for n in names], axis=1).astype("float64")
    stats = m.meta["normalization"]["inputs"]
    n_times = coarse.sizes["time"]
    for j in (0, 2, n_times - 1):  # an edge, the middle, the other edge
        ds = WindowSamples(series, np.zeros((n_times, 1, 16, 16)), np.ones(16), stats, [1], [j],
                           np.zeros(n_times, int), np.full(n_times, n_times - 1), window=window, time_factor=1,
                           factor=F, patch_size=16, n_samples=1, seed=0)
        x = ds[0][0].numpy()
        assert packed.shape[1] == x.shape[0] == 2 + 2 + window * 2
        np.testing.assert_allclose(packed[j], x, rtol=1e-5, atol=1e-5)
        centre = 4 + (window // 2) * 2
        np.testing.assert_allclose(x[centre : centre + 2], x[:2], rtol=1e-6)  # the window's centre is the target
        np.testing.assert_allclose(ds[0][3].numpy()[0], series[j, 1], rtol=1e-6)  # conserves t2m at its own time


def test_soft_and_none_targets_train_without_hard_conservation(fine):
    from xdownscale.engine.trainer import soft_channels

    m = xds.fit(fine, model="convgru", factor=F, var=["t2m", "tp"], constraint={"t2m": "soft", "tp": "none"},
                **TRAIN, **TEMPORAL["convgru"])
    assert soft_channels(m.module) == [0]
    assert m.meta["multi_target"]["constraints"] == {"t2m": "soft", "tp": "none"}
    sr = xds.predict(fine.downscale.coarsen(F), model=m)
    assert all(np.isfinite(sr[v].values).all() for v in ("t2m", "tp"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(var="t2m", predictors=["t2m", "humidity"]), r"predictor 'humidity' is not in lr.*predictors="),
    (dict(var=["t2m", "tp"], predictors=["t2m", "q"], constraint={"tp": "add"}),
     r"constraint 'add' for 'tp' needs a coarse field.*'none'"),
    (dict(var=["t2m", "tp"], covariates="orography"), r"covariates must be an xarray Dataset or DataArray, got str"),
])
def test_bad_input_gets_one_line_naming_the_variable(fine, coarse, kwargs, message):
    with pytest.raises(DataError, match=message):
        xds.fit(lr=coarse, hr=fine, model="convgru", **kwargs, **TRAIN, **TEMPORAL["convgru"])


def test_missing_or_misaligned_predictor_is_refused_in_one_line(fine, coarse):
    m = xds.fit(model="convgru", lr=coarse, hr=fine, var="t2m", predictors=["t2m", "q"], **TRAIN,
                **TEMPORAL["convgru"])
    with pytest.raises(DataError, match=r"input 'q' that the model was trained on is not in the Dataset.*"
                                        r"pass every input \['t2m', 'q'\]"):
        xds.predict(coarse[["t2m"]], model=m)
    with pytest.raises(DataError, match="pass a Dataset that holds them"):
        xds.predict(coarse["t2m"], model=m)
    shifted = coarse.assign_coords(time=coarse["time"] + np.timedelta64(1, "h"))  # the coarse inputs an hour late
    with pytest.raises(DataError, match=r"input 't2m' has time steps that do not match the targets'.*xr.align"):
        xds.fit(model="convgru", lr=shifted, hr=fine, var="t2m", predictors=["t2m", "q"], **TRAIN,
                **TEMPORAL["convgru"])


def test_rnngan_members_are_joint_seeded_draws_conserving_every_target(fine, coarse, tmp_path):
    m = xds.fit(lr=coarse, hr=fine, model="rnngan", var=["t2m", "tp"], predictors=["t2m", "tp", "q"],
                constraint={"t2m": "add", "tp": "softmax"}, checkpoint=tmp_path / "g.pt", **TRAIN, **RNNGAN)
    _stir(m.module.body)
    a = xds.predict(coarse, model=m, members=2, seed=3).compute()
    b = xds.predict(coarse, model=m, members=3, seed=3).compute()
    for v in ("t2m", "tp"):
        np.testing.assert_array_equal(a[v].isel(member=1).values, b[v].isel(member=1).values)  # per member
        for k in range(2):
            assert_conserves(a[v].isel(member=k), coarse[v], F)
        assert float(abs(a[v].isel(member=0) - a[v].isel(member=1)).max()) > 0  # the noise reaches each target
    longer = xds.predict(coarse, model=m, members=1, seed=3, window=4)  # a longer warm-up changes the draw
    assert_conserves(longer["tp"].isel(member=0), coarse["tp"], F)
    assert float(abs(longer["t2m"].isel(member=0) - a["t2m"].isel(member=0)).max()) > 0


def test_rnngan_one_target_driven_by_predictors(fine, coarse):
    m = xds.fit(model="rnngan", lr=coarse, hr=fine, var="tp", predictors=["tp", "q"], constraint="softmax",
                **TRAIN, **RNNGAN)
    assert m.meta["predictors"] == ["tp", "q"] and m.module.n_targets == 1
    _stir(m.module.body)
    a = xds.predict(coarse, model=m, members=2, seed=0)
    assert list(a.data_vars) == ["tp"]
    for k in range(2):
        assert_conserves(a["tp"].isel(member=k), coarse["tp"], F)
    other = coarse.assign(q=coarse["q"][::-1].assign_coords(time=coarse["time"]))
    b = xds.predict(other, model=m, members=2, seed=0)
    assert float(abs(b["tp"] - a["tp"]).max()) > 0  # q reaches the generator
