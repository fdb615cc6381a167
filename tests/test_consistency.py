"""Cross-variable consistency rules that compose with conservation (issue #15, part 3).

Pinned public API:
    ds.downscale.fit(var=["t2m", "d2m", "r"], constraint="add", consistency=["0<=r<=100", "d2m<=t2m"])
    consistency=["ws=hypot(u10,v10)"] (speed derived) or ["hypot(u10,v10)=ws"] (components rescaled)
    xdownscale.nn.consistency: Bounds, LessEqual, Magnitude, parse_rules, mean_preserving_clip
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.nn.consistency import Bounds, Consistency, LessEqual, Magnitude, mean_preserving_clip, parse_rules
from xdownscale.nn.constraints import block_mean, upsample_nearest
from xdownscale.testing import assert_conserves, synthetic_field

F = 2
TRAIN = dict(model="cnn", factor=F, epochs=1, batch_size=2, patch_size=8, samples_per_epoch=2, val_samples=2,
             progress=False, seed=0, width=8, n_blocks=1)
HUMID = ["t2m", "d2m", "r"]
WIND = ["u10", "v10", "ws"]


pytestmark = pytest.mark.usefixtures("own_store")


@pytest.fixture(scope="module")
def fine():
    """Fields that satisfy every rule: d2m below t2m, r in (0, 100), ws = |(u10, v10)|."""
    t2m = synthetic_field("t2m", times=4, ny=16, nx=16, seed=1)
    depression = 1.0 + synthetic_field("tcwv", times=4, ny=16, nx=16, seed=2) / 5
    u = (synthetic_field("t2m", times=4, ny=16, nx=16, seed=3) - 285) / 2
    v = (synthetic_field("t2m", times=4, ny=16, nx=16, seed=4) - 285) / 2
    return xr.Dataset({"t2m": t2m, "d2m": (t2m - depression).assign_attrs(t2m.attrs),
                       "r": (100 * np.exp(-depression / 15)).assign_attrs(units="%"),
                       "u10": u.assign_attrs(units="m s-1"), "v10": v.assign_attrs(units="m s-1"),
                       "ws": np.hypot(u, v).assign_attrs(units="m s-1")})


def conservation_error(pred: xr.DataArray, lr: xr.DataArray) -> float:
    """Max |coarsened pred - lr| relative to max |lr| (float32 rounding of large outputs sets its floor)."""
    back = pred.coarsen(lat=F, lon=F).mean()  # equal row weights are close enough for a floor
    return float(np.abs(back.values - lr.values).max() / np.abs(lr.values).max())


def scramble(m, scale: float = 1.0) -> None:
    """Adversarial body: large random weights, so the raw outputs break every rule."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.module.body.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def test_parse_one_place_with_one_line_errors():
    rules = parse_rules(["0 <= r <= 100", "tp>=0", "t2m >= d2m", "ws=hypot(u,v)", "hypot(u,v)=ws",
                         Bounds("r", upper=100.5)], ["r", "tp", "t2m", "d2m", "ws", "u", "v"])
    assert rules == [Bounds("r", 0, 100), Bounds("tp", 0), LessEqual("d2m", "t2m"), Magnitude("ws", "u", "v"),
                     Magnitude("ws", "u", "v", keep="speed"), Bounds("r", upper=100.5)]
    assert parse_rules([str(r) for r in rules], ["r", "tp", "t2m", "d2m", "ws", "u", "v"]) == rules  # round trip
    assert parse_rules(["0<=r<=0.1234567891"], ["r"]) == [Bounds("r", 0, 0.1234567891)]  # exact, not %g
    for bad, word in [("d2m<=tmax", "'tmax'"), ("r<<100", "not understood"), ("100<=r<=0", "lower >= upper"),
                      ("t2m<=t2m", "twice")]:
        with pytest.raises(DataError, match=word) as err:
            parse_rules([bad], ["t2m", "d2m", "r"])
        assert "\n" not in str(err.value)


def test_fit_refuses_an_unknown_variable_before_training(fine):
    with pytest.raises(DataError, match="'tmax', which is not a target") as err:
        fine.downscale.fit(var=HUMID, constraint="add", consistency=["d2m<=tmax"], **TRAIN)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="var="):
        fine.downscale.fit(var="t2m", consistency=["t2m>=0"], **TRAIN)


def test_mean_preserving_clip_keeps_weighted_block_means_and_bounds():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(3, 1, 12, 12, generator=gen, dtype=torch.float64) * 200
    means = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64) * 100  # inside [0, 100]
    y = y - upsample_nearest(block_mean(y, 3), 3) + upsample_nearest(means, 3)
    w = torch.linspace(0.3, 1.0, 12, dtype=torch.float64).view(1, 1, 12, 1)  # cos(lat)-like rows
    y = y - upsample_nearest(block_mean(y, 3, w) - means, 3)
    for lo, hi in [(0.0, 100.0), (0.0, float("inf")), (-float("inf"), 100.0)]:
        out = mean_preserving_clip(y, lo, hi, 3, w)
        assert float(out.min()) >= lo and float(out.max()) <= hi
        np.testing.assert_allclose(block_mean(out, 3, w).numpy(), means.numpy(), atol=1e-10)
    # a block mean outside the bounds: the bounds win and the mean is clamped to them
    out = mean_preserving_clip(y + 500, 0.0, 100.0, 3, w)
    assert float(out.max()) <= 100 and torch.allclose(block_mean(out, 3, w), torch.full_like(means, 100.0))


def test_bounds_and_dew_point_hold_on_adversarial_outputs_with_conservation(fine, tmp_path):
    rules = ["0<=r<=100", "d2m<=t2m"]
    m = fine[HUMID].downscale.fit(var=HUMID, constraint="add", consistency=rules, checkpoint=tmp_path / "m.pt",
                                  **TRAIN)
    lr = fine[HUMID].downscale.coarsen(F)
    bare = xds.load(tmp_path / "m.pt")
    bare.module.consistency.rules = []  # the same network without the rules: must break them, or the test is void
    for model in (m, bare):
        scramble(model)
    raw, sr = xds.predict(lr, model=bare), xds.predict(lr, model=m)
    assert float(raw["r"].max()) > 100 and float(raw["r"].min()) < 0 and bool((raw["d2m"] > raw["t2m"]).any())
    assert float(sr["r"].min()) >= 0 and float(sr["r"].max()) <= 100
    assert bool((sr["d2m"] <= sr["t2m"]).all())
    for v in HUMID:  # each target still conserves its coarse field, as closely as the add layer alone does in float32
        assert_conserves(sr[v], lr[v], F, rtol=2 * conservation_error(raw[v], lr[v]) + 1e-6)
    np.testing.assert_array_equal(sr["t2m"].values, raw["t2m"].values)  # the reference of d2m<=t2m is untouched


def test_rules_round_trip_through_the_checkpoint(fine, tmp_path):
    rules = ["0<=r<=100", "d2m<=t2m"]
    m = fine[HUMID].downscale.fit(var=HUMID, constraint={"t2m": "add", "d2m": "add", "r": "scadd"},
                                  consistency=rules, checkpoint=tmp_path / "m.pt", **TRAIN)
    scramble(m)
    m.save(tmp_path / "m.pt")
    loaded = xds.load(tmp_path / "m.pt")
    assert loaded.module.consistency.specs() == rules and loaded.meta["multi_target"]["consistency"] == rules
    lr = fine[HUMID].downscale.coarsen(F)
    a, b = xds.predict(lr, model=m), xds.predict(lr, model=loaded)
    for v in HUMID:
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert float(b["r"].max()) <= 100 and bool((b["d2m"] <= b["t2m"]).all())


@pytest.mark.parametrize("keep", ["components", "speed"])
def test_wind_speed_is_the_magnitude_and_the_kept_side_is_conserved(fine, keep, tmp_path):
    rule = "ws=hypot(u10,v10)" if keep == "components" else "hypot(u10,v10)=ws"
    m = fine[WIND].downscale.fit(var=WIND, constraint="add", consistency=[rule], checkpoint=tmp_path / "m.pt", **TRAIN)
    bare = xds.load(tmp_path / "m.pt")
    bare.module.consistency.rules = []
    for model in (m, bare):
        scramble(model)
    lr = fine[WIND].downscale.coarsen(F)
    raw, sr = xds.predict(lr, model=bare), xds.predict(lr, model=m)
    assert float(np.abs(raw["ws"] - np.hypot(raw["u10"], raw["v10"])).max()) > 1  # void test otherwise
    np.testing.assert_allclose(sr["ws"].values, np.hypot(sr["u10"].values, sr["v10"].values), rtol=1e-5, atol=1e-4)
    for v in ["u10", "v10"] if keep == "components" else ["ws"]:
        assert_conserves(sr[v], lr[v], F, rtol=2 * conservation_error(raw[v], lr[v]) + 1e-6)
    if keep == "speed":  # the components keep their direction (where the speed is not clipped to 0)
        moving = (sr["ws"] > 1e-3).values
        assert moving.mean() > 0.3
        turn = np.angle(np.exp(1j * (np.arctan2(sr["v10"], sr["u10"]) - np.arctan2(raw["v10"], raw["u10"]))))
        assert float(np.abs(np.asarray(turn)[moving]).max()) < 1e-4
    assert float(sr["ws"].min()) >= 0


def test_gradients_stay_finite_at_calm_wind_and_on_the_bounds():
    layer = Consistency(["0<=r<=100", "ws=hypot(u,v)"], ["r", "u", "v", "ws"], 2)
    y = torch.zeros(1, 4, 4, 4, requires_grad=True)  # calm wind, r on its lower bound
    layer(y).sum().backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all())
    speed = Consistency(["hypot(u,v)=ws"], ["u", "v", "ws"], 2)
    out = speed(torch.cat([torch.zeros(1, 2, 4, 4), torch.full((1, 1, 4, 4), 3.0)], dim=1))
    assert torch.allclose(out[:, 0], torch.full((1, 4, 4), 3.0)) and float(out[:, 1].abs().max()) == 0


def test_cli_fit_takes_repeated_rules(fine, tmp_path, capsys):
    from xdownscale.cli import main

    fine[HUMID].to_netcdf(tmp_path / "hr.nc")
    rules = ["0<=r<=100", "d2m<=t2m"]
    rc = main(["fit", str(tmp_path / "hr.nc"), "--var", "t2m,d2m,r", "--model", "cnn", "--factor", str(F),
               "--constraint", "add", *[a for r in rules for a in ("--consistency", r)], "--epochs", "1",
               "--patch-size", "8", "--samples-per-epoch", "2", "--width", "8", "--n-blocks", "1", "-q",
               "--out", str(tmp_path / "m.pt")])
    assert rc == 0, capsys.readouterr().err
    assert xds.load(tmp_path / "m.pt").module.consistency.specs() == rules


def test_gan_members_keep_the_rules(fine):
    """The stochastic multi-target generator passes the rules to its MultiTargetNet base."""
    m = fine[HUMID].downscale.fit(var=HUMID, constraint="add", consistency=["0<=r<=100", "d2m<=t2m"],
                                  **{**TRAIN, "model": "gan"})
    scramble(m)
    sr = xds.predict(fine[HUMID].downscale.coarsen(F), model=m)
    assert float(sr["r"].min()) >= 0 and float(sr["r"].max()) <= 100 and bool((sr["d2m"] <= sr["t2m"]).all())


def test_temporal_models_keep_the_rules(fine):
    """convgru's multi-target wrapper applies the rules in its heads, as the spatial one does."""
    train = {**TRAIN, "model": "convgru", "channels": 4, "residual_blocks": 1, "window": 2}
    for key in ("width", "n_blocks"):
        train.pop(key)
    m = fine[HUMID].downscale.fit(var=HUMID, constraint="add", consistency=["0<=r<=100", "d2m<=t2m"], **train)
    assert [str(r) for r in m.module.consistency.rules] == ["0<=r<=100", "d2m<=t2m"]
    scramble(m, 3.0)
    lr = fine[HUMID].downscale.coarsen(F)
    rules, m.module.consistency.rules = m.module.consistency.rules, []
    raw = xds.predict(lr, model=m)  # without the rules the scrambled body breaks them, or the test is void
    assert float(raw["r"].max()) > 100 or float(raw["r"].min()) < 0
    m.module.consistency.rules = rules
    sr = xds.predict(lr, model=m)
    assert float(sr["r"].min()) >= 0 and float(sr["r"].max()) <= 100 and bool((sr["d2m"] <= sr["t2m"]).all())


@pytest.mark.parametrize("model,options", [("diffusion", dict(base_channels=4, channel_mults=(1,), patch=8,
                                                              timesteps=10, sample_steps=2)),
                                           ("liif", dict(width=4, n_blocks=1, hidden=8, queries=32, lr_patch=4))])
def test_families_without_the_layer_refuse_rules_in_one_line(fine, model, options):
    """Rules the model would not apply are refused, never recorded and silently ignored."""
    train = {k: v for k, v in TRAIN.items() if k not in ("model", "width", "n_blocks", "factor")}
    with pytest.raises(DataError, match=rf"consistency= .*{'diffusion' if model == 'diffusion' else 'liif'}.*"
                                        r"drop consistency="):
        fine[HUMID].downscale.fit(var=HUMID, model=model, factor=None if model == "liif" else F,
                                  consistency=["d2m<=t2m"], **train, **options)


def test_a_coarse_input_that_breaks_a_rule_is_named_in_a_warning(fine, tmp_path):
    """There the rule wins over conservation: the user is told where and by how much, once per rule."""
    m = fine[HUMID].downscale.fit(var=HUMID, constraint="add", consistency=["0<=r<=100", "d2m<=t2m"],
                                  checkpoint=tmp_path / "m.pt", **TRAIN)
    lr = fine[HUMID].downscale.coarsen(F).load()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean input: no warning at all
        xds.predict(lr, model=m)
    bad = lr.copy(deep=True)
    bad["r"][0, 0, 0] = 101.5
    bad["d2m"][1, 2, 3] = bad["t2m"][1, 2, 3] + 0.25
    with pytest.warns(UserWarning) as caught:
        xds.predict(bad, model=m)
    lines = [str(w.message) for w in caught if "consistency rule" in str(w.message)]
    assert len(lines) == 2
    assert "'0<=r<=100': 1 of" in lines[0] and "101.5" in lines[0]
    assert "'d2m<=t2m': 1 of" in lines[1] and "0.25" in lines[1]
