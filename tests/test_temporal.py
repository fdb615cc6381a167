"""Temporal models and time handling: windows, gaps, stitching, convgru / flowconvgru, time_factor."""
import numpy as np
import pandas as pd
import pytest
import torch

import xdownscale as xds
from xdownscale.data import windows
from xdownscale.errors import DataError
from xdownscale.families.temporal import SequencePatchDataset
from xdownscale.models.convgru import TemporalNet, inputs_needed
from xdownscale.nn.constraints import block_mean
from xdownscale.nn.flow import VoxelFlow, warp
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(epochs=1, batch_size=4, patch_size=16, samples_per_epoch=8, val_samples=4, channels=6,
            residual_blocks=1, progress=False)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def hr():
    return synthetic_field("tcwv", times=10, ny=16, nx=24, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny convgru and one tiny flowconvgru (softmax), trained once for the module."""
    field = synthetic_field("tcwv", times=10, ny=16, nx=24, seed=3)
    d = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDOWNSCALE_HOME", str(d / "store"))
        cg = xds.fit(field, model="convgru", factor=4, constraint="softmax", checkpoint=d / "cg.pt", **TINY)
        fl = xds.fit(field, model="flowconvgru", factor=4, constraint="softmax", checkpoint=d / "fl.pt",
                     flow_channels=4, **TINY)
    return cg, fl


def hours(n, start="2021-01-01"):
    return pd.date_range(start, periods=n, freq="h").values


# --- windows -----------------------------------------------------------------------------------
def test_step_segments_and_gap_policies():
    t = np.concatenate([hours(4), hours(3, "2021-01-01T07")])
    assert windows.time_step(t) == np.timedelta64(1, "h")
    with pytest.warns(UserWarning, match="1 gap"):
        assert windows.segments(t) == [slice(0, 4), slice(4, 7)]
    with pytest.raises(DataError, match="gap.*2021-01-01T03.*2021-01-01T07"):
        windows.segments(t, gaps="error")
    with pytest.raises(DataError, match="strictly increasing"):
        windows.time_step(t[::-1])
    with pytest.raises(DataError, match="at least 2"):
        windows.time_step(t[:1])
    with pytest.raises(DataError, match="gaps="):
        windows.segments(t, gaps="bridge")


def test_centred_windows_repeat_edges_and_never_cross_gaps():
    t = np.concatenate([hours(4), hours(3, "2021-01-02")])
    with pytest.warns(UserWarning):
        idx = windows.centred_windows(t, 3)
    np.testing.assert_array_equal(idx[:, 1], np.arange(7))
    np.testing.assert_array_equal(idx[0], [0, 0, 1])  # first frame repeated
    np.testing.assert_array_equal(idx[3], [2, 3, 3])  # last frame before the gap repeated
    np.testing.assert_array_equal(idx[4], [4, 4, 5])  # the next segment starts afresh
    np.testing.assert_array_equal(windows.window_offsets(4), [-2, -1, 0, 1])


def test_stitch_gives_every_time_exactly_one_value():
    n, length = 11, 4
    starts = windows.window_starts(n, length, overlap=2)
    assert starts[0] == 0 and starts[-1] == n - length
    blocks = [np.arange(s, s + length) * 10 + k for k, s in enumerate(starts)]
    out = windows.stitch(blocks, starts, n)
    np.testing.assert_array_equal(out // 10, np.arange(n))  # right time from some window
    with pytest.raises(DataError, match="do not cover"):
        windows.stitch(blocks[:1], starts[:1], n)


def test_dense_times_put_new_steps_inside_intervals_only():
    t = np.concatenate([hours(3), hours(2, "2021-01-01T05")])
    with pytest.warns(UserWarning):
        new, src = windows.dense_times(t, 3)
    expect = pd.to_datetime(["2021-01-01T00:00", "00:20", "00:40", "01:00", "01:20", "01:40", "02:00"],
                            format="mixed").values
    assert new.size == 7 + 4
    assert pd.Timestamp(new[1]) == pd.Timestamp("2021-01-01T00:20")
    assert pd.Timestamp(new[6]) == pd.Timestamp("2021-01-01T02:00") and pd.Timestamp(new[7]) == pd.Timestamp(t[3])
    np.testing.assert_array_equal(src[:4], [[0, 0], [0, 1], [0, 2], [1, 0]])
    assert expect.size == 7


# --- modules -----------------------------------------------------------------------------------
def test_warp_shifts_by_whole_cells_and_untrained_flow_is_linear_interpolation():
    frame = torch.arange(20.0).view(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 1] = 1.0  # sample one cell to the right
    out = warp(frame, flow)
    torch.testing.assert_close(out[..., :-1], frame[..., 1:])
    vf = VoxelFlow(1, width=4)
    a, b = torch.rand(2, 1, 5, 7), torch.rand(2, 1, 5, 7)
    tau = torch.tensor([1 / 3, 2 / 3])
    expect = (1 - tau.view(-1, 1, 1, 1)) * a + tau.view(-1, 1, 1, 1) * b
    torch.testing.assert_close(vf(a, b, tau), expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("constraint", ["add", "softmax"])
def test_synthesised_frames_conserve_the_flow_interpolation(constraint):
    torch.manual_seed(0)
    net = TemporalNet("flowconvgru", 4, constraint=constraint, mean=10.0, std=2.0, channels=4, residual_blocks=1,
                      window=3, flow_channels=4)
    for p in net.flow.out.parameters():  # a non-trivial flow
        torch.nn.init.normal_(p, std=0.3)
    m = inputs_needed(3, 3)
    frames = torch.randn(2, m, 6, 5)
    for phase in range(3):
        x = torch.cat([frames[:, :1], torch.full((2, 1, 6, 5), float(phase)), torch.full((2, 1, 6, 5), 3.0), frames], 1)
        coarse = frames[:, :1] * 2 + 10
        y = net(x, None, coarse)
        dense, is_input = net.frames(x)
        ref = torch.where(is_input.view(-1, 1, 1, 1), coarse, dense[:, 1] * 2 + 10)
        assert bool(is_input[0]) == (phase == 2)
        torch.testing.assert_close(block_mean(y, 4), ref, atol=1e-4, rtol=1e-5)


def test_sequence_dataset_items():
    t, h, w, f = 9, 4, 6, 2
    coarse = np.random.default_rng(0).normal(size=(t, h, w))
    fine = np.repeat(np.repeat(coarse, f, 1), f, 2)
    lo, hi = np.zeros(t, int), np.full(t, t - 1)
    ds = SequencePatchDataset(coarse, fine, np.ones(h * f), {"mean": 0.0, "std": 1.0}, np.arange(t), lo, hi,
                              window=3, time_factor=3, factor=f, patch_size=8, n_samples=5, seed=1)
    x, y, wt, c = ds[0]
    assert x.shape == (3 + inputs_needed(3, 3), 4, 4) and y.shape == (1, 8, 8) and wt.shape == (1, 8, 1)
    schedules = {(float(it[0][1, 0, 0]), float(it[0][2, 0, 0])) for it in (ds[i] for i in range(5))}
    assert {tf for _, tf in schedules} == {1.0, 3.0}  # plain windows and windows with new frames
    assert all(0 <= r < tf for r, tf in schedules)
    np.testing.assert_allclose(x[0].numpy(), c[0].numpy(), rtol=1e-6)  # target channel = conserved field


# --- fit / predict -----------------------------------------------------------------------------
def test_convgru_conserves_round_trips_and_tiles(trained, hr, monkeypatch):
    cg, _ = trained
    monkeypatch.setenv("XDOWNSCALE_HOME", str(cg.checkpoint.parent / "store"))
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model=cg).compute()
    assert sr.shape == hr.shape and sr.dims == hr.dims
    np.testing.assert_array_equal(sr.time.values, hr.time.values)
    assert_conserves(sr, lr, 4, rtol=1e-5)
    assert float(sr.min()) >= 0
    assert sr.attrs["xdownscale_model"] == "convgru" and sr.attrs["xdownscale_window"] == 3
    again = xds.predict(lr, model=xds.Downscaler.load(cg.checkpoint)).compute()
    np.testing.assert_array_equal(again.values, sr.values)
    # tiles: a domain wider than two halos, and stirred weights (a briefly trained net, its last
    # layer started at zero, barely shows its inputs, so equal tiles would prove little)
    stirred = xds.Downscaler.load(cg.checkpoint)
    with torch.no_grad():
        for p in stirred.module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    halo = stirred.module.receptive_radius
    big = synthetic_field("tcwv", times=5, ny=4 * (2 * halo + 8), nx=4 * (2 * halo + 8), seed=5).downscale.coarsen(4)
    whole = big.downscale.predict(model=stirred, allow_other_variable=True).compute()
    tiled = big.downscale.predict(model=stirred, chunks=halo + 4, allow_other_variable=True)
    assert tiled.data.npartitions > 1
    np.testing.assert_allclose(tiled.compute().values, whole.values, rtol=0, atol=1e-4 * float(abs(whole).max()))
    by_name = lr.downscale.predict(model="convgru", factor=4)  # model store lookup
    assert by_name.shape == sr.shape


def test_flowconvgru_space_and_time(trained, hr):
    _, fl = trained
    lr = hr.downscale.coarsen(4)
    sr = lr.downscale.predict(model=fl).compute()
    assert_conserves(sr, lr, 4, rtol=1e-5)
    inputs = lr.isel(time=slice(0, None, 3))  # hours 0, 3, 6, 9
    st = inputs.downscale.predict(model=fl, time_factor=3).compute()
    np.testing.assert_array_equal(st.time.values, hr.time.values)  # two new hours between inputs
    np.testing.assert_array_equal(st.synthesised.values, np.arange(10) % 3 != 0)
    assert_conserves(st.isel(time=slice(0, None, 3)), inputs, 4, rtol=1e-5)
    assert np.isfinite(st.values).all() and float(st.min()) >= 0
    assert st.attrs["xdownscale_time_factor"] == 3


def test_flowconvgru_tiles_match_the_whole_field(trained):
    _, fl = trained
    halo = fl.module.receptive_radius
    assert halo % 4 == 0
    lr = synthetic_field("tcwv", times=4, ny=2 * halo + 8, nx=2 * halo + 8, seed=5)
    # this synthetic domain has another grid spacing than the training one; the tiling is what is tested
    whole = lr.downscale.predict(model=fl, time_factor=2, allow_other_variable=True).compute()
    tiled = lr.downscale.predict(model=fl, time_factor=2, chunks=halo + 4, allow_other_variable=True).compute()
    np.testing.assert_allclose(tiled.values, whole.values, rtol=1e-4, atol=1e-3)


def test_gaps_split_or_raise(trained, hr):
    cg, _ = trained
    lr = hr.downscale.coarsen(4).isel(time=[0, 1, 2, 5, 6, 7])
    with pytest.warns(UserWarning, match="gap"):
        sr = lr.downscale.predict(model=cg).compute()
    assert sr.sizes["time"] == 6
    # each segment is predicted on its own: the first segment equals predicting it alone
    alone = lr.isel(time=slice(0, 3)).downscale.predict(model=cg).compute()
    np.testing.assert_allclose(sr.isel(time=slice(0, 3)).values, alone.values, rtol=1e-6)
    with pytest.raises(DataError, match="gap"):
        lr.downscale.predict(model=cg, gaps="error")


def test_clear_errors(trained, hr):
    cg, _ = trained
    lr = hr.downscale.coarsen(4)
    with pytest.raises(DataError, match="unknown option 'chanels'.*channels"):
        xds.fit(hr, model="convgru", factor=4, chanels=4, **{k: v for k, v in TINY.items() if k != "channels"})
    with pytest.raises(DataError, match="flowconvgru"):
        lr.downscale.predict(model=cg, time_factor=3)
    with pytest.raises(DataError, match="members"):
        lr.downscale.predict(model=cg, members=3)
    with pytest.raises(DataError, match="time dimension"):
        lr.isel(time=0).downscale.predict(model=cg)
    with pytest.raises(DataError, match="time series"):
        xds.fit(hr.isel(time=0), model="convgru", factor=4, **TINY)


@pytest.mark.parametrize("model", ["convgru", "flowconvgru"])
@pytest.mark.parametrize("constraint", ["none", "soft", "add", "mult", "softmax", "scadd"])
@pytest.mark.parametrize("factor", [2, 3])
def test_temporal_net_every_constraint(model, constraint, factor):
    """The temporal twin of test_constraints.test_downscaling_net: shapes, exact conservation with
    cos-latitude weights, positivity, bounds and finite gradients."""
    torch.manual_seed(0)
    mean, std = 280.0, 10.0
    kwargs = {"constraint_kwargs": {"lower": 200.0, "upper": 360.0}} if constraint == "scadd" else {}
    flow = {"flow_channels": 4} if model == "flowconvgru" else {}
    net = TemporalNet(model, factor, constraint=constraint, mean=mean, std=std, channels=4, residual_blocks=1,
                      window=3, **flow, **kwargs)
    tf = 3 if flow else 1
    b, h, w = 2, 5, 6
    frames = torch.randn(b, inputs_needed(3, tf), h, w)
    phase = torch.tensor([2.0, 0.0]) if flow else torch.zeros(b)  # flow: one input-time, one synthesised target
    x = torch.cat([frames[:, 1:2], phase.view(-1, 1, 1, 1).expand(b, 1, h, w),
                   torch.full((b, 1, h, w), float(tf)), frames], dim=1)
    lat = torch.cos(torch.deg2rad(torch.linspace(60, 40, h * factor))).view(1, 1, -1, 1)
    out = net(x, lat)
    assert out.shape == (b, 1, h * factor, w * factor) and torch.isfinite(out).all()
    dense, is_input = net.frames(x)
    ref = torch.where(is_input.view(-1, 1, 1, 1), x[:, :1], dense[:, net.target]) * std + mean
    if constraint in ("add", "mult", "softmax", "scadd"):
        torch.testing.assert_close(block_mean(out, factor, lat), ref, atol=1e-3, rtol=1e-5)
    if constraint == "softmax":
        assert (out >= 0).all()
    ((out - mean) ** 2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_tight_memory_budget_gives_the_same_series(trained, hr, monkeypatch):
    cg, _ = trained
    monkeypatch.setenv("XDOWNSCALE_HOME", str(cg.checkpoint.parent / "store"))
    lr = hr.downscale.coarsen(4)
    loose = lr.downscale.predict(model=cg, max_memory="4GB")
    budget, tight = 4 << 30, loose
    while True:  # the smallest power-of-two budget that still fits one tile
        try:
            tight = lr.downscale.predict(model=cg, max_memory=budget // 2)
        except DataError:
            break
        budget //= 2
    assert tight.data.npartitions > loose.data.npartitions
    np.testing.assert_allclose(tight.values, loose.values, rtol=0, atol=1e-5)
