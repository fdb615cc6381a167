"""Radially averaged power spectra of 2-D fields.

Downscaling models are often judged by whether they reproduce the small-scale
variance of the truth: compare ``power_spectrum(pred)`` and
``power_spectrum(truth)`` on a log-log plot.
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ..errors import DataError
from ..grid.cf import coordinate_values, find_axes, regular_spacing
from .deterministic import Dim, rechunk_for_core, squared_units

__all__ = ["power_spectrum", "log_spectral_distance"]


def _spacing(da: xr.DataArray, axes, spacing, units):
    """(dy, dx, wavenumber units) from the ``spacing`` argument."""
    if spacing is None:
        return 1.0, 1.0, "cycles per grid cell"
    if isinstance(spacing, str):
        if spacing != "coords":
            raise DataError(f"spacing must be None, 'coords', a number or (dy, dx); got {spacing!r}")
        dy = abs(regular_spacing(coordinate_values(da, axes.y), axes.y))
        dx = abs(regular_spacing(coordinate_values(da, axes.x), axes.x))
        if units is None:
            cu = da.coords[axes.x].attrs.get("units", "") if axes.x in da.coords else ""
            units = "degree" if axes.kind == "latlon" else (cu or "coordinate unit")
        return dy, dx, f"cycles per {units}"
    dy, dx = (spacing, spacing) if np.ndim(spacing) == 0 else spacing
    if dy <= 0 or dx <= 0:
        raise DataError(f"grid spacing must be positive, got dy={dy}, dx={dx}")
    return float(dy), float(dx), f"cycles per {units or 'unit of spacing'}"


def _bins(ny: int, nx: int, dy: float, dx: float):
    """Annulus index of every Fourier mode, the bin width and the number of bins."""
    ky = np.fft.fftfreq(ny, d=dy)
    kx = np.fft.fftfreq(nx, d=dx)
    k = np.hypot(ky[:, None], kx[None, :])
    dk = max(1.0 / (ny * dy), 1.0 / (nx * dx))
    nbins = int(np.floor(min(0.5 / dy, 0.5 / dx) / dk + 1e-9))
    idx = np.rint(k / dk).astype(int).ravel()
    return idx, dk, nbins


def _radial_core(f: np.ndarray, *, idx, nbins, window, fill_missing=False):
    """Radially averaged |FFT|^2 of the fields on the last two axes."""
    ny, nx = f.shape[-2:]
    f = np.asarray(f, dtype="float64")
    if fill_missing:  # missing cells take their field's mean: no anomaly there
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN fields stay NaN
            f = np.where(np.isnan(f), np.nanmean(f, axis=(-2, -1), keepdims=True), f)
    f = f - f.mean(axis=(-2, -1), keepdims=True)  # NaN fields stay NaN
    norm = (ny * nx) ** 2
    if window is not None:
        f = f * window
        norm = norm * np.mean(window**2)
    p = np.abs(np.fft.fft2(f, axes=(-2, -1))) ** 2 / norm
    p = p.reshape(p.shape[:-2] + (ny * nx,))
    keep = (idx >= 1) & (idx <= nbins)
    sel = idx[keep]
    order = np.argsort(sel, kind="stable")
    starts = np.searchsorted(sel[order], np.arange(1, nbins + 1))
    counts = np.bincount(sel, minlength=nbins + 1)[1:]
    sums = np.add.reduceat(p[..., keep][..., order], starts, axis=-1)
    return sums / counts


def power_spectrum(da: xr.DataArray, *, dim: Dim = None, spacing=None, units: str | None = None,
                   window: str | None = None, fill_missing: bool = False) -> xr.DataArray:
    """Radially averaged power spectrum of the 2-D (y, x) fields of ``da``.

    Each field has its mean removed and is Fourier transformed (periodic, no
    taper unless ``window="hann"``). The power of a mode is
    ``|FFT|^2 / (ny nx)^2``, so the powers of all modes sum to the field's
    variance; the spectrum at wavenumber ``k`` is the *mean* power of the modes
    with ``|k|`` in the annulus ``[k - dk/2, k + dk/2)``, i.e. the 2-D
    spectrum sampled along a radius (white noise is flat; a field whose 2-D
    spectrum falls as ``|k|^-a`` gives slope ``-a`` in log-log; the
    radially *integrated* 1-D spectrum is about ``2 pi k / dk`` times it).

    Units: the power is in (field units)^2, variance per Fourier mode.
    Wavenumbers (dim ``wavenumber``) are ordinary frequencies, not angular:

    * ``spacing=None`` (default): cycles per grid cell, from ``dk`` up to 0.5
      (the Nyquist wavenumber); ``dk = 1 / max(ny, nx)``;
    * ``spacing="coords"``: cycles per unit of the (regular) coordinates, e.g.
      cycles per degree on lat/lon grids (no account of the convergence of
      meridians) or per metre on projected grids with ``units: m``;
    * ``spacing=d`` or ``(dy, dx)``: cycles per unit of ``d`` (name the unit
      with ``units=``, e.g. ``spacing=2.5, units="km"``).

    Bins run up to the smaller Nyquist wavenumber, so every annulus is complete.
    A ``wavelength`` coordinate (``1 / k``) is attached. Fields containing NaN
    are left out, unless ``fill_missing``: their missing cells (e.g. the sea of
    a land-only product) are then set to the field's mean, i.e. zero anomaly,
    which damps the power by about the fraction of cells missing. The spectra of the fields are
    averaged over the dims in ``dim`` other than y and x (all by default); dims left out are kept.
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"power_spectrum expects an xarray.DataArray, got {type(da).__name__}")
    axes = find_axes(da)
    ny, nx = da.sizes[axes.y], da.sizes[axes.x]
    if min(ny, nx) < 4:
        raise DataError(f"power_spectrum needs fields of at least 4x4 cells, got {axes.y}={ny}, {axes.x}={nx}")
    dy, dx, kunits = _spacing(da, axes, spacing, units)
    idx, dk, nbins = _bins(ny, nx, dy, dx)
    win = None
    if window == "hann":
        win = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    elif window is not None:
        raise DataError(f"window must be None or 'hann', got {window!r}")
    da = rechunk_for_core(da, axes.spatial)
    spec = xr.apply_ufunc(
        _radial_core, da, input_core_dims=[list(axes.spatial)], output_core_dims=[["wavenumber"]],
        kwargs={"idx": idx, "nbins": nbins, "window": win, "fill_missing": bool(fill_missing)}, dask="parallelized",
        output_dtypes=["float64"],
        dask_gufunc_kwargs={"allow_rechunk": True, "output_sizes": {"wavenumber": nbins}},
    )
    others = [d for d in da.dims if d not in axes.spatial]
    if dim is None:
        avg = others
    else:
        dims = [dim] if isinstance(dim, str) else list(dim)
        unknown = [d for d in dims if d not in da.dims]
        if unknown:
            raise DataError(f"cannot average over {unknown}: the data has dims {tuple(da.dims)}")
        avg = [d for d in dims if d in others]
    if avg:
        spec = spec.mean(dim=avg, skipna=True)
    k = dk * np.arange(1, nbins + 1)
    lam_units = kunits.replace("cycles per ", "")
    spec = spec.assign_coords(
        wavenumber=("wavenumber", k, {"long_name": "wavenumber", "units": kunits}),
        wavelength=("wavenumber", 1.0 / k, {"long_name": "wavelength", "units": lam_units}),
    )
    field_units = da.attrs.get("units", "")
    spec.name = f"{da.name}_power" if da.name is not None else "power"
    spec.attrs = {
        "long_name": "radially averaged power spectrum",
        "units": squared_units(field_units),
    }
    return spec


def log_spectral_distance(pred: xr.DataArray, truth: xr.DataArray, *, min_wavenumber: float | None = None,
                          **spectrum_kwargs) -> float:
    """Log spectral distance in dB between the mean power spectra of ``pred`` and ``truth``.

    ``LSD = sqrt(mean_k (10 log10(P_pred(k) / P_truth(k)))^2)`` over the
    wavenumber bins of :func:`power_spectrum` (every field's spectrum,
    averaged over all other dims, e.g. time and ensemble members), from
    ``min_wavenumber`` up (all bins by default). 0 when the spectra agree; a
    model that smooths away small scales has a large LSD from its deficit at
    high wavenumbers. Bins where either power is 0 or NaN are skipped.
    ``spectrum_kwargs`` (``spacing``, ``window``, ...) go to both spectra.
    """
    p = power_spectrum(pred, **spectrum_kwargs)
    t = power_spectrum(truth, **spectrum_kwargs)
    if p.sizes["wavenumber"] != t.sizes["wavenumber"]:
        raise DataError(f"pred and truth give {p.sizes['wavenumber']} and {t.sizes['wavenumber']} wavenumber bins: "
                        "the fields must have the same grid size")
    pv, tv = np.asarray(p.values, "float64"), np.asarray(t.values, "float64")
    k = np.asarray(t["wavenumber"].values)
    ok = np.isfinite(pv) & np.isfinite(tv) & (pv > 0) & (tv > 0)
    if min_wavenumber is not None:
        ok &= k >= min_wavenumber
    if not ok.any():
        raise DataError("no wavenumber bin with positive power in both spectra")
    return float(np.sqrt(np.mean((10.0 * np.log10(pv[ok] / tv[ok])) ** 2)))
