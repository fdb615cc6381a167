"""Shared fixtures: the real-data folder, a synthetic smooth field, and a private model store."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_model_store(tmp_path_factory):
    """Every test (and every process a test starts) uses a model store in pytest's temporary
    folder, never the user's ``~/.cache/xdownscale``: ``fit`` registers each checkpoint there.
    Tests that need an empty store of their own still set ``XDOWNSCALE_HOME`` themselves.
    Cartopy's download folder is moved there too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDOWNSCALE_HOME", str(tmp_path_factory.mktemp("xdownscale_home")))
        # maps draw coastlines by default: on a machine online, cartopy would download Natural Earth
        # into ~/.local/share/cartopy; during the tests it goes to the temporary folder instead
        data_home = tmp_path_factory.mktemp("xdg_data")
        mp.setenv("XDG_DATA_HOME", str(data_home))
        if "cartopy" in sys.modules:  # imported while collecting: its data_dir is already set
            mp.setitem(sys.modules["cartopy"].config, "data_dir", data_home / "cartopy")
        yield


@pytest.fixture
def own_store(tmp_path, monkeypatch):
    """An empty model store for one test (``pytestmark = pytest.mark.usefixtures("own_store")``)."""
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def find_data_dir() -> Path | None:
    """``$XDOWNSCALE_TEST_DATA``, else ``../shared/data`` beside the repository; None if absent."""
    env = os.environ.get("XDOWNSCALE_TEST_DATA")
    path = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
    """The folder of real public data extracts; skips the test when it is absent.

    Also points the shipped catalog's local entries at it (``XDOWNSCALE_DATA``,
    unless already set), so ``open_catalog("meteonet-arome-msl")`` finds the data.
    """
    path = find_data_dir()
    if path is None:
        where = os.environ.get("XDOWNSCALE_TEST_DATA") or str(REPO_ROOT.parent / "shared" / "data")
        pytest.skip(f"real-data folder not found at {where}: set XDOWNSCALE_TEST_DATA to the shared data folder")
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("XDOWNSCALE_DATA"):
            mp.setenv("XDOWNSCALE_DATA", str(path))
        yield path


@pytest.fixture
def synthetic_field():
    """Factory: a seeded smooth (time, lat, lon) float32 field with CF attributes.

    ``synthetic_field(nt=2, ny=16, nx=24, seed=0, lat_descending=False,
    lat_range=(30, 60), lon_range=(-10, 20), offset=280.0, amplitude=10.0)``
    """

    def make(nt=2, ny=16, nx=24, *, seed=0, lat_descending=False, lat_range=(30.0, 60.0),
             lon_range=(-10.0, 20.0), offset=280.0, amplitude=10.0, dtype="float32", name="tas"):
        rng = np.random.default_rng(seed)
        dlat = (lat_range[1] - lat_range[0]) / ny
        dlon = (lon_range[1] - lon_range[0]) / nx
        lat = lat_range[0] + dlat * (np.arange(ny) + 0.5)
        lon = lon_range[0] + dlon * (np.arange(nx) + 0.5)
        if lat_descending:
            lat = lat[::-1]
        yy, xx = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
        fields = []
        for _ in range(nt):
            kx, ky, px, py = rng.uniform(0.5, 2.0, 2).tolist() + rng.uniform(0, 2 * np.pi, 2).tolist()
            fields.append(np.sin(2 * np.pi * kx * xx + px) * np.cos(2 * np.pi * ky * yy + py)
                          + 0.3 * np.sin(2 * np.pi * (xx + yy) + px))
        data = (offset + amplitude * np.stack(fields)).astype(dtype)
        time = pd.date_range("2020-01-01", periods=nt, freq="h")
        return xr.DataArray(
            data,
            dims=("time", "lat", "lon"),
            coords={
                "time": ("time", time, {"standard_name": "time", "axis": "T"}),
                "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
                "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
            },
            name=name,
            attrs={"standard_name": "air_temperature", "units": "K", "long_name": "near-surface air temperature"},
        )

    return make


@pytest.fixture
def global_lr():
    """A coarse global field (8 x 32, 11.25 degrees) that closes the circle in longitude."""
    rng = np.random.default_rng(5)
    lat = np.linspace(78.75, -78.75, 8)
    lon = np.arange(32) * 11.25
    values = (280 + 10 * np.sin(np.deg2rad(lon))[None, :] + rng.normal(size=(8, 32))).astype("float32")
    lr = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="t2m")
    lr["lat"].attrs.update(standard_name="latitude", units="degrees_north")
    lr["lon"].attrs.update(standard_name="longitude", units="degrees_east")
    return lr
