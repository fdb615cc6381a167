"""Static covariates (orography, land-sea mask) for ``rnngan`` with several targets or predictors.

Pinned public API:
    m = xds.fit(hr_ds, model="rnngan", var=["t2m", "tp"], covariates=static_ds)
    m = xds.fit(model="rnngan", lr=coarse_ds, hr=fine_ds, var="tp", predictors=["tp", "q"], covariates=static_ds)
    xds.predict(coarse_ds, model=m, members=N, seed=s, covariates=static_ds)

As for the single-target ``rnngan``, the folded covariates follow the input fields and the noise
in every frame of a training sequence, and come last in the packed prediction window
(:meth:`xdownscale.models.rnngan.MultiTargetRecurrentNet.unpack`).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.models.rnngan import MultiTargetRecurrentNet
from xdownscale.testing import another_model, assert_conserves, synthetic_pair
from xdownscale.testing import synthetic_statics as statics

F = 4
TRAIN = dict(batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False, seed=0, max_updates=3,
             width=8, n_blocks=1, noise_channels=2, window=2, content_members=2, val_members=2)
CONSTRAINT = {"t2m": "add", "tp": "softmax"}

pytestmark = pytest.mark.usefixtures("own_store")


def stirred(path, seed: int = 0):
    """The model saved at ``path``, its generator's weights stirred (the last layer starts at zero,
    so a briefly trained generator barely shows its inputs)."""
    m = xds.Downscaler.load(path)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.module.body.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return m


@pytest.fixture(scope="module")
def fine():
    return synthetic_pair()


@pytest.fixture(scope="module")
def cov(fine):
    return statics(fine["t2m"])


@pytest.fixture(scope="module")
def trained(fine, cov, tmp_path_factory):
    """A tiny two-target rnngan trained with covariates, saved."""
    d = tmp_path_factory.mktemp("rnngan_cov")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDOWNSCALE_HOME", str(d / "store"))
        xds.fit(fine, model="rnngan", factor=F, var=["t2m", "tp"], constraint=CONSTRAINT, covariates=cov,
                checkpoint=d / "g.pt", **TRAIN)
    return d / "g.pt"


def test_every_member_conserves_per_target_with_covariates(trained, fine, cov):
    m = stirred(trained)
    assert m.meta["covariates"] == ["orog", "lsm"]
    assert m.config["in_channels"] == 2 + 2 * F * F and m.module.data_channels == 2 + 2 * F * F
    lr = fine.downscale.coarsen(F)
    ens = xds.predict(lr, model=m, members=2, seed=3, covariates=cov).compute()
    for v in ("t2m", "tp"):
        assert ens[v].shape == (2,) + fine[v].shape
        for k in range(2):
            assert_conserves(ens[v].isel(member=k), lr[v], F, rtol=1e-5)
        assert float(abs(ens[v].isel(member=0) - ens[v].isel(member=1)).max()) > 0
    assert float(ens["tp"].min()) >= 0


@pytest.mark.filterwarnings("ignore:input .* has grid spacing")
def test_tiled_prediction_with_covariates_matches_the_whole_field(trained):
    m = stirred(trained, seed=1)
    halo = m.module.receptive_radius
    side = 2 * halo + 8  # two tiles of halo + 4 and more
    big = synthetic_pair(times=3, ny=F * side, nx=F * side)
    lr, static = big.downscale.coarsen(F), statics(big["t2m"], seed=6)
    # this synthetic domain has another grid spacing than the training one; the tiling is what is tested
    kw = dict(model=m, members=2, seed=3, covariates=static, allow_other_variable=True)
    whole = xds.predict(lr, **kw).compute()
    tiled = xds.predict(lr, chunks=halo + 4, **kw)
    assert tiled["t2m"].data.npartitions > 1
    tiled = tiled.compute()
    shifted = xds.predict(lr, **{**kw, "covariates": static.roll(lat=3, lon=5)}).compute()
    for v in ("t2m", "tp"):
        scale = float(abs(whole[v]).max())
        np.testing.assert_allclose(tiled[v].values, whole[v].values, rtol=0, atol=1e-5 * scale)
        for k in range(2):
            assert_conserves(tiled[v].isel(member=k), lr[v], F, rtol=1e-5)
        assert float(abs(shifted[v] - whole[v]).max()) > 1e-3  # the covariates matter here, so the tiles test them


def test_predict_without_the_covariates_is_refused_in_one_line(trained, fine, cov):
    lr = fine.downscale.coarsen(F)
    for model in (trained, stirred(trained)):  # from the checkpoint's path and loaded
        with pytest.raises(DataError, match=r"trained with covariates \['lsm', 'orog'\].*covariates=ds_static") as e:
            xds.predict(lr, model=model, members=2, seed=0)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"covariate 'lsm' is missing"):
        xds.predict(lr, model=trained, members=2, seed=0, covariates=cov[["orog"]])


def test_another_orography_changes_the_members(trained, fine, cov):
    m, lr = stirred(trained), fine.downscale.coarsen(F)
    one = xds.predict(lr, model=m, members=2, seed=1, covariates=cov).compute()
    other = xds.predict(lr, model=m, members=2, seed=1, covariates=statics(fine["t2m"], seed=9)).compute()
    for v in ("t2m", "tp"):
        assert float(abs(other[v] - one[v]).max()) > 1e-3  # the covariates reach every target
        for k in range(2):
            assert_conserves(other[v].isel(member=k), lr[v], F, rtol=1e-5)


def test_checkpoint_round_trip_gives_identical_members(fine, cov, tmp_path):
    m = xds.fit(fine, model="rnngan", factor=F, var=["t2m", "tp"], constraint=CONSTRAINT, covariates=cov,
                checkpoint=tmp_path / "g.pt", **TRAIN)
    lr = fine.downscale.coarsen(F)
    a = xds.predict(lr, model=m, members=2, seed=7, covariates=cov).compute()
    loaded = xds.Downscaler.load(tmp_path / "g.pt")
    assert loaded.meta["normalization"]["covariates"] == m.meta["normalization"]["covariates"]
    b = xds.predict(lr, model=loaded, members=2, seed=7, covariates=cov).compute()
    for v in ("t2m", "tp"):
        np.testing.assert_array_equal(b[v].values, a[v].values)


def test_one_target_driven_by_predictors_takes_covariates(fine, cov):
    coarse = another_model(fine, F)
    m = xds.fit(model="rnngan", lr=coarse, hr=fine, var="tp", predictors=["tp", "q"], constraint="softmax",
                covariates=cov, **TRAIN)
    assert m.meta["predictors"] == ["tp", "q"] and m.meta["covariates"] == ["orog", "lsm"]
    ens = xds.predict(coarse, model=m, members=2, seed=0, covariates=cov).compute()
    for k in range(2):
        assert_conserves(ens["tp"].isel(member=k), coarse["tp"], F, rtol=1e-5)
    with pytest.raises(DataError, match=r"trained with covariates"):
        xds.predict(coarse, model=m, members=2, seed=0)


def test_packed_window_reads_the_covariates_where_training_put_them():
    """The packed prediction window (target step, earlier steps, noise, covariates) gives the last frame
    of the training sequence (every frame: fields, noise, covariates) with the same noise."""
    torch.manual_seed(0)
    c, s, w, n = 2, 3, 3, 2
    targets = [{"name": "a", "constraint": "add", "source": 0, "mean": 1.0, "std": 2.0, "residual_scale": 0.5},
               {"name": "b", "constraint": "softmax", "source": 1, "mean": 3.0, "std": 1.5, "residual_scale": 0.4}]
    inputs = [{"name": "a", "mean": 1.0, "std": 2.0}, {"name": "b", "mean": 3.0, "std": 1.5}]
    net = MultiTargetRecurrentNet("rnngan", F, c + s, targets, inputs, noise_channels=n, window=w, noise_at=c,
                                  width=8, n_blocks=1)
    for p in net.body.parameters():
        torch.nn.init.normal_(p, std=0.2)
    b, h, wd = 2, 5, 4
    fields = torch.randn(b, w, c, h, wd)
    fields[:, :, 1] = fields[:, :, 1].abs()  # softmax source: non-negative in physical units
    static = torch.randn(b, s, h, wd)
    noise = torch.randn(b, w, n, h, wd)
    seq = torch.cat([fields, static[:, None].expand(-1, w, -1, -1, -1)], dim=2)
    packed = torch.cat([fields[:, -1], fields[:, :-1].flatten(1, 2), noise.flatten(1, 2), static], dim=1)
    assert packed.shape[1] == net.packed_channels
    other = torch.cat([packed[:, : -s], torch.randn(b, s, h, wd)], dim=1)
    with torch.no_grad():
        expected = net(seq, noise=noise)[:, -1]
        torch.testing.assert_close(net(packed), expected, rtol=1e-5, atol=1e-5)
        assert float((net(other) - expected).abs().max()) > 1e-3  # the static channels are read
