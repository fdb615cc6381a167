"""Find the horizontal and time axes of a field and describe its cells.

Axes are found through CF attributes first (``standard_name``, ``axis``,
``units``), then through common names. Latitude may be ascending or
descending, longitude -180..180 or 0..360. Projected grids (radar composites,
regional models with dims ``y``/``x``) are recognised too: they get uniform
cell weights and keep their ``grid_mapping``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import GridError

_LAT_NAMES = ("lat", "latitude", "nav_lat", "rlat", "y_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon", "rlon", "x_lon")
_Y_NAMES = ("y", "projection_y_coordinate", "north_south", "rows", "row")
_X_NAMES = ("x", "projection_x_coordinate", "west_east", "cols", "col")
_TIME_NAMES = ("time", "valid_time", "t", "date")
_LAT_UNITS = ("degrees_north", "degree_north", "degree_n", "degrees_n")
_LON_UNITS = ("degrees_east", "degree_east", "degree_e", "degrees_e")


@dataclass(frozen=True)
class GridAxes:
    """Names of the spatial (and time) dimensions of a field.

    ``kind`` is ``"latlon"`` when ``y``/``x`` are latitude/longitude in
    degrees, ``"projected"`` otherwise.
    """

    y: str
    x: str
    time: str | None
    kind: str

    @property
    def spatial(self) -> tuple[str, str]:
        return (self.y, self.x)


def _attrs(obj, dim: str) -> dict:
    return dict(obj.coords[dim].attrs) if dim in obj.coords else {}


def _is_latitude(obj, dim: str) -> bool:
    a = _attrs(obj, dim)
    return (a.get("standard_name") == "latitude"
            or str(a.get("units", "")).lower() in _LAT_UNITS
            or dim.lower() in _LAT_NAMES)


def _is_longitude(obj, dim: str) -> bool:
    a = _attrs(obj, dim)
    return (a.get("standard_name") == "longitude"
            or str(a.get("units", "")).lower() in _LON_UNITS
            or dim.lower() in _LON_NAMES)


def _is_time(obj, dim: str) -> bool:
    a = _attrs(obj, dim)
    if a.get("standard_name") == "time" or a.get("axis") == "T" or dim.lower() in _TIME_NAMES:
        return True
    if dim not in obj.coords:
        return False
    dtype = obj.coords[dim].dtype
    # forecast steps (timedelta64, e.g. cfgrib's 'step') are a time axis too
    return np.issubdtype(dtype, np.datetime64) or np.issubdtype(dtype, np.timedelta64)


def _is_axis(obj, dim: str, axis: str, std: str, names: tuple[str, ...]) -> bool:
    a = _attrs(obj, dim)
    return a.get("axis") == axis or a.get("standard_name") == std or dim.lower() in names


def _first(obj, predicate) -> str | None:
    return next((str(d) for d in obj.dims if predicate(obj, str(d))), None)


def find_axes(obj: xr.DataArray | xr.Dataset) -> GridAxes:
    """Return the names of the latitude/y, longitude/x and time dimensions."""
    time = _first(obj, _is_time)
    lat, lon = _first(obj, _is_latitude), _first(obj, _is_longitude)
    if lat and lon:
        return GridAxes(lat, lon, time, "latlon")
    y = _first(obj, lambda o, d: _is_axis(o, d, "Y", "projection_y_coordinate", _Y_NAMES))
    x = _first(obj, lambda o, d: _is_axis(o, d, "X", "projection_x_coordinate", _X_NAMES))
    if y and x:
        return GridAxes(y, x, time, "projected")
    raise GridError(
        f"could not find the horizontal dimensions among {tuple(obj.dims)}: expected "
        "latitude/longitude (CF standard_name, units or names like 'lat'/'lon') or a "
        "projected 'y'/'x' pair. Rename them, e.g. da.rename({'rows': 'y', 'cols': 'x'})."
    )


def coordinate_values(obj, dim: str) -> np.ndarray:
    """Values of a dimension coordinate, or cell indices if it has none."""
    if dim in obj.coords:
        return np.asarray(obj.coords[dim].values, dtype="float64")
    return np.arange(obj.sizes[dim], dtype="float64")


def bounds_from_centres(centres: np.ndarray) -> np.ndarray:
    """Cell bounds (n, 2) from centres, halfway between neighbours.

    Works for ascending and descending coordinates; the first column is the
    bound on the side of the previous cell.
    """
    c = np.asarray(centres, dtype="float64")
    if c.size == 1:
        return np.array([[c[0] - 0.5, c[0] + 0.5]])
    mid = 0.5 * (c[1:] + c[:-1])
    lo = np.concatenate([[c[0] - (mid[0] - c[0])], mid])
    hi = np.concatenate([mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.stack([lo, hi], axis=1)


def cell_bounds(obj, dim: str, is_latitude: bool = False) -> np.ndarray:
    """CF bounds of ``dim`` if the object carries them, else from the centres."""
    if dim in obj.coords:
        name = obj.coords[dim].attrs.get("bounds")
        if name and name in obj.coords and obj.coords[name].ndim == 2:
            return np.asarray(obj.coords[name].values, dtype="float64")
    b = bounds_from_centres(coordinate_values(obj, dim))
    return np.clip(b, -90.0, 90.0) if is_latitude else b


def latitude_weights(lat: np.ndarray) -> np.ndarray:
    """Relative cell areas of latitude rows: cos(latitude).

    On a regular grid, cos of the centre is proportional to the exact area
    sin(lat_north) - sin(lat_south), so ratios are exact there.
    """
    return np.clip(np.cos(np.deg2rad(np.asarray(lat, dtype="float64"))), 0.0, None)


def area_weights(obj, axes: GridAxes | None = None) -> xr.DataArray:
    """Relative cell areas on (y, x): cos(lat) on lat/lon grids, ones on projected ones."""
    axes = axes or find_axes(obj)
    ny, nx = obj.sizes[axes.y], obj.sizes[axes.x]
    if axes.kind == "latlon":
        wy = latitude_weights(coordinate_values(obj, axes.y))
    else:
        wy = np.ones(ny)
    w = np.broadcast_to(wy[:, None], (ny, nx)).copy()
    coords = {d: obj.coords[d] for d in axes.spatial if d in obj.coords}
    return xr.DataArray(w, dims=axes.spatial, coords=coords, name="cell_weight")


def regular_spacing(values: np.ndarray, name: str, rtol: float = 1e-3) -> float:
    """The constant step of a coordinate; a clear error if it is irregular."""
    v = np.asarray(values, dtype="float64")
    if v.size < 2:
        return 1.0
    d = np.diff(v)
    if not np.allclose(d, d[0], rtol=rtol, atol=1e-9 * max(1.0, abs(d[0]))):
        raise GridError(
            f"coordinate {name!r} is not regularly spaced (steps from {d.min():g} to {d.max():g}); "
            "regrid it to a regular grid first with xdownscale.grid.regrid(da, target)."
        )
    return float(d[0])


def wraps_longitude(obj, axes: GridAxes) -> bool:
    """True for a regular lat/lon grid whose longitudes close the full circle (a global grid):
    its east and west edges are neighbours, so halos there wrap instead of repeating edge values."""
    if axes.kind != "latlon" or obj.sizes[axes.x] < 3:
        return False
    lon = np.asarray(obj[axes.x].values, dtype="float64")
    step = np.diff(lon)
    if not np.allclose(step, step[0], rtol=1e-4, atol=0):
        return False
    return bool(abs(abs(step[0]) * lon.size - 360.0) < 1e-3 * abs(step[0]))
