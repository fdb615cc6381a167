"""Static covariates (orography, land-sea mask) as extra input channels.

Covariates live on the fine grid. Each is normalised and folded onto the
coarse grid by space-to-depth (every coarse cell gets the ``factor**2`` fine
values it contains as channels), so the network sees the full fine-scale
detail while every input stays on the coarse grid (and tiles with it).
"""
from __future__ import annotations

import warnings

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


# a larger static field is cut by label when more than this share of the fine cells has no value
_MAX_UNCOVERED = 0.05


def fold_covariates(covariates: xr.Dataset | None, stats: dict, fine_shape: tuple[int, int],
                    factor: int, fine_coords: tuple | None = None) -> np.ndarray | None:
    """(len(stats) * factor**2, ny, nx) float32 channels on the coarse grid, in ``stats`` order.

    ``fine_coords``: the fine grid's (y, x) centre coordinates. Given them, covariates that carry
    their own coordinates are taken at those cells by label (nearest within half a fine cell), so
    one static field over a larger domain (a whole country's orography) serves any region and any
    trimmed or regridded grid; without them, or without coordinates, the shapes must match."""
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
        field = _on_fine_cells(_static_2d(covariates[name], cax), cax, fine_coords, name)
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


def spatial_coords(da: xr.DataArray | dict, spatial: tuple[str, str]) -> tuple | None:
    """The (y, x) coordinate values of a grid (a DataArray, or a dict of coordinates), if it has both."""
    coords = da.coords if isinstance(da, xr.DataArray) else da
    if not all(d in coords for d in spatial):
        return None
    return tuple(np.asarray(coords[d]).ravel() for d in spatial)


def _on_fine_cells(cov: xr.DataArray, cax: GridAxes, fine_coords: tuple | None, name) -> np.ndarray:
    """The covariate's values at the fine cells (see :func:`fold_covariates`), float64."""
    labelled = fine_coords is not None and all(d in cov.coords and cov[d].ndim == 1 for d in cax.spatial)
    if not labelled:
        return cov.values.astype("float64")
    assert fine_coords is not None
    want = {d: np.asarray(c, dtype="float64") for d, c in zip(cax.spatial, fine_coords)}
    if all(cov.sizes[d] == len(want[d]) and np.allclose(cov[d].values, want[d]) for d in cax.spatial):
        return cov.values.astype("float64")
    index = {}
    for d, c in want.items():
        tolerance = 0.5 * float(np.min(np.abs(np.diff(c)))) if len(c) > 1 else np.inf
        index[d] = cov.indexes[d].get_indexer(c, method="nearest", tolerance=tolerance)  # -1: no cell near
    values = cov.values.astype("float64")[np.ix_(index[cax.y].clip(min=0), index[cax.x].clip(min=0))]
    inside = (index[cax.y] >= 0)[:, None] & (index[cax.x] >= 0)[None, :]
    uncovered = 1.0 - float(inside.mean())
    if uncovered > _MAX_UNCOVERED:
        raise DataError(f"covariate {name!r} covers only {100 * (1 - uncovered):.0f} % of the fine grid by its "
                        f"coordinates ({cax.y}, {cax.x}); give it over the whole domain of the target")
    if uncovered > 0:
        warnings.warn(f"covariate {name!r} has no value within half a fine cell of {100 * uncovered:.1f} % of the "
                      "fine cells (at the edges of its domain); they take its mean", stacklevel=4)
    return np.where(inside, values, np.nan)
