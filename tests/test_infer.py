"""Tiled inference: chunked equals whole-field, output chunks aligned, laziness, halos."""
import warnings

import dask.array as dsa
import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.engine.infer import _min_chunks
from xdownscale.prediction import baseline
from xdownscale.testing import synthetic_field


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    from xdownscale.downscaler import Downscaler

    # an untrained but non-trivial network: random weights everywhere (the tail too)
    ds = baseline("bicubic", 4)
    net = xds.models.DownscalingNet("cnn", 4, constraint="softmax", mean=20.0, std=5.0, width=8, n_blocks=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ds.module = net
    ds.meta = dict(ds.meta, network=dict(ds.meta["network"], model="cnn", constraint="softmax", skip="bicubic",
                                         mean=20.0, std=5.0, width=8, n_blocks=2),
                   normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
    return Downscaler(net, ds.meta)


@pytest.fixture(scope="module")
def lr():
    return synthetic_field("tcwv", times=3, ny=96, nx=80, seed=3).downscale.coarsen(4)


@pytest.mark.parametrize("chunks", [{"lat": 7, "lon": 9}, {"lat": 13, "lon": 20}, {"lat": 24, "lon": 5}])
def test_chunked_prediction_equals_whole_field(model, lr, chunks):
    whole = lr.downscale.predict(model=model, chunks={"lat": -1, "lon": -1}).values
    tiled = lr.chunk(chunks).downscale.predict(model=model)
    assert tiled.chunks is not None
    np.testing.assert_allclose(tiled.values, whole, rtol=1e-5, atol=0)


def test_a_halo_below_the_receptive_radius_shows_seams(model, lr):
    whole = lr.downscale.predict(model=model, chunks={"lat": -1, "lon": -1}).values
    with pytest.warns(UserWarning, match="receptive radius"):
        seams = lr.chunk({"lat": 8, "lon": 8}).downscale.predict(model=model, halo=1).values
    assert np.abs(seams - whole).max() / np.abs(whole).max() > 1e-4


def test_output_chunks_are_input_chunks_times_factor(model, lr):
    sr = lr.chunk({"time": 1, "lat": 12, "lon": 10}).downscale.predict(model=model)
    assert sr.chunks == ((1, 1, 1), tuple(c * 4 for c in (12, 12)), tuple(c * 4 for c in (10, 10)))


def test_prediction_is_lazy_until_computed(model, lr):
    """Building the prediction computes no chunk of the input (nor any other task); .compute() does."""
    from dask.callbacks import Callback

    computed = []

    def source(x, block_info=None):
        computed.append(block_info[None]["chunk-location"])
        return x

    data = dsa.map_blocks(source, lr.chunk({"lat": 12}).data, dtype=lr.dtype, meta=np.array((), lr.dtype))
    lazy_lr = lr.copy(data=data)
    tasks = []
    with Callback(pretask=lambda key, dsk, state: tasks.append(key)):
        sr = lazy_lr.downscale.predict(model=model)
        assert isinstance(sr.data, dsa.Array)
        _ = (sr.shape, sr.chunks, sr.attrs, sr.coords["lat"].values, sr.coords["lon"].values)
        assert computed == [] and tasks == [], "building the prediction computed input chunks"
        out = sr.compute()
    n_chunks = int(np.prod(data.numblocks))
    assert len(set(computed)) == n_chunks  # every input chunk, once .compute() runs
    assert np.isfinite(out.values).all() and out.shape == (3, 96, 80)


def test_min_chunks_merges_chunks_smaller_than_the_halo():
    assert _min_chunks((5, 5, 5, 2), 6) == (10, 7)
    assert _min_chunks((10, 10, 3), 4) == (10, 13)
    assert _min_chunks((3,), 8) == (3,)


def test_nan_cells_stay_nan_and_do_not_spread(lr):
    lr = lr.copy()
    lr[0, 5, 5] = np.nan
    sr = lr.downscale.predict(model="bicubic", factor=4)
    block = sr.isel(time=0, lat=slice(20, 24), lon=slice(20, 24)).values
    assert np.isnan(block).all()
    assert np.isfinite(sr.isel(time=0).values).sum() == sr.isel(time=0).size - 16


def test_all_nan_input_is_refused(lr):
    with pytest.raises(xds.DataError, match="NaN everywhere"):
        (lr * np.nan).downscale.predict(model="bicubic", factor=4)


def test_global_grid_has_no_seam_at_the_date_line(global_lr):
    """On a grid that closes the circle in longitude the halo wraps round: shifting the input
    east shifts the prediction east (no edge effect at 0/360), tile by tile."""
    import xdownscale as xds

    lr = global_lr
    sr = xds.predict(lr, model="bicubic", factor=4, constraint="add", chunks={"lat": 8, "lon": 8}).values
    shifted = lr.roll(lon=8, roll_coords=False)
    sr_shifted = xds.predict(shifted, model="bicubic", factor=4, constraint="add", chunks={"lat": 8, "lon": 8}).values
    np.testing.assert_allclose(sr_shifted, np.roll(sr, 32, axis=-1), atol=1e-3)
    # a regional grid of the same size keeps the edge-replicating halo
    regional = lr.assign_coords(lon=lr["lon"].values / 4)
    sr_reg = xds.predict(regional, model="bicubic", factor=4, constraint="add").values
    assert not np.allclose(sr_reg[:, :4], sr[:, :4], atol=1e-3)


def test_missing_cells_do_not_drag_neighbours_towards_a_fill_value():
    """A land-only product (NaN over sea): cells next to the coast stay within the valid range."""
    import xdownscale as xds

    lr = synthetic_field("t2m", times=2, ny=12, nx=16, seed=4)
    lr = lr.where(lr["lon"] < lr["lon"][10])  # the eastern columns are "sea"
    sr = xds.predict(lr, model="bicubic", factor=4).values
    valid = lr.values[np.isfinite(lr.values)]
    finite = sr[np.isfinite(sr)]
    assert np.isnan(sr[..., -4:]).all()
    assert finite.min() > valid.min() - 2 and finite.max() < valid.max() + 2


# ----------------------------------------------------------------------------- halo = receptive radius, exactly
def _random_net(name, **config):
    """An untrained ``name`` network with random weights everywhere (so every path carries signal).

    With these weights the tiled error of a halo one cell short of the true radius is >= 1e-4 of the
    field's largest value (espcn: 1.4e-3, cnn: 1.7e-4), and a halo of the true radius leaves <= 5e-7."""
    from xdownscale.downscaler import Downscaler

    torch.manual_seed(0)
    meta = baseline("bicubic", 4).meta
    net = xds.models.DownscalingNet(name, 4, constraint="softmax", mean=20.0, std=5.0, **config)
    for p in net.parameters():  # std 0.1: the outermost ring of the receptive field stays well above round-off
        torch.nn.init.normal_(p, std=0.1)
    meta = dict(meta, network=dict(meta["network"], model=name, constraint="softmax", skip="bicubic",
                                   mean=20.0, std=5.0, **config),
                normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
    return Downscaler(net, meta)


@pytest.fixture(scope="module")
def halo_lr():
    return synthetic_field("tcwv", times=1, ny=128, nx=128, seed=5).downscale.coarsen(4)  # 32 x 32 coarse


ROUND_OFF = 1e-6  # relative to the largest value: float32 tiles of different sizes differ by a few ulps


def _seam(lr, net, **kw):
    whole = lr.downscale.predict(model=net, chunks={"lat": -1, "lon": -1}).values.astype("float64")
    tiled = lr.chunk({"lat": 16, "lon": 16}).downscale.predict(model=net, **kw).values
    return float(np.abs(tiled - whole).max() / np.abs(whole).max())


NETS = [pytest.param("espcn", {"width": 8, "n_blocks": 2}, id="espcn"),
        pytest.param("cnn", {"width": 8, "n_blocks": 2}, id="cnn")]


@pytest.mark.parametrize("name,config", NETS[:1] + [pytest.param("cnn", {"width": 8, "n_blocks": 2}, id="cnn")])
def test_default_halo_makes_tiled_equal_whole_field_to_round_off(halo_lr, name, config):
    net = _random_net(name, **config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the default halo must not warn
        assert _seam(halo_lr, net) <= ROUND_OFF


@pytest.mark.parametrize("name,config", NETS)
def test_short_halo_warning_fires_exactly_when_the_halo_is_too_short(halo_lr, name, config):
    """For every halo from 0 to radius + 1: a warning if and only if the tiles differ from the whole field
    by more than round-off."""
    net = _random_net(name, **config)
    radius = net.module.receptive_radius
    seen = []
    for halo in range(radius + 2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seam = _seam(halo_lr, net, halo=halo)
        warned = any("receptive radius" in str(w.message) for w in caught)
        seen.append((halo, warned, seam))
    assert all(warned == (seam > ROUND_OFF) for _, warned, seam in seen), seen
