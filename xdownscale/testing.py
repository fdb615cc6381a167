"""Synthetic fields and assertions for tests, tutorials and the demo.

``synthetic_field`` makes a realistic stand-in for a reanalysis field without
any download: a Gaussian random field with a k^-3 power spectrum (the
synoptic-scale slope of observed atmospheric spectra, Nastrom & Gage 1985)
that drifts eastward and evolves in time, on a regular lat/lon grid. With
``kind="tcwv"`` it is made log-normal and positive (total column water vapour
in kg m-2, mean ~20, long right tail, like ERA5 TCWV); with ``kind="t2m"`` it
is a 2 m temperature in K with a meridional gradient.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

KINDS = {
    "tcwv": {"units": "kg m-2", "standard_name": "atmosphere_mass_content_of_water_vapor",
             "long_name": "Total column water vapour"},
    "t2m": {"units": "K", "standard_name": "air_temperature", "long_name": "2 metre temperature"},
    "tp": {"units": "kg m-2", "standard_name": "precipitation_amount", "long_name": "Hourly precipitation"},
}


def _spectral_noise(rng, shape, slope: float) -> np.ndarray:
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    amp = k ** (-(slope + 1) / 2)  # 2-D amplitude for a radially integrated k^-slope spectrum
    phase = rng.normal(size=(ny, nx // 2 + 1)) + 1j * rng.normal(size=(ny, nx // 2 + 1))
    field = np.fft.irfft2(amp * phase, s=shape)
    return (field - field.mean()) / field.std()


def synthetic_field(kind: str = "tcwv", *, times: int = 24, ny: int = 64, nx: int = 96, seed: int = 0,
                    lat: tuple[float, float] = (60.0, 30.0), lon: tuple[float, float] = (-40.0, 0.0),
                    slope: float = 3.0, drift: float = 0.6, dtype="float32") -> xr.DataArray:
    """A (time, lat, lon) CF DataArray; ``lat=(north, south)`` gives descending latitude."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(abs(drift) * times)) + 8
    a = _spectral_noise(rng, (ny, nx + pad), slope)
    b = _spectral_noise(rng, (ny, nx + pad), slope)
    frames = []
    for t in range(times):
        shift = drift * t
        i0 = int(np.floor(shift))
        frac = shift - i0
        base_a = (1 - frac) * np.roll(a, i0, axis=1) + frac * np.roll(a, i0 + 1, axis=1)
        mix = np.cos(2 * np.pi * t / max(times * 2, 1))
        frames.append(mix * base_a[:, :nx] + np.sqrt(max(1 - mix**2, 0)) * b[:, :nx])
    z = np.stack(frames)
    lats = np.linspace(lat[0], lat[1], ny)
    lons = np.linspace(lon[0], lon[1], nx)
    if kind == "tcwv":
        values = 20.0 * np.exp(0.45 * z - 0.1)
    elif kind == "t2m":
        values = 288.0 - 0.6 * (np.abs(lats)[None, :, None] - 30.0) + 3.0 * z
    else:
        values = np.maximum(0.0, 1.5 * (np.exp(0.8 * z) - 1.4))
    time = pd.date_range("2020-01-01", periods=times, freq="h")
    da = xr.DataArray(values.astype(dtype), dims=("time", "lat", "lon"),
                      coords={"time": time, "lat": lats, "lon": lons}, name=kind, attrs=dict(KINDS[kind]))
    da.lat.attrs.update(units="degrees_north", standard_name="latitude", axis="Y")
    da.lon.attrs.update(units="degrees_east", standard_name="longitude", axis="X")
    return da


def synthetic_statics(field: xr.DataArray, seed: int = 5) -> xr.Dataset:
    """Static covariates on ``field``'s fine grid (dims ``lat``, ``lon``): an orography (m) with
    sub-grid structure and the land-sea mask it implies (land above 600 m)."""
    ny, nx = field.sizes["lat"], field.sizes["lon"]
    orog = 600.0 + 300.0 * _spectral_noise(np.random.default_rng(seed), (ny, nx), 2.0)
    template = field.isel(time=0, drop=True)
    return xr.Dataset({"orog": template.copy(data=orog.astype("float32")).assign_attrs(units="m"),
                       "lsm": template.copy(data=(orog > 600.0).astype("float32"))})


def assert_conserves(pred: xr.DataArray, lr: xr.DataArray, factor: int, rtol: float = 1e-5) -> float:
    """Assert that the area-weighted coarsening of ``pred`` equals ``lr``; returns the max relative error."""
    from .grid.coarsen import coarsen

    back = coarsen(pred, factor).values.astype("float64")
    ref = lr.values.astype("float64")
    scale = max(np.nanmax(np.abs(ref)), 1e-30)
    err = float(np.nanmax(np.abs(back - ref)) / scale)
    if not err <= rtol:
        raise AssertionError(f"coarsened prediction differs from the coarse input by {err:.3g} (relative) > {rtol:g}")
    return err


def synthetic_pair(*, times: int = 6, ny: int = 16, nx: int = 16) -> xr.Dataset:
    """Two targets on one fine grid: 2 m temperature and precipitation (seeds 1 and 2)."""
    return xr.Dataset({"t2m": synthetic_field("t2m", times=times, ny=ny, nx=nx, seed=1),
                       "tp": synthetic_field("tp", times=times, ny=ny, nx=nx, seed=2)})


def another_model(fine: xr.Dataset, factor: int) -> xr.Dataset:
    """A coarse source that is not just the truth coarsened: the targets' coarsening, plus a biased
    precipitation ``tp_src`` (x1.3 + 0.01, as from another model) and an unrelated predictor ``q``."""
    lr = fine.downscale.coarsen(factor)
    lr["tp_src"] = (lr["tp"] * 1.3 + 0.01).assign_attrs(lr["tp"].attrs)
    lr["q"] = lr["t2m"] * 0 + np.random.default_rng(0).random(lr["t2m"].shape).astype("float32")
    return lr.drop_vars([v for v in lr.data_vars if v.endswith("_bnds")])
