"""Every registered model, no skips: fit a few updates -> checkpoint round trip -> predict ->
conservation under every constraint its family supports.

A new model (or family) needs one row in ``ROWS``; ``test_every_registered_model_has_a_row``
fails until it has one.
"""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.testing import assert_conserves, synthetic_field

FACTOR = 4
HARD = ("add", "mult", "softmax", "scadd")
TRAINED_WITH = ("none", "soft") + HARD  # every constraint layer of nn.constraints
TRAIN = dict(epochs=1, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False, seed=0)

# model -> (fit options, predict options, constraints to train with or, for baselines and liif,
# to ask of predict). Every hard constraint must conserve the coarse input to float round-off.
ROWS = {
    "cnn": (dict(width=8, n_blocks=1), {}, TRAINED_WITH),
    "espcn": (dict(width=8, n_blocks=1), {}, TRAINED_WITH),
    "maunet": (dict(width=4, depth=1), {}, TRAINED_WITH),
    "maunet-light": (dict(width=4, depth=1), {}, TRAINED_WITH),
    "convgru": (dict(channels=4, residual_blocks=1, window=2), {}, TRAINED_WITH),
    "flowconvgru": (dict(channels=4, residual_blocks=1, window=2, flow_channels=4, time_factor=2), {},
                    TRAINED_WITH),
    "gan": (dict(width=8, n_blocks=1, noise_channels=2, content_members=2, val_members=2), dict(members=2),
            TRAINED_WITH),
    "rnngan": (dict(width=8, n_blocks=1, noise_channels=2, window=2, content_members=2, val_members=2),
               dict(members=2), TRAINED_WITH),
    "diffusion": (dict(base_channels=4, channel_mults=(1,), patch=16, timesteps=10, sample_steps=2),
                  dict(members=2, steps=2), ("none",) + HARD),
    "liif": (dict(width=4, n_blocks=1, hidden=8, queries=32, lr_patch=4, scales=(2.0, 4.0)), dict(factor=FACTOR),
             ("none",) + HARD),
    "bicubic": (None, {}, ("none",) + HARD),
    "bilinear": (None, {}, ("none",) + HARD),
    "nearest": (None, {}, ("none",) + HARD),
    "conservative": (None, {}, ("none",) + HARD),
}
CASES = [(m, c) for m, (_, _, cs) in ROWS.items() for c in cs]


@pytest.fixture(scope="module")
def data():
    hr = synthetic_field("tcwv", times=6, ny=16, nx=16, seed=3)  # positive, so mult/softmax apply
    return hr, xds.coarsen(hr, FACTOR)


pytestmark = pytest.mark.usefixtures("own_store")


def test_every_registered_model_has_a_row():
    assert sorted(ROWS) == sorted(xds.list_models())


def _members(out: xr.DataArray) -> list[xr.DataArray]:
    return [out.isel(member=k) for k in range(out.sizes["member"])] if "member" in out.dims else [out]


@pytest.mark.parametrize("model,constraint", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_fit_checkpoint_predict_conserve(model, constraint, data, tmp_path):
    hr, lr = data
    fit_options, predict_options, _ = ROWS[model]
    family_fixes_constraint_at_predict = fit_options is None or model == "liif"
    if fit_options is None:  # a baseline: nothing to train
        m = model
        kwargs = dict(factor=FACTOR, constraint=constraint)
    else:
        train_constraint = "none" if model == "liif" else constraint
        factor = None if model == "liif" else FACTOR
        fitted = xds.fit(hr, model=model, factor=factor, constraint=train_constraint,
                         checkpoint=tmp_path / "m.pt", **TRAIN, **fit_options)
        m = xds.load(tmp_path / "m.pt")  # the round trip: everything predict needs is in the file
        assert m.model_name == model and m.checkpoint_hash == fitted.checkpoint_hash
        assert m.config == fitted.config
        for (ka, va), (kb, vb) in zip(fitted.module.state_dict().items(), m.module.state_dict().items()):
            assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka
        kwargs = dict(constraint=constraint) if family_fixes_constraint_at_predict else {}
    out = xds.predict(lr, model=m, **kwargs, **predict_options)
    out = out.compute() if hasattr(out, "compute") else out
    assert out.sizes["lat"] == hr.sizes["lat"] and out.sizes["lon"] == hr.sizes["lon"]
    assert "time" in out.dims and out.sizes["time"] == hr.sizes["time"]
    for member in _members(out):
        assert np.isfinite(member.values).all()
        if constraint in HARD:
            assert_conserves(member, lr, FACTOR, rtol=1e-5)
    if constraint in ("mult", "softmax"):
        assert float(out.min()) >= 0.0  # positive constraints never go negative
    if fit_options is not None and not family_fixes_constraint_at_predict:
        assert m.constraint == constraint
        again = xds.predict(lr, model=tmp_path / "m.pt", **predict_options)  # by path, loaded once
        np.testing.assert_allclose(np.asarray(again.values), np.asarray(out.values), rtol=1e-6, atol=1e-6)


# several targets in one network (issue #15): every trainable family does it (a member of a
# generator is one joint draw of every target; liif takes its constraints at predict)
TRAINABLE = [m for m, (fit_options, _, _) in ROWS.items() if fit_options is not None]


@pytest.fixture(scope="module")
def arpege_2m(data_dir):
    """Real ARPEGE 0.1 deg 2 m temperature (K) and relative humidity (%), 16 x 16 cells, 6 hours."""
    ds = xds.open_catalog("meteonet-arpege-2m")[["t2m", "r"]]
    keep = ("time", "latitude", "longitude")
    ds = ds.drop_vars([c for c in ds.coords if c not in keep])
    return ds.isel(time=slice(0, 6), latitude=slice(8, 24), longitude=slice(8, 24)).load()


def two_targets(source: str, data, arpege_2m_request) -> tuple[xr.Dataset, dict]:
    """(fine Dataset of two targets, a constraint by target): synthetic tcwv + t2m, or the real
    ARPEGE t2m + relative humidity (positive, so softmax applies)."""
    if source == "synthetic":
        fine = xr.Dataset({"tcwv": data[0], "t2m": synthetic_field("t2m", times=6, ny=16, nx=16, seed=4)})
        return fine, {"tcwv": "softmax", "t2m": "add"}
    return arpege_2m_request.getfixturevalue("arpege_2m"), {"r": "softmax", "t2m": "add"}


@pytest.mark.parametrize("source", ["synthetic", pytest.param("meteonet", marks=pytest.mark.realdata)])
@pytest.mark.parametrize("model", TRAINABLE)
def test_two_targets_conserve_each(model, source, data, tmp_path, request):
    """Every trainable family trains and predicts a two-target Dataset, on synthetic and on real
    fields, each member of each target conserving its own coarse field."""
    fine, constraint = two_targets(source, data, request)
    names = sorted(constraint)
    positive = next(v for v, c in constraint.items() if c == "softmax")
    fit_options, predict_options, _ = ROWS[model]
    at_predict = model == "liif"  # trained scale-free: the constraints are asked of predict
    xds.fit(fine, model=model, factor=None if at_predict else FACTOR, var=names,
            constraint="none" if at_predict else constraint, checkpoint=tmp_path / "m.pt", **TRAIN, **fit_options)
    lr = fine.downscale.coarsen(FACTOR)
    asked = dict(constraint=constraint) if at_predict else {}
    out = xds.predict(lr, model=tmp_path / "m.pt", **asked, **predict_options).compute()
    assert sorted(out.data_vars) == names
    for name in names:
        for member in _members(out[name]):  # every member of every target conserves its own coarse field
            assert np.isfinite(member.values).all() and member.shape == fine[name].shape
            assert_conserves(member, lr[name], FACTOR, rtol=1e-5)
        assert out[name].attrs.get("units") == fine[name].attrs.get("units")  # its own CF metadata
    assert float(out[positive].min()) >= 0.0
