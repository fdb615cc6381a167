"""Static covariates (orography, land-sea mask) as extra input channels.

Covariates live on the fine grid. Each is normalised and folded onto the
coarse grid by space-to-depth (every coarse cell gets the ``factor**2`` fine
values it contains as channels), so the network sees the full fine-scale
detail while every input stays on the coarse grid (and tiles with it).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError
from ..grid.cf import GridAxes, find_axes
from .normalize import fit_stats


def as_dataset(covariates) -> xr.Dataset | None:
    if covariates is None:
        return None
    if isinstance(covariates, xr.DataArray):
        if covariates.name is None:
            raise DataError("a covariate DataArray needs a name, e.g. orography.rename('orog')")
        return covariates.to_dataset()
    if isinstance(covariates, xr.Dataset):
        return covariates
    raise DataError(f"covariates must be an xarray Dataset or DataArray, got {type(covariates).__name__}")


def _static_2d(cov: xr.DataArray, axes: GridAxes) -> xr.DataArray:
    extra = [d for d in cov.dims if d not in axes.spatial]
    for d in extra:
        if cov.sizes[d] != 1:
            raise DataError(f"covariate {cov.name!r} must be static on ({axes.y}, {axes.x}); it has dim {d!r} of "
                            f"size {cov.sizes[d]}")
    return cov.isel({d: 0 for d in extra}, drop=True).transpose(*axes.spatial)


def covariate_stats(covariates: xr.Dataset) -> dict:
    cax = find_axes(covariates)
    return {name: fit_stats(_static_2d(covariates[name], cax)) for name in covariates.data_vars}


def fold_covariates(covariates: xr.Dataset | None, stats: dict, fine_shape: tuple[int, int],
                    factor: int) -> np.ndarray | None:
    """(len(stats) * factor**2, ny, nx) float32 channels on the coarse grid, in ``stats`` order."""
    if not stats:
        return None
    if covariates is None:
        raise DataError(
            f"this model was trained with covariates {sorted(stats)}; pass them on the fine grid: "
            "predict(..., covariates=ds_static)"
        )
    cax = find_axes(covariates)
    channels = []
    for name, st in stats.items():
        if name not in covariates:
            raise DataError(f"covariate {name!r} is missing; the model was trained with {sorted(stats)}")
        field = _static_2d(covariates[name], cax).values.astype("float64")
        if field.shape != tuple(fine_shape):
            raise DataError(
                f"covariate {name!r} has shape {field.shape} but the fine grid is {tuple(fine_shape)}; "
                "give covariates on the high-resolution grid of the target (trimmed the same way)"
            )
        field = np.nan_to_num((field - st["mean"]) / st["std"], nan=0.0)
        ny, nx = fine_shape[0] // factor, fine_shape[1] // factor
        folded = field.reshape(ny, factor, nx, factor).transpose(1, 3, 0, 2).reshape(factor * factor, ny, nx)
        channels.append(folded)
    return np.concatenate(channels, axis=0).astype("float32")
