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


def meteonet_mos() -> tuple[xr.Dataset, xr.Dataset]:
    """The real model-output-statistics pair of MeteoNet NW, 2018-05-01, valid hours 01..24 (24 steps):
    ``(arome, arpege)``. AROME 0.025 deg targets: msl (Pa) and tp (hourly amounts, kg m-2, from the
    differenced accumulation, clipped at 0: GRIB packing makes some differences slightly negative).
    ARPEGE 0.1 deg inputs: msl, tp (hourly, as above), t2m, d2m, r, u10, v10, and pressure at 7
    heights above ground as ``pres_20`` ... ``pres_3000`` (17 steps in the file, 3-hourly after
    12 UTC: linearly interpolated to every hour)."""
    d = data_dir() / "meteonet-nw"

    def hourly(tp: xr.DataArray) -> xr.DataArray:
        amounts = tp.diff("time", label="upper")
        first = tp.isel(time=[0])  # accumulated since 00 UTC: the first step is already one hour
        return xr.concat([first, amounts], "time").clip(min=0).assign_attrs(tp.attrs)

    def plain(ds: xr.Dataset) -> xr.Dataset:
        return ds.drop_vars([c for c in ds.coords if c not in ("time", "latitude", "longitude")])

    fine_tp = hourly(open_grib(d / "arome_PRECIP_NW_20180501000000.grib")["tp"].load())
    times = fine_tp["time"]
    arome = plain(xr.Dataset({"msl": plain(open_grib(d / "arome_P_sea_level_NW_20180501000000.grib"))["msl"].load(),
                              "tp": fine_tp.drop_vars([c for c in fine_tp.coords
                                                       if c not in ("time", "latitude", "longitude")])})).sel(time=times)
    parts = {"msl": open_grib(d / "arpege_P_sea_level_NW_20180501000000.grib")["msl"],
             "tp": hourly(open_grib(d / "arpege_PRECIP_NW_20180501000000.grib")["tp"].load())}
    two_m = open_grib(d / "arpege_2m_NW_20180501000000.grib")
    ten_m = open_grib(d / "arpege_10m_NW_20180501000000.grib")
    parts.update({k: two_m[k] for k in ("t2m", "d2m", "r")})
    parts.update({k: ten_m[k] for k in ("u10", "v10")})
    pres = open_grib(d / "arpege_3D_height_NW_20180501000000.grib")["pres"].load().interp(time=times)
    for h in pres["heightAboveGround"].values:
        parts[f"pres_{int(h)}"] = pres.sel(heightAboveGround=h, drop=True).assign_attrs(pres.attrs)
    keep = ("time", "latitude", "longitude")
    parts = {k: v.drop_vars([c for c in v.coords if c not in keep]) for k, v in parts.items()}
    arpege = xr.Dataset({k: v.sel(time=times).load() for k, v in parts.items()})
    return arome, arpege
