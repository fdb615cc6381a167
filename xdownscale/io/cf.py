"""CF-1.8 metadata for downscaled output: fine coordinates, cell bounds,
variable and global attributes, and attribute values netCDF can store.

The high-resolution grid is derived from the *bounds* of the coarse cells
(each split into ``factor`` equal parts), so it is right for ascending and
descending latitude, 0..360 and -180..180 longitude and projected ``y``/``x``.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import DataError
from ..grid.cf import GridAxes, cell_bounds, find_axes, grid_mapping

__all__ = ["add_bounds", "add_cf_attrs", "fine_coordinates", "sanitize_attrs", "to_cf_dataset"]

_LAT_ATTRS = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}
_LON_ATTRS = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
_Y_ATTRS = {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "axis": "Y"}
_X_ATTRS = {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "axis": "X"}
_TIME_ATTRS = {"standard_name": "time", "long_name": "time", "axis": "T"}
# what readers write where no CF standard name exists: not a name, so never written
_PLACEHOLDER_NAMES = ("", "unknown", "undefined", "none")
# encoding keys that describe how values are stored, and so survive a re-write;
# chunking/compression keys from an input file are dropped (they may not fit).
_KEEP_ENCODING = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units", "calendar",
                  "grid_mapping")


def _axes(obj, axes: GridAxes | None) -> GridAxes:
    return axes if axes is not None else find_axes(obj)


def _default_coord_attrs(axes: GridAxes, dim: str) -> dict:
    if axes.kind == "latlon":
        return dict(_LAT_ATTRS if dim == axes.y else _LON_ATTRS)
    return dict(_Y_ATTRS if dim == axes.y else _X_ATTRS)


def _coord_attrs(obj, axes: GridAxes, dim: str) -> dict:
    """The coordinate's own attrs completed with the standard CF ones (never overriding)."""
    attrs = dict(obj.coords[dim].attrs) if dim in obj.coords else {}
    for key, value in _default_coord_attrs(axes, dim).items():
        attrs.setdefault(key, value)
    return attrs


def fine_coordinates(lr: xr.DataArray, factor: int, axes: GridAxes | None = None) -> dict:
    """High-resolution centre coordinates for the y/x dims of a coarse field.

    Each coarse cell (its CF bounds if ``lr`` carries them, else halfway
    between neighbouring centres) is split into ``factor`` equal parts and the
    midpoints of the parts are the fine centres, in the coarse order (so a
    0..360 grid whose first centre is 0 gets a first fine centre just below 0:
    the coordinate stays monotonic). Returns
    ``{dim: DataArray}`` for the two spatial dims, ready for
    ``assign_coords``; coordinate attrs are kept (minus a stale ``bounds``)
    and the standard CF ones added where missing.
    """
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
        raise DataError(f"factor must be a positive integer, got {factor!r}")
    axes = _axes(lr, axes)
    out = {}
    for dim in axes.spatial:
        is_lat = axes.kind == "latlon" and dim == axes.y
        b = cell_bounds(lr, dim, is_latitude=is_lat)  # (n, 2), first column on the previous cell's side
        frac = (np.arange(factor, dtype="float64") + 0.5) / factor
        centres = (b[:, :1] + (b[:, 1:] - b[:, :1]) * frac[None, :]).reshape(-1)
        dtype = lr.coords[dim].dtype if dim in lr.coords else np.dtype("float64")
        if not np.issubdtype(dtype, np.floating):
            dtype = np.dtype("float64")
        attrs = _coord_attrs(lr, axes, dim)
        attrs.pop("bounds", None)  # the coarse bounds variable does not describe the fine cells
        out[dim] = xr.DataArray(centres.astype(dtype), dims=(dim,), attrs=attrs, name=dim)
    return out


def add_bounds(ds: xr.Dataset, axes: GridAxes | None = None) -> xr.Dataset:
    """Add ``<dim>_bnds`` (dims ``(dim, "bnds")``) for the spatial dims of ``ds``.

    Existing bounds named by a coordinate's ``bounds`` attribute are reused.
    Latitude bounds are clipped to [-90, 90]. The bounds are data variables
    (not coordinates) so that xarray does not list them in a ``coordinates``
    attribute when writing; the coordinates point at them via ``bounds``.
    """
    if isinstance(ds, xr.DataArray):
        raise TypeError("add_bounds expects an xarray.Dataset; use da.to_dataset() or to_cf_dataset(da)")
    axes = _axes(ds, axes)
    ds = ds.copy()
    for dim in axes.spatial:
        if dim not in ds.coords:
            continue
        is_lat = axes.kind == "latlon" and dim == axes.y
        old = ds.coords[dim].attrs.get("bounds") or ds.coords[dim].encoding.get("bounds")
        if old and old in ds.variables and ds.variables[old].dims[:1] == (dim,) and ds.variables[old].ndim == 2:
            b = np.asarray(ds.variables[old].values, dtype="float64")
        elif ds.sizes[dim] > 1:  # cf-xarray's guess: halfway between centres
            guess = xr.Dataset(coords={dim: ds[dim].variable}).cf.add_bounds(dim, output_dim="bnds")
            b = np.asarray(guess[f"{dim}_bounds"].transpose(dim, "bnds").values, dtype="float64")
        else:
            b = cell_bounds(ds, dim, is_latitude=is_lat)
        if is_lat:
            b = np.clip(b, -90.0, 90.0)
        name = f"{dim}_bnds"
        if old and old != name and old in ds.variables:
            ds = ds.drop_vars(old)
        if name in ds.coords:
            ds = ds.drop_vars(name)
        ds[name] = xr.Variable((dim, "bnds"), b.astype(ds.coords[dim].dtype if np.issubdtype(
            ds.coords[dim].dtype, np.floating) else "float64"))
        ds[dim].attrs["bounds"] = name
    return ds


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def history_line(model: str, factor: int, constraint: str, checkpoint_hash: str | None,
                 precision: str | None = None) -> str:
    """The line :func:`add_cf_attrs` appends to ``history`` (``precision``: the network's arithmetic)."""
    return (f"{_utc_now()} xdownscale {__version__}: downscaled x{int(factor)} with model={model} "
            f"constraint={constraint} checkpoint_sha256={checkpoint_hash or 'none'}"
            + (f" precision={precision}" if precision else ""))


def _append_history(old, line: str) -> str:
    old = str(old).rstrip("\n") if old not in (None, "") else ""
    return f"{old}\n{line}" if old else line


def add_cf_attrs(
    da: xr.DataArray,
    *,
    source: xr.DataArray | None = None,
    model: str,
    factor: int,
    constraint: str = "none",
    checkpoint_hash: str | None = None,
    extra: dict | None = None,
    precision: str | None = None,
) -> xr.DataArray:
    """CF attributes and provenance for a downscaled field.

    ``standard_name``, ``units`` and ``long_name`` come from ``source`` (the
    coarse input) when it has them, else from ``da`` itself; a
    ``standard_name`` is never guessed. ``long_name`` defaults to the variable
    name. ``cell_methods`` gets ``area: mean``, ``grid_mapping`` is kept, and a
    line is appended to ``history``. Returns a new DataArray (data untouched,
    so Dask arrays stay lazy).
    """
    src = source if source is not None else da
    attrs = dict(da.attrs)
    for key in ("standard_name", "units", "long_name"):
        if key in src.attrs and src.attrs[key] not in (None, ""):
            attrs[key] = src.attrs[key]
    name = da.name if da.name is not None else (source.name if source is not None else None)
    if not attrs.get("long_name") and name is not None:
        attrs["long_name"] = str(name)
    methods = str(src.attrs.get("cell_methods", attrs.get("cell_methods", "")) or "").strip()
    if "area: mean" not in methods:
        methods = (methods + " area: mean").strip()
    attrs["cell_methods"] = methods
    out = da.copy(deep=False)
    gm = grid_mapping(src)
    if gm:
        attrs["grid_mapping"] = gm
        # carry the grid-mapping variable along when the source holds it as a scalar coordinate
        if gm in src.coords and gm not in out.coords and src.coords[gm].ndim == 0:
            out = out.assign_coords({gm: src.coords[gm]})
    attrs["history"] = _append_history(src.attrs.get("history", attrs.get("history")),
                                       history_line(model, factor, constraint, checkpoint_hash, precision))
    attrs["xdownscale_model"] = str(model)
    attrs["xdownscale_factor"] = np.int32(factor)  # a plain int would be stored as 64-bit (not CF-1.8)
    attrs["xdownscale_constraint"] = str(constraint)
    attrs["xdownscale_checkpoint_sha256"] = str(checkpoint_hash) if checkpoint_hash else "none"
    if precision:
        attrs["xdownscale_precision"] = str(precision)
    if extra:
        attrs.update(extra)
    out.attrs = sanitize_attrs(attrs)
    if name is not None:
        out.name = name
    return out


def _sanitize_value(value):
    """A netCDF-storable version of an attribute value, or None to drop it."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, bytes, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, sort_keys=True)
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return value.astype("int8")
        if value.dtype.kind in "iuf":
            return value
        return json.dumps(value.tolist(), default=str)
    if isinstance(value, (list, tuple)):
        if len(value) and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                              for v in value):
            return np.asarray(value)
        if len(value) and all(isinstance(v, (bool, np.bool_)) for v in value):
            return np.asarray(value, dtype="int8")
        if all(isinstance(v, str) for v in value):
            return ", ".join(value)
        return json.dumps(list(value), default=str)
    if isinstance(value, (_dt.datetime, _dt.date, np.datetime64)):
        return str(value)
    return str(value)


def sanitize_attrs(attrs: Mapping) -> dict:
    """Attributes netCDF can store: None dropped, bools to int, dicts to JSON strings."""
    out = {}
    for key, value in attrs.items():
        v = _sanitize_value(value)
        if v is not None:
            out[str(key)] = v
    return out


def _clean_encoding(var: xr.Variable) -> None:
    var.encoding = {k: v for k, v in var.encoding.items() if k in _KEEP_ENCODING}


def _is_datetime(var) -> bool:
    return np.issubdtype(var.dtype, np.datetime64) or (
        var.dtype == object and var.size > 0 and hasattr(var.values.flat[0], "calendar"))


def _encode_times(ds: xr.Dataset) -> None:
    """Every datetime and timedelta coordinate (scalar ones too, such as cfgrib's ``time``,
    ``step`` and ``valid_time``): units/calendar moved to encoding, no ``_FillValue`` (CF
    forbids it on coordinates) and float64 storage (CF-1.8 has no 64-bit integers)."""
    for name in list(ds.coords):
        var = ds[name]
        is_td = np.issubdtype(var.dtype, np.timedelta64)
        if not (is_td or _is_datetime(var)):
            continue
        attrs, enc = dict(var.attrs), dict(var.encoding)
        for key in ("units", "calendar"):  # xarray refuses these in attrs of datetime variables
            if key in attrs:
                enc.setdefault(key, attrs.pop(key))
        if is_td:
            enc.pop("calendar", None)
        if var.dtype == object and "calendar" not in enc:
            enc["calendar"] = var.values.flat[0].calendar
        enc["_FillValue"] = None
        if np.dtype(enc.get("dtype", "int64")).kind in "iu":
            enc["dtype"] = "float64"
        ds[name].attrs, ds[name].encoding = attrs, enc


def _valid_times(ds: xr.Dataset, time: str):
    """Valid times along ``time`` (a 1-D array), from a ``valid_time``-like coordinate on
    ``(time,)`` or scalar, or from ``time + step``; None when they vary along another dim."""
    for name, c in ds.coords.items():
        if name != time and c.dims in ((), (time,)) and _is_datetime(c) and (
                name == "valid_time" or c.attrs.get("standard_name") == "time"):
            return np.broadcast_to(np.asarray(c.values), ds[time].shape)
    step = next((c for c in ds.coords.values() if np.issubdtype(c.dtype, np.timedelta64)
                 and c.attrs.get("standard_name", "forecast_period") == "forecast_period"), None)
    if step is None:
        return np.asarray(ds[time].values)  # nothing says otherwise: the reference time is the valid time
    if step.dims not in ((), (time,)):
        return None
    return np.asarray(ds[time].values) + np.broadcast_to(np.asarray(step.values), ds[time].shape)


def _time_axis_standard_name(ds: xr.Dataset, time: str) -> xr.Dataset:
    """The time dimension's coordinate must be the valid time (CF: ``standard_name="time"``).

    GRIB data opened with cfgrib label it ``forecast_reference_time`` (the model run). Then
    the coordinate takes the valid times (run + step; the same values for analyses) and the
    run times are kept as the auxiliary coordinate ``forecast_reference_time``. When the valid
    time varies along another dimension too (runs x steps), the dimension is a run axis, not a
    time axis, and is renamed ``forecast_reference_time``."""
    t = ds[time]
    std = t.attrs.get("standard_name")
    if std in (None, "time") or not _is_datetime(t):
        return ds
    if std != "forecast_reference_time":  # a label that does not fit a time axis: replace it
        ds[time].attrs = {**t.attrs, "standard_name": "time"}
        return ds
    valid = _valid_times(ds, time)
    if valid is None:
        new = "forecast_reference_time"
        if new in ds.variables:
            ds = ds.drop_vars(new)
        return ds.rename({time: new})
    ref = ds[time].variable.copy()
    attrs = {k: v for k, v in t.attrs.items() if k not in ("standard_name", "long_name", "axis")}
    ds = ds.assign_coords({time: (time, np.asarray(valid, dtype=t.dtype),
                                  {**attrs, "standard_name": "time", "long_name": "time", "axis": "T"})})
    if not np.array_equal(np.asarray(ref.values), np.asarray(valid)):
        ref.attrs = {k: v for k, v in ref.attrs.items() if k != "axis"}
        ds = ds.assign_coords(forecast_reference_time=ref)
    return ds


def _cf_time(ds: xr.Dataset, time: str | None) -> xr.Dataset:
    """Make the time coordinates encodable and the time axis a CF ``time`` coordinate.

    A dimension *named* ``time`` is treated as a time axis even when another one (cfgrib's
    ``step``) was found first: checkers expect its coordinate to have ``standard_name="time"``."""
    for dim in dict.fromkeys(d for d in (time, "time") if d is not None and d in ds.dims and d in ds.coords):
        ds = _time_axis_standard_name(ds, dim)
        if dim in ds.coords:
            t = ds[dim]
            if _is_datetime(t) or ("units" in t.attrs and "since" in str(t.attrs["units"])):
                attrs = dict(t.attrs)
                for key, value in _TIME_ATTRS.items():
                    attrs.setdefault(key, value)
                ds[dim].attrs = attrs
    _encode_times(ds)
    return ds


def to_cf_dataset(obj: xr.DataArray | xr.Dataset, *, title: str | None = None) -> xr.Dataset:
    """A CF-1.8 Dataset ready to write to netCDF or Zarr.

    A DataArray becomes a one-variable Dataset (it needs a name). Spatial
    bounds are added, coordinates get their CF attributes, the time
    coordinate is made encodable, attributes netCDF cannot store are converted
    (None dropped, bools to int, dicts to JSON) and the global attributes
    ``Conventions``, ``title``, ``institution``, ``source`` and ``history``
    are set. Data values are not touched (Dask arrays stay lazy).
    """
    if isinstance(obj, xr.DataArray):
        if obj.name is None:
            raise DataError(
                "the DataArray has no name, and a netCDF/Zarr variable needs one: "
                "set it with da.rename('tas') (or da.name = 'tas') before writing."
            )
        var_attrs = dict(obj.attrs)
        ds = obj.to_dataset().copy()  # to_dataset shares Variable objects with obj
        ds.attrs = {}
        if "history" in var_attrs:
            ds.attrs["history"] = var_attrs["history"]
        for key in ("title", "institution", "source", "references", "comment"):
            if key in var_attrs:
                ds.attrs.setdefault(key, var_attrs[key])
    elif isinstance(obj, xr.Dataset):
        ds = obj.copy()
    else:
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")

    try:
        axes = find_axes(ds)
    except Exception:  # no recognisable horizontal grid: write as is, without bounds
        axes = None
    if axes is not None:
        for dim in axes.spatial:
            if dim in ds.coords:
                ds[dim].attrs = _coord_attrs(ds, axes, dim)
        ds = add_bounds(ds, axes)
        ds = _cf_time(ds, axes.time)
    else:
        ds = _cf_time(ds, next((d for d in ("time", "valid_time") if d in ds.dims), None))

    for name, var in ds.variables.items():
        attrs = sanitize_attrs(var.attrs)
        attrs.pop("coordinates", None)  # xarray writes this itself
        if "standard_name" in attrs and str(attrs["standard_name"]).strip().lower() in _PLACEHOLDER_NAMES:
            attrs.pop("standard_name")  # cfgrib writes "unknown" where GRIB has no CF name
        var.attrs = attrs
        _clean_encoding(var)
        if name in ds.coords or name.endswith("_bnds") or "bnds" in var.dims:
            # coordinates and bounds must not carry missing values
            if np.issubdtype(var.dtype, np.floating) or np.issubdtype(var.dtype, np.datetime64):
                var.encoding["_FillValue"] = None
        # bounds inherit units/standard_name from their coordinate by CF rules: drop conflicting ones
        if "bnds" in var.dims:
            for key in ("units", "standard_name", "axis", "long_name"):
                var.attrs.pop(key, None)

    for name, var in ds.variables.items():
        # a grid_mapping reference goes into encoding: xarray then writes the attribute but does not
        # list the grid-mapping variable in ``coordinates`` (it is not an auxiliary coordinate)
        gm = var.attrs.get("grid_mapping")
        if isinstance(gm, str) and gm in ds.variables and name not in ds.coords:
            var.encoding["grid_mapping"] = var.attrs.pop("grid_mapping")
        if var.encoding.get("grid_mapping") not in ds.variables:
            var.encoding.pop("grid_mapping", None)  # names a variable that is not there
        # CF-1.8 has no 64-bit integers: store them as int (32 bit) when the values fit
        enc_dtype = var.encoding.get("dtype")
        if enc_dtype is not None and np.dtype(enc_dtype).kind in "iu" and np.dtype(enc_dtype).itemsize == 8:
            var.encoding.pop("dtype")  # a 64-bit integer from the source file (cfgrib's ``number``)
        if var.dtype.kind in "iu" and var.dtype.itemsize == 8 and "dtype" not in var.encoding \
                and not isinstance(var.data, _dask_array_type()):
            v = np.asarray(var.values)
            if v.size == 0 or (v.min() >= np.iinfo("int32").min and v.max() <= np.iinfo("int32").max):
                var.encoding["dtype"] = "int32"

    names = list(ds.data_vars)
    main = [n for n in names if not n.endswith("_bnds")]
    g = sanitize_attrs(ds.attrs)
    g["Conventions"] = "CF-1.8"
    if title is not None:
        g["title"] = title
    elif not g.get("title"):
        g["title"] = f"{', '.join(main) or 'data'} downscaled with xdownscale"
    g.setdefault("institution", f"xdownscale {__version__}")
    g["source"] = _join_source(g.get("source"), f"xdownscale {__version__}")
    if not g.get("history"):
        lines = [str(ds[n].attrs["history"]) for n in main if ds[n].attrs.get("history")]
        g["history"] = "\n".join(dict.fromkeys(lines)) if lines else f"{_utc_now()} xdownscale {__version__}: written"
    ds.attrs = g
    return ds


def _dask_array_type():
    try:
        import dask.array

        return dask.array.Array
    except ImportError:  # pragma: no cover - dask is a dependency
        return ()


def _join_source(old, new: str) -> str:
    old = str(old).strip() if old else ""
    return new if not old or new in old else f"{old}; {new}"
