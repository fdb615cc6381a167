"""The YAML data catalog: shipped entries on the real data, and the mechanics on a temporary catalog."""
from __future__ import annotations

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from xdownscale.catalog import CatalogError, list_catalog, open_catalog

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture
def shipped(monkeypatch, data_dir):
    """The default (packaged) catalog with its local entries pointed at the data folder."""
    monkeypatch.delenv("XDOWNSCALE_CATALOG", raising=False)
    monkeypatch.setenv("XDOWNSCALE_DATA", str(data_dir))


# ------------------------------------------------------------------ the shipped catalog


def test_package_copy_matches_top_level():
    top = REPO_ROOT / "data_catalog.yaml"
    pkg = REPO_ROOT / "xdownscale" / "data_catalog.yaml"
    assert top.read_bytes() == pkg.read_bytes(), "xdownscale/data_catalog.yaml must be a copy of data_catalog.yaml"


def test_list_catalog_entries_complete(monkeypatch):
    monkeypatch.delenv("XDOWNSCALE_CATALOG", raising=False)
    cat = list_catalog()
    for name in ("arco-era5", "weatherbench2-era5", "meteonet-arome-msl", "meteonet-arome-masks",
                 "meteonet-arpege-2m", "era5-us", "wfde5-uk-tair"):
        assert name in cat
    for name, entry in cat.items():
        for key in ("description", "url", "engine", "licence", "citation"):
            assert entry.get(key), f"{name} lacks {key}"
        assert entry["engine"] in ("zarr", "netcdf4", "h5netcdf", "cfgrib")
    assert cat["arco-era5"]["url"] == "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    assert set(cat["arco-era5"]["variables"]) == {"total_column_water_vapour", "2m_temperature", "total_precipitation"}
    assert cat["arco-era5"]["open_kwargs"]["storage_options"] == {"token": "anon"}
    assert cat["weatherbench2-era5"]["url"].startswith("gs://weatherbench2/datasets/era5/1959-2023_01_10-wb13")
    # list_catalog returns copies: mutating them does not change the catalog
    cat["era5-us"]["url"] = "elsewhere"
    assert list_catalog()["era5-us"]["url"] != "elsewhere"


def test_xdownscale_catalog_env(tmp_path, monkeypatch):
    alt = tmp_path / "alt.yaml"
    alt.write_text(yaml.safe_dump({"sources": {"only-one": {"url": "x.nc", "engine": "netcdf4"}}}))
    monkeypatch.setenv("XDOWNSCALE_CATALOG", str(alt))
    assert list(list_catalog()) == ["only-one"]
    monkeypatch.setenv("XDOWNSCALE_CATALOG", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="XDOWNSCALE_CATALOG"):
        list_catalog()


@pytest.mark.realdata
def test_default_data_location_without_env(monkeypatch, data_dir):
    """Without XDOWNSCALE_DATA the shipped entries find ../shared/data beside a source checkout."""
    if data_dir.resolve() != (REPO_ROOT.parent / "shared" / "data").resolve():
        pytest.skip("data folder is not at ../shared/data beside the repository")
    monkeypatch.delenv("XDOWNSCALE_DATA", raising=False)
    monkeypatch.delenv("XDOWNSCALE_CATALOG", raising=False)
    monkeypatch.chdir(data_dir)  # not the working directory either
    assert dict(open_catalog("era5-us").sizes) == {"latitude": 105, "longitude": 237}


@pytest.mark.realdata
def test_meteonet_arome_msl(shipped):
    ds = open_catalog("meteonet-arome-msl")
    assert list(ds.data_vars) == ["msl"]
    assert ds["msl"].dims == ("time", "latitude", "longitude")
    assert dict(ds.sizes) == {"time": 25, "latitude": 227, "longitude": 315}
    # cfgrib's scalar coordinates are gone, valid times became `time`
    assert set(ds.coords) == {"time", "latitude", "longitude"}
    assert np.issubdtype(ds["time"].dtype, np.datetime64)
    assert (np.diff(ds["time"].values) == np.timedelta64(1, "h")).all()
    assert str(ds["time"].values[0]).startswith("2018-05-01T00")
    assert ds.attrs["forecast_reference_time"].startswith("2018-05-01T00")
    assert ds["latitude"][0] > ds["latitude"][-1]  # descending
    msl = ds["msl"].isel(time=0).values
    assert 95_000 < np.nanmean(msl) < 105_000  # Pa


@pytest.mark.realdata
def test_meteonet_arome_masks(shipped):
    ds = open_catalog("meteonet-arome-masks")
    assert set(ds.data_vars) == {"lsm", "h"}
    assert dict(ds.sizes) == {"latitude": 227, "longitude": 315}
    assert set(ds.coords) == {"latitude", "longitude"}
    lsm = ds["lsm"].values
    assert lsm.min() >= 0 and lsm.max() <= 1


@pytest.mark.realdata
def test_meteonet_arpege_2m(shipped):
    ds = open_catalog("meteonet-arpege-2m")
    assert set(ds.data_vars) == {"t2m", "d2m", "r"}
    assert ds["t2m"].dims == ("time", "latitude", "longitude")
    assert dict(ds.sizes) == {"time": 25, "latitude": 58, "longitude": 80}
    assert set(ds.coords) == {"time", "latitude", "longitude"}
    # the AROME grid is point-nested 4x in the ARPEGE grid
    arome = open_catalog("meteonet-arome-msl")
    np.testing.assert_allclose(arome["latitude"].values[::4], ds["latitude"].values[:57], atol=1e-6)
    np.testing.assert_allclose(arome["longitude"].values[::4], ds["longitude"].values[:79], atol=1e-6)


@pytest.mark.realdata
def test_era5_us(shipped):
    ds = open_catalog("era5-us")
    assert set(ds.data_vars) == {"u10", "v10", "t2m", "d2m", "sp"}  # t2m_C, d2m_C left out
    assert dict(ds.sizes) == {"latitude": 105, "longitude": 237}
    assert 250 < float(ds["t2m"].mean()) < 320


@pytest.mark.realdata
def test_era5_europe_grib_scalar_time(shipped):
    ds = open_catalog("era5-europe-t2m")
    assert dict(ds.sizes) == {"latitude": 121, "longitude": 201}
    assert set(ds.coords) == {"time", "latitude", "longitude"}
    assert ds["time"].ndim == 0


@pytest.mark.realdata
def test_wfde5_tair(shipped):
    ds = open_catalog("wfde5-uk-tair")
    assert list(ds.data_vars) == ["Tair"]
    assert ds["Tair"].dims == ("time", "lat", "lon")
    assert dict(ds.sizes) == {"time": 744, "lat": 20, "lon": 28}
    assert "licence" in ds.attrs and ds.attrs["catalog_source"] == "wfde5-uk-tair"


@pytest.mark.realdata
def test_overrides_on_shipped_entry(shipped):
    ds = open_catalog("wfde5-uk-tair", sel={"time": ["2017-01-02", "2017-01-02T05"], "lat": [55, 52]},
                      rename={"Tair": "tas"}, chunks={})
    assert list(ds.data_vars) == ["tas"]
    assert ds.sizes["time"] == 6
    assert ds["lat"].min() >= 52 and ds["lat"].max() <= 55
    assert ds["tas"].chunks is not None  # chunks={} went through to open_dataset


# ------------------------------------------------------------------ mechanics on a temporary catalog


@pytest.fixture
def tmp_catalog(tmp_path, synthetic_field):
    """A small netCDF in tmp_path/data and a catalog in tmp_path/cat referencing it relatively."""
    data = tmp_path / "data"
    data.mkdir()
    da = synthetic_field(nt=4, ny=8, nx=10, lat_descending=True)
    ds = da.to_dataset()
    ds["pr"] = (da - da.min()).rename("pr")
    ds["orog"] = da.isel(time=0, drop=True) * 0 + 100.0
    ds.to_netcdf(data / "small.nc")
    cat_dir = tmp_path / "cat"
    cat_dir.mkdir()
    entry = {
        "description": "test",
        "url": "${XDS_TEST_DATA_DIR:-../data}/small.nc",
        "engine": "netcdf4",
        "variables": ["tas", "pr"],
        "rename": {"tas": "t2m", "lat": "latitude"},
        "sel": {"latitude": [34, 50], "time": ["2020-01-01T01", "2020-01-01T02"]},
        "licence": "CC0",
        "citation": "none",
    }
    plain = {"url": "../data/small.nc", "engine": "netcdf4"}
    strict = {"url": "${XDS_TEST_UNSET_VAR}/small.nc", "engine": "netcdf4"}
    path = cat_dir / "catalog.yaml"
    path.write_text(yaml.safe_dump({"sources": {"small": entry, "small-plain": plain, "small-strict": strict}}))
    return path, ds


def test_relative_path_variables_rename_sel(tmp_catalog, monkeypatch, tmp_path):
    path, full = tmp_catalog
    monkeypatch.delenv("XDS_TEST_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # relative to the YAML, not the working directory
    ds = open_catalog("small", catalog=path)
    assert set(ds.data_vars) == {"t2m", "pr"}  # orog dropped, tas renamed
    assert "latitude" in ds.dims and "lat" not in ds.dims
    # latitude is descending in the file: [34, 50] still selects the band
    lat = ds["latitude"].values
    assert lat.size > 0 and lat.min() >= 34 and lat.max() <= 50 and lat[0] > lat[-1]
    expected = full["lat"].values[(full["lat"].values >= 34) & (full["lat"].values <= 50)]
    np.testing.assert_allclose(lat, expected)
    assert ds.sizes["time"] == 2
    np.testing.assert_array_equal(
        ds["t2m"].values,
        full["tas"].sel(lat=slice(50, 34), time=slice("2020-01-01T01", "2020-01-01T02")).values,
    )
    assert ds.attrs["licence"] == "CC0"


def test_plain_relative_path(tmp_catalog, monkeypatch, tmp_path):
    path, full = tmp_catalog
    monkeypatch.chdir(tmp_path / "data")
    ds = open_catalog("small-plain", catalog=str(path))
    assert set(ds.data_vars) == {"tas", "pr", "orog"}
    xr.testing.assert_allclose(ds["tas"].load(), full["tas"])


def test_env_var_expansion(tmp_catalog, tmp_path, monkeypatch):
    path, _ = tmp_catalog
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "data" / "small.nc").rename(moved / "small.nc")
    with pytest.raises(FileNotFoundError, match="XDOWNSCALE_DATA|does not exist"):
        open_catalog("small", catalog=path)
    monkeypatch.setenv("XDS_TEST_DATA_DIR", str(moved))
    assert open_catalog("small", catalog=path).sizes["time"] == 2
    # ${VAR} without a default must be set
    monkeypatch.delenv("XDS_TEST_UNSET_VAR", raising=False)
    with pytest.raises(CatalogError, match="XDS_TEST_UNSET_VAR"):
        open_catalog("small-strict", catalog=path)
    monkeypatch.setenv("XDS_TEST_UNSET_VAR", str(moved))
    assert "orog" in open_catalog("small-strict", catalog=path)


def test_missing_variable_and_bad_sel(tmp_catalog):
    path, _ = tmp_catalog
    with pytest.raises(CatalogError, match="nope"):
        open_catalog("small", catalog=path, variables=["tas", "nope"])
    with pytest.raises(CatalogError, match="height"):
        open_catalog("small", catalog=path, sel={"height": [0, 1]})


def test_unknown_name_suggests_close_names(tmp_catalog, monkeypatch):
    path, _ = tmp_catalog
    with pytest.raises(KeyError) as info:
        open_catalog("smal", catalog=path)
    msg = str(info.value)
    assert "'smal'" in msg and "Did you mean" in msg and "'small'" in msg
    monkeypatch.delenv("XDOWNSCALE_CATALOG", raising=False)
    with pytest.raises(ValueError, match="meteonet-arome-msl"):
        open_catalog("meteonet-arome-msll")


@pytest.mark.parametrize("name", ["arco-era5", "weatherbench2-era5"])
def test_remote_without_gcsfs_raises_install_hint(name, monkeypatch):
    monkeypatch.delenv("XDOWNSCALE_CATALOG", raising=False)
    real_import = builtins.__import__

    def fake_import(mod, *args, **kwargs):
        if mod.split(".")[0] == "gcsfs":
            raise ImportError("No module named 'gcsfs' (blocked by test)")
        return real_import(mod, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "gcsfs", None)  # `import gcsfs` -> ImportError
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "xdownscale\[cloud\]"'):
        open_catalog(name)
