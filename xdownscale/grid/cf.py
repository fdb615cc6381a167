"""Find the horizontal and time axes of a field and describe its cells.

CF metadata is read with cf-xarray (``obj.cf``): axes and coordinates
(``standard_name``, ``axis``, ``units``, ``_CoordinateAxisType``), bounds
variables named by a ``bounds`` attribute (or encoding), bounds guessed from
centres (``cf.add_bounds``, used by :func:`xdownscale.io.add_bounds` for the
files written), bounds-to-vertices conversion and grid mappings.
Latitude may be ascending or descending, longitude -180..180 or 0..360.
Projected grids (radar composites, regional models with dims ``y``/``x``) are
recognised too: they get uniform cell weights and keep their ``grid_mapping``.

What cf-xarray does not do, and is kept here:

* dimensions **without** a coordinate variable, or coordinates without CF
  attributes, are recognised by common names (``lat``, ``nav_lon``, ``y``,
  ``rows``, ...); cf-xarray only reads attributes (its ``guess_coord_axis``
  regexes are looser, e.g. any name starting with ``i``/``j``, so they are not used);
* a time axis of ``timedelta`` values (cfgrib's ``step``) or of datetimes without
  attributes;
* :func:`bounds_from_centres`, cf-xarray's rule in numpy (it runs on every
  prediction; the accessor costs ~300x more), also for a single-cell axis
  (cf-xarray needs two centres), and latitude bounds clipped to [-90, 90];
* cell areas: cos(latitude) weights (cf-xarray only weights by a ``cell_measures``
  variable, which :func:`area_weights` uses when the data carries one);
* the longitude seam of global grids (:func:`wraps_longitude`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cf_xarray  # noqa: F401  (registers the .cf accessor)
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


def _cf_dims(obj) -> dict[str, set[str]]:
    """For each cf-xarray key (``"latitude"``, ``"X"``, ``"T"``, ...), the dimensions along which
    it finds a 1-D coordinate: e.g. cfgrib's ``valid_time`` (standard_name time) marks ``step``."""
    out: dict[str, set[str]] = {}
    for found in (obj.cf.coordinates, obj.cf.axes):
        for key, names in found.items():
            for name in names:
                var = obj.coords[name] if name in obj.coords else obj[name]
                if var.ndim == 1:
                    out.setdefault(key, set()).add(str(var.dims[0]))
    return out


def _attrs(obj, dim: str) -> dict:
    return dict(obj.coords[dim].attrs) if dim in obj.coords else {}


def _by_units(obj, dim: str, units: tuple[str, ...]) -> bool:
    return str(_attrs(obj, dim).get("units", "")).lower() in units


def _is_time_dtype(obj, dim: str) -> bool:
    if dim not in obj.coords:
        return False
    dtype = obj.coords[dim].dtype
    # forecast steps (timedelta64, e.g. cfgrib's 'step') are a time axis too
    return np.issubdtype(dtype, np.datetime64) or np.issubdtype(dtype, np.timedelta64)


def _first(obj, candidates) -> str | None:
    return next((str(d) for d in obj.dims if str(d) in candidates), None)


def find_axes(obj: xr.DataArray | xr.Dataset) -> GridAxes:
    """Return the names of the latitude/y, longitude/x and time dimensions.

    CF attributes are read with cf-xarray; dimensions it cannot place (no coordinate variable,
    no attributes) are recognised by common names, a time axis also by its datetime/timedelta
    values. Among several candidates the first in ``obj.dims`` is taken."""
    dims = [str(d) for d in obj.dims]
    cf = _cf_dims(obj)
    cf_lat, cf_lon = cf.get("latitude", set()), cf.get("longitude", set())
    cf_y, cf_x, cf_t = cf.get("Y", set()), cf.get("X", set()), cf.get("T", set()) | cf.get("time", set())
    time = _first(obj, cf_t | {d for d in dims if d.lower() in _TIME_NAMES or _is_time_dtype(obj, d)})
    lat = _first(obj, cf_lat | {d for d in dims if d.lower() in _LAT_NAMES or _by_units(obj, d, _LAT_UNITS)})
    lon = _first(obj, cf_lon | {d for d in dims if d.lower() in _LON_NAMES or _by_units(obj, d, _LON_UNITS)})
    if lat and lon:
        return GridAxes(lat, lon, time, "latlon")
    y = _first(obj, cf_y | {d for d in dims if d.lower() in _Y_NAMES})
    x = _first(obj, cf_x | {d for d in dims if d.lower() in _X_NAMES})
    if y and x:
        return GridAxes(y, x, time, "projected")
    raise GridError(
        f"could not find the horizontal dimensions among {tuple(obj.dims)}: expected "
        "latitude/longitude (CF standard_name, units or names like 'lat'/'lon') or a "
        "projected 'y'/'x' pair. Rename them, e.g. da.rename({'rows': 'y', 'cols': 'x'})."
    )


def grid_mapping(obj: xr.DataArray | xr.Dataset) -> str | None:
    """The name of the grid-mapping variable of ``obj`` (CF ``grid_mapping``, in attrs or, as
    xarray leaves it with ``decode_coords="all"``, in encoding), or None. Found with cf-xarray
    when the variable is present, else read from the attribute."""
    if isinstance(obj, xr.DataArray):
        try:
            name = obj.cf.grid_mapping_name  # the grid_mapping_name of the variable it names
        except (KeyError, ValueError, AttributeError):
            name = None
        if name is not None:
            found = obj.cf.grid_mapping_names.get(name, [])
            if found:
                return str(found[0])
        gm = obj.attrs.get("grid_mapping") or obj.encoding.get("grid_mapping")
        return str(gm) if isinstance(gm, str) and gm else None
    names = [v for found in obj.cf.grid_mapping_names.values() for v in found]
    return str(names[0]) if len(names) == 1 else None


def coordinate_values(obj, dim: str) -> np.ndarray:
    """Values of a dimension coordinate, or cell indices if it has none."""
    if dim in obj.coords:
        return np.asarray(obj.coords[dim].values, dtype="float64")
    return np.arange(obj.sizes[dim], dtype="float64")


def bounds_from_centres(centres: np.ndarray) -> np.ndarray:
    """Cell bounds (n, 2) from centres, halfway between neighbours, the outer ones half a step out.

    The rule of cf-xarray's ``add_bounds`` (a test checks they agree), written in numpy because it
    runs for every prediction and coarsening: through a Dataset and the accessor it costs ~15 ms
    a call instead of ~0.05 ms. Works for ascending and descending coordinates; the first column
    is the bound on the side of the previous cell. A single centre gets bounds +-0.5 (cf-xarray
    needs two).
    """
    c = np.asarray(centres, dtype="float64")
    if c.size == 1:
        return np.array([[c[0] - 0.5, c[0] + 0.5]])
    mid = 0.5 * (c[1:] + c[:-1])
    lo = np.concatenate([[c[0] - (mid[0] - c[0])], mid])
    hi = np.concatenate([mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.stack([lo, hi], axis=1)


def cell_bounds(obj, dim: str, is_latitude: bool = False) -> np.ndarray:
    """CF bounds (n, 2) of ``dim``: the bounds variable its ``bounds`` attribute names
    (looked up with cf-xarray) if ``obj`` holds it, else halfway between the centres
    (clipped to [-90, 90] for latitude)."""
    if dim in obj.coords and isinstance(obj, xr.Dataset):
        try:
            b = obj.cf.get_bounds(dim)
        except KeyError:
            b = None
        if b is not None and b.ndim == 2 and dim in b.dims:
            return np.asarray(b.transpose(dim, ...).values, dtype="float64")
    if dim in obj.coords:  # a DataArray can carry (n, 2) bounds only as a coordinate on its own dim
        name = obj.coords[dim].attrs.get("bounds")
        if name and name in obj.coords and obj.coords[name].ndim == 2:
            return np.asarray(obj.coords[name].values, dtype="float64")
    b = bounds_from_centres(coordinate_values(obj, dim))
    return np.clip(b, -90.0, 90.0) if is_latitude else b


def cell_vertices(obj, dim: str, is_latitude: bool = False) -> np.ndarray:
    """The n + 1 cell edges along ``dim`` (for ``pcolormesh``), from :func:`cell_bounds`
    with cf-xarray's ``bounds_to_vertices``."""
    from cf_xarray import bounds_to_vertices

    b = xr.DataArray(cell_bounds(obj, dim, is_latitude), dims=(dim, "bnds"),
                     coords={dim: coordinate_values(obj, dim)})  # the order of the centres orders the edges
    return np.asarray(bounds_to_vertices(b, "bnds").values, dtype="float64")


def latitude_weights(lat: np.ndarray) -> np.ndarray:
    """Relative cell areas of latitude rows: cos(latitude).

    On a regular grid, cos of the centre is proportional to the exact area
    sin(lat_north) - sin(lat_south), so ratios are exact there.
    """
    return np.clip(np.cos(np.deg2rad(np.asarray(lat, dtype="float64"))), 0.0, None)


def _cell_measure_area(obj, axes: GridAxes):
    """The CF ``cell_measures: area: VAR`` variable of ``obj`` on exactly (y, x), or None."""
    try:
        names = obj.cf.cell_measures.get("area", [])
    except (KeyError, ValueError, AttributeError):
        return None
    for name in names:
        var = obj.coords[name] if name in obj.coords else (obj[name] if name in obj.variables else None)
        if var is not None and set(var.dims) == set(axes.spatial):
            return np.asarray(var.transpose(*axes.spatial).values, dtype="float64")
    return None


def area_weights(obj, axes: GridAxes | None = None) -> xr.DataArray:
    """Relative cell areas on (y, x): the CF ``cell_measures`` area variable when the data
    carries one (found with cf-xarray), else cos(lat) on lat/lon grids and ones on projected
    ones."""
    axes = axes or find_axes(obj)
    ny, nx = obj.sizes[axes.y], obj.sizes[axes.x]
    w = _cell_measure_area(obj, axes)
    if w is None:
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
