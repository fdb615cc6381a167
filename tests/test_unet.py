"""MAUNet / MAUNet-Light bodies: shapes, receptive radius, tiling, training on a biased real pair,
conservation, checkpoints, and the regridding of offset (point-nested) coarse grids."""
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.data.pairs import make_pair
from xdownscale.errors import GridError
from xdownscale.models import DownscalingNet, create_model
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(epochs=3, batch_size=8, patch_size=32, width=8, depth=2, progress=False, seed=0)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["maunet", "maunet-light"])
@pytest.mark.parametrize("factor,shape", [(2, (7, 11)), (3, (5, 9)), (4, (16, 12))])
def test_any_input_size_gives_the_fine_shape(name, factor, shape):
    net = DownscalingNet(name, factor=factor, in_channels=3).eval()
    x = torch.randn(2, 3, *shape)
    y = net(x)
    assert y.shape == (2, 1, shape[0] * factor, shape[1] * factor)
    assert torch.isfinite(y).all()


def test_light_has_at_most_40_percent_of_the_teacher_parameters():
    teacher, student = create_model("maunet", factor=4), create_model("maunet-light", factor=4)
    assert n_params(student) <= 0.4 * n_params(teacher)
    # the encoder combines max- and average-pooling: the level below sees twice the channels
    assert teacher.encoders[1].convs[0].in_channels == 2 * teacher.encoders[0].convs[0].out_channels


@pytest.mark.parametrize("name", ["maunet", "maunet-light"])
def test_receptive_radius_bounds_the_influence_of_an_input_cell(name):
    torch.manual_seed(0)
    body = create_model(name, factor=2).eval()
    for p in body.parameters():  # the tail starts at zero: give every weight a value
        p.data.normal_(0, 0.2)
    r = body.receptive_radius
    n = 2 * r + 12
    x = torch.randn(1, 1, n, n)
    c = n // 2
    with torch.no_grad():
        base = body(x)[0, 0, 2 * c: 2 * c + 2, 2 * c: 2 * c + 2]
        far, near = x.clone(), x.clone()
        far[..., c, c + r + 1] += 10.0
        near[..., c, c + 1] += 10.0
        assert torch.allclose(body(far)[0, 0, 2 * c: 2 * c + 2, 2 * c: 2 * c + 2], base, atol=1e-6)
        assert not torch.allclose(body(near)[0, 0, 2 * c: 2 * c + 2, 2 * c: 2 * c + 2], base, atol=1e-6)


def test_dropout_is_off_at_inference():
    net = DownscalingNet("maunet", factor=2, dropout=0.5).eval()
    for p in net.body.tail.parameters():
        p.data.fill_(0.1)
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(net(x), net(x))


@pytest.fixture(scope="module")
def biased_pair():
    hr = synthetic_field("t2m", times=12, ny=32, nx=32, seed=3)
    lr = xds.coarsen(hr, 4)
    return hr, (lr + 2.0 + 0.2 * (lr - float(lr.mean()))).rename(hr.name).assign_attrs(lr.attrs)


def test_maunet_corrects_a_bias_of_a_real_pair_and_round_trips(biased_pair, tmp_path):
    hr, lr = biased_pair
    m = xds.fit(hr, lr=lr, model="maunet", checkpoint=tmp_path / "m.pt", learning_rate=3e-3,
                samples_per_epoch=64, **{**TINY, "epochs": 5})
    pred = xds.predict(lr, model=m, like=hr).compute()
    bic = xds.predict(lr, model="bicubic", factor=4, like=hr).compute()
    assert float(xds.evaluate(pred, hr)["rmse"]) < 0.5 * float(xds.evaluate(bic, hr)["rmse"])
    again = xds.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(xds.predict(lr, model=again, like=hr).values, pred.values)
    assert again.model_name == "maunet"


@pytest.mark.parametrize("name", ["maunet", "maunet-light"])
def test_hard_constraint_conserves_and_tiles_match_the_whole_field(name, tmp_path):
    hr = synthetic_field("tcwv", times=3, ny=48, nx=64, seed=2)
    m = xds.fit(hr, model=name, factor=4, constraint="softmax", checkpoint=tmp_path / "c.pt",
                **{**TINY, "epochs": 1, "width": 4})
    lr = xds.coarsen(hr, 4)
    whole = xds.predict(lr, model=m).compute()
    assert_conserves(whole, lr, 4, rtol=1e-5)
    tiled = xds.predict(lr.chunk({"lat": 6, "lon": 8}), model=m).compute()
    np.testing.assert_allclose(tiled.values, whole.values, rtol=0, atol=1e-4 * float(abs(whole).max()))


def test_a_misspelt_maunet_option_is_named():
    hr = synthetic_field("t2m", times=2, ny=16, nx=16)
    with pytest.raises(xds.DataError, match="dropout"):
        xds.fit(hr, model="maunet", factor=2, dropuot=0.2, progress=False)


def _linear(offset_cells: float = 0.0):
    """A field linear in lat/lon (its cell means equal its centre values) on a 0.025 deg grid,
    and a 0.1 deg field sampled at every 4th fine point: point-nested, like AROME/ARPEGE."""
    hr = synthetic_field("t2m", times=2, ny=32, nx=48, lat=(50.0, 50.0 - 31 * 0.025), lon=(0.0, 47 * 0.025))
    lin = 280.0 + 8.0 * (hr.lat - 49.6) - 5.0 * (hr.lon - 0.6) + 0.5 * xr.DataArray(np.arange(2.0), dims="time")
    hr = hr.copy(data=lin.transpose(*hr.dims).values.astype("float32"))
    return hr, hr.isel(lat=slice(0, None, 4), lon=slice(0, None, 4))


def test_point_nested_coarse_grid_is_regridded_conservatively_with_a_warning():
    hr, lr = _linear()
    with pytest.raises(GridError, match="trim=True"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_pair(hr, lr=lr)
    with pytest.warns(UserWarning, match=r"offset by \(-0.375, -0.375\) coarse cells"):
        pair = make_pair(hr, lr=lr, trim=True)
    assert pair.lr.shape == (2, 7, 11) and pair.hr.shape == (2, 28, 44)
    nested = xds.coarsen(pair.hr, 4)
    np.testing.assert_allclose(pair.lr.values, nested.values, atol=2e-3)
    np.testing.assert_allclose(pair.lr.lat.values, nested.lat.values, atol=1e-9)


def test_fit_on_an_offset_real_pair(tmp_path):
    hr, lr = _linear()
    with pytest.warns(UserWarning, match="regridding it conservatively"):
        m = xds.fit(hr, lr=lr, model="maunet-light", trim=True, checkpoint=tmp_path / "o.pt",
                    **{**TINY, "epochs": 1, "patch_size": 16})
    assert m.meta["grid"]["fine_shape"] == [28, 44]
    pair_nested = make_pair(hr.isel(lat=slice(0, 28), lon=slice(0, 44)),
                            lr=xds.coarsen(hr.isel(lat=slice(0, 28), lon=slice(0, 44)), 4))
    assert pair_nested.lr.shape == (2, 7, 11)  # a nested pair passes untouched, no warning


@pytest.mark.parametrize("name, rate", [("maunet", 2e-3), ("maunet-light", 1e-3), ("cnn", 1e-3)])
def test_a_model_trains_at_its_own_default_learning_rate_unless_one_is_given(name, rate, tmp_path):
    """maunet's registration asks for 2e-3; the models of its family without one keep the shared 1e-3."""
    hr = synthetic_field("t2m", times=3, ny=16, nx=16, seed=1)
    opts = dict(factor=4, max_updates=1, batch_size=2, width=4, progress=False)
    m = xds.fit(hr, model=name, checkpoint=tmp_path / "a.pt", **opts)
    assert m.meta["training"]["config"]["learning_rate"] == pytest.approx(rate)
    m = xds.fit(hr, model=name, checkpoint=tmp_path / "b.pt", learning_rate=5e-4, **opts)
    assert m.meta["training"]["config"]["learning_rate"] == pytest.approx(5e-4)
