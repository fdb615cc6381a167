"""Shared loading of the real benchmark fields (../shared/data or $XDOWNSCALE_TEST_DATA)."""
from __future__ import annotations

import os
from pathlib import Path

import xarray as xr


def data_dir() -> Path:
    env = os.environ.get("XDOWNSCALE_TEST_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        raise SystemExit(f"real data not found at {path}: set XDOWNSCALE_TEST_DATA")
    return path


def open_grib(path: Path) -> xr.Dataset:
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    if "step" in ds.dims and "valid_time" in ds.coords:
        ds = ds.swap_dims({"step": "valid_time"}).drop_vars(["step", "time"], errors="ignore")
        ds = ds.rename({"valid_time": "time"})
    return ds


def meteonet_msl() -> xr.DataArray:
    """AROME msl (Pa), 25 hourly steps on 0.025 deg, north-west France, trimmed to 224 x 312."""
    ds = open_grib(data_dir() / "meteonet-nw" / "arome_P_sea_level_NW_20180501000000.grib")
    da = ds["msl"].load()
    return da.isel(latitude=slice(0, 224), longitude=slice(0, 312))


def meteonet_static() -> xr.Dataset:
    ds = open_grib(data_dir() / "meteonet-nw" / "NW_masks.grib")
    keep = ds[["h", "lsm"]].drop_vars([c for c in ds.coords if c not in ("latitude", "longitude")])
    return keep.isel(latitude=slice(0, 224), longitude=slice(0, 312)).load()
