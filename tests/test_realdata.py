"""Behaviour on real public fields (MeteoNet AROME); skipped when ../shared/data is absent."""
import warnings

import numpy as np
import pytest

import xdownscale as xds
from xdownscale.testing import assert_conserves

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def msl(data_dir):
    ds = xds.open_catalog("meteonet-arome-msl")
    da = ds["msl"] if "msl" in ds else ds[list(ds.data_vars)[0]]
    return da.isel(time=slice(0, 10)).load()


@pytest.fixture(scope="module")
def masks(data_dir):
    return xds.open_catalog("meteonet-arome-masks")


def test_real_grid_needs_trim_and_coarsens_exactly(msl):
    with pytest.raises(xds.GridError, match="trim=True"):
        msl.downscale.coarsen(4)
    lr = msl.downscale.coarsen(4, trim=True)
    assert lr.sizes["latitude"] == 227 // 4 and lr.sizes["longitude"] == 315 // 4
    fine = msl.isel(latitude=slice(0, 224), longitude=slice(0, 312))
    w = np.cos(np.deg2rad(fine.latitude))
    mean_fine = float(fine.isel(time=0).weighted(w).mean())
    wc = np.cos(np.deg2rad(lr.latitude))
    assert abs(float(lr.isel(time=0).weighted(wc).mean()) - mean_fine) / mean_fine < 1e-6


def test_constrained_cnn_on_real_msl_conserves_and_beats_bicubic(msl, masks, tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path))
    hr = msl.isel(latitude=slice(0, 128), longitude=slice(0, 128))
    train, test = hr.isel(time=slice(0, 8)), hr.isel(time=slice(8, 10))
    cov = masks[["h", "lsm"]].isel(latitude=slice(0, 128), longitude=slice(0, 128))
    m = train.downscale.fit(model="cnn", factor=4, constraint="softmax", epochs=4, batch_size=8, patch_size=64,
                            width=16, n_blocks=2, covariates=cov, checkpoint=tmp_path / "m.pt", progress=False)
    lr = test.downscale.coarsen(4)
    sr = lr.downscale.predict(model=m, covariates=cov)
    assert_conserves(sr, lr, 4, rtol=1e-5)
    rmse = lambda p: float(np.sqrt(((p.values - test.values) ** 2).mean()))  # noqa: E731
    assert rmse(sr) < rmse(lr.downscale.predict(model="bicubic", factor=4))


def test_arome_statics_serve_a_model_from_arpege_on_its_regridded_fine_grid(msl, masks, tmp_path, monkeypatch):
    """MOS on the real pair: ARPEGE 2 m fields (0.1 deg, offset from AROME's blocks) -> AROME msl.
    The fine grid of the pair is the part of AROME's lattice that ARPEGE covers, not AROME's own
    227 x 315 cells; AROME's orography and land-sea mask, given whole, are taken at its cells by
    label (in prediction, an edge row and column beyond AROME take the mean, with a warning)."""
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path))
    keep = ("time", "latitude", "longitude")
    arpege = xds.open_catalog("meteonet-arpege-2m")[["t2m", "r"]]
    arpege = arpege.drop_vars([c for c in arpege.coords if c not in keep]).isel(time=slice(0, 10)).load()
    arome = msl.drop_vars([c for c in msl.coords if c not in keep]).to_dataset(name="msl")
    static = masks[["h", "lsm"]].drop_vars([c for c in masks.coords if c not in ("latitude", "longitude")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = xds.fit(arome.isel(time=slice(0, 8)), lr=arpege.isel(time=slice(0, 8)), var=["msl"], covariates=static,
                    max_updates=4, batch_size=4, patch_size=32, width=8, n_blocks=1, progress=False, trim=True,
                    checkpoint=tmp_path / "mos.pt")
    assert not [w for w in caught if "covariate" in str(w.message)]  # the trimmed training grid lies inside AROME
    assert m.meta["covariates"] == ["h", "lsm"]
    # every ARPEGE cell, moved by the training offset: one edge row and column of fine cells beyond AROME
    with pytest.warns(UserWarning, match=r"covariate 'h' has no value within half a fine cell of 0\.\d %"):
        sr = xds.predict(arpege.isel(time=slice(8, 10)), model=m, covariates=static)
    assert np.isfinite(sr["msl"].values).all()
    assert sr.sizes["latitude"] > 200 and sr.sizes["longitude"] > 300  # the whole nested domain
