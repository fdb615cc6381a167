"""A small YAML data catalog: open named sources as :class:`xarray.Dataset`.

Each source in the catalog (``data_catalog.yaml``) has::

    sources:
      era5-us:
        description: ERA5 over the contiguous US, one time
        url: ${XDOWNSCALE_DATA:-../shared/data}/era5-samples/era5_1995-07-14T12.nc
        engine: netcdf4            # zarr, netcdf4, h5netcdf or cfgrib
        variables: [t2m, sp]       # optional: keep only these (names in the file)
        open_kwargs: {chunks: {}}  # optional: passed to xarray.open_dataset
        rename: {t2m: tas}         # optional: applied after ``variables``
        sel:                       # optional: applied after ``rename`` with .sel
          latitude: [45, 30]       #   [start, stop] -> slice(start, stop)
        licence: ...
        citation: ...

``url`` is a local path or a remote URL (``gs://``, ``s3://``, ``https://``).
``${VAR}``, ``${VAR:-default}`` (default when unset or empty) and
``${VAR-default}`` (default when unset) are expanded from the environment, and
a leading ``~`` is the home directory. A relative local path is relative to the
directory of the YAML file; for the copy shipped inside the package, the
project root of a source checkout and the working directory are tried too.
Set ``XDOWNSCALE_DATA`` to point the shipped local entries at your data folder.

``sel`` slices follow the order of the coordinate: on a descending coordinate
(latitude 90..-90) ``[30, 45]`` and ``[45, 30]`` select the same band.

GRIB files (engine ``cfgrib``) are opened without index files (the data may be
read-only) and tidied: a forecast ``step`` dimension becomes a ``time``
dimension holding the valid times (the run start is kept in the attribute
``forecast_reference_time``) and the scalar level/member coordinates cfgrib
adds (``step``, ``surface``, ``heightAboveGround``, ``number``, ...) are
dropped, so fields open as (time, latitude, longitude).

The default catalog is ``$XDOWNSCALE_CATALOG`` if set, else the
``data_catalog.yaml`` shipped with the package.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from .errors import XDownscaleError

__all__ = ["CatalogError", "default_catalog_path", "list_catalog", "open_catalog"]

ENGINES = ("zarr", "netcdf4", "h5netcdf", "cfgrib")
ENTRY_FIELDS = ("description", "url", "engine", "variables", "open_kwargs", "rename", "sel", "licence", "citation")
CLOUD_HINT = 'pip install "xdownscale[cloud]"'
# packages an fsspec protocol needs (besides fsspec itself)
_PROTOCOL_PACKAGES = {
    "gs": ("gcsfs", CLOUD_HINT),
    "gcs": ("gcsfs", CLOUD_HINT),
    "s3": ("s3fs", "pip install s3fs"),
    "s3a": ("s3fs", "pip install s3fs"),
    "az": ("adlfs", "pip install adlfs"),
    "abfs": ("adlfs", "pip install adlfs"),
    "http": ("aiohttp", 'pip install "fsspec[http]"'),
    "https": ("aiohttp", 'pip install "fsspec[http]"'),
}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
_PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE_CATALOG = _PACKAGE_DIR / "data_catalog.yaml"


class CatalogError(XDownscaleError, KeyError):
    """An unknown source name or a malformed catalog entry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- loading


def default_catalog_path() -> Path:
    """``$XDOWNSCALE_CATALOG`` if set, else the catalog shipped with the package."""
    env = os.environ.get("XDOWNSCALE_CATALOG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"XDOWNSCALE_CATALOG={env!r} does not name a file; point it at a data_catalog.yaml "
                "or unset it to use the catalog shipped with xdownscale"
            )
        return path
    return _PACKAGE_CATALOG


def _load(catalog) -> tuple[dict, list[Path]]:
    """The ``sources`` mapping and the directories relative local paths are tried in."""
    if isinstance(catalog, Mapping):
        doc, bases = copy.deepcopy(dict(catalog)), [Path.cwd()]
    else:
        import yaml

        path = Path(catalog).expanduser() if catalog is not None else default_catalog_path()
        if not path.is_file():
            raise FileNotFoundError(f"data catalog {str(path)!r} not found")
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        bases = [path.resolve().parent]
        if path.resolve() == _PACKAGE_CATALOG:
            # the shipped copy: also the project root of a source checkout, then the cwd
            bases += [_PACKAGE_DIR.parent, Path.cwd()]
    if not isinstance(doc, Mapping):
        raise CatalogError(f"a data catalog must be a mapping of sources, got {type(doc).__name__}")
    sources = doc.get("sources", doc)
    if not isinstance(sources, Mapping):
        raise CatalogError("the 'sources' key of a data catalog must be a mapping of named sources")
    return {str(k): v for k, v in sources.items()}, bases


def list_catalog(catalog=None) -> dict:
    """The sources of a catalog: ``{name: entry}`` with entries as written in the YAML.

    ``catalog`` is a path to a YAML file, an already loaded mapping, or None for
    the default catalog.
    """
    sources, _ = _load(catalog)
    return copy.deepcopy(sources)


# --------------------------------------------------------------------------- urls


def expand_env(value: str) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` from the environment."""

    def repl(m: re.Match) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3)
        val = os.environ.get(name)
        if op == ":-" and not val:
            return default
        if op == "-" and val is None:
            return default
        if val is None:
            raise CatalogError(
                f"environment variable {name!r} used in the data catalog is not set; set it or "
                f"write ${{{name}:-default}} in the catalog"
            )
        return val

    return _ENV.sub(repl, value)


def _expand_all(obj):
    if isinstance(obj, str):
        return expand_env(obj)
    if isinstance(obj, Mapping):
        return {k: _expand_all(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_all(v) for v in obj]
    return obj


def _protocol(url: str) -> str | None:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if not m or m.group(1).lower() == "file":
        return None
    return m.group(1).lower()


def _require_remote(url: str, protocol: str) -> None:
    package, hint = _PROTOCOL_PACKAGES.get(protocol, (None, CLOUD_HINT))
    for mod in ("fsspec",) + ((package,) if package else ()):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ImportError(
                f"opening {url!r} needs the '{mod}' package ({protocol}:// is read through fsspec); "
                f"install it with: {hint}"
            ) from exc


def _resolve_local(url: str, bases: list[Path]) -> Path:
    if url.startswith("file://"):
        url = url[len("file://"):]
    path = Path(url).expanduser()
    if path.is_absolute():
        return path
    candidates = [(b / path).resolve() for b in bases]
    return next((c for c in candidates if c.exists()), candidates[0])


# --------------------------------------------------------------------------- tidying


def _tidy_grib(ds: xr.Dataset) -> xr.Dataset:
    """Forecast steps -> ``time`` (valid times); drop cfgrib's scalar coordinates."""
    if "step" in ds.dims and "valid_time" in ds.coords and ds["valid_time"].dims == ("step",):
        if "time" in ds.coords and ds["time"].ndim == 0:
            ds.attrs["forecast_reference_time"] = str(np.datetime_as_string(ds["time"].values, unit="s"))
            ds = ds.drop_vars("time")
        ds = ds.swap_dims({"step": "valid_time"}).drop_vars("step").rename({"valid_time": "time"})
        ds["time"].attrs.update({"standard_name": "time", "long_name": "valid time"})
    elif "time" not in ds.coords and "valid_time" in ds.coords and ds["valid_time"].ndim == 0:
        ds = ds.rename({"valid_time": "time"})
    scalar = [c for c in ds.coords if ds[c].ndim == 0 and c != "time"]
    return ds.drop_vars(scalar)


def _indexer(ds: xr.Dataset, dim: str, value):
    """A ``[start, stop]`` list -> slice, oriented like the coordinate; other values unchanged."""
    if not isinstance(value, (list, tuple)):
        return value
    if len(value) not in (2, 3):
        raise CatalogError(f"sel[{dim!r}] must be [start, stop] (or [start, stop, step]), got {value!r}")
    start, stop = value[0], value[1]
    step = value[2] if len(value) == 3 else None
    if dim in ds.coords and ds[dim].ndim == 1 and ds.sizes[dim] > 1 and start is not None and stop is not None:
        c = ds[dim].values
        if np.issubdtype(c.dtype, np.number) and isinstance(start, (int, float)) and isinstance(stop, (int, float)):
            descending = c[0] > c[-1]
            if (start > stop) != descending:
                start, stop = stop, start
    return slice(start, stop, step)


def _apply(ds: xr.Dataset, entry: dict, name: str) -> xr.Dataset:
    variables = entry.get("variables")
    if variables:
        variables = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise CatalogError(
                f"source {name!r} has no variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}"
            )
        ds = ds[variables]
    rename = entry.get("rename")
    if rename:
        unknown = [k for k in rename if k not in ds.variables and k not in ds.dims]
        if unknown:
            raise CatalogError(f"source {name!r}: cannot rename {unknown}, not in the dataset")
        ds = ds.rename(dict(rename))
    sel = entry.get("sel")
    if sel:
        unknown = [k for k in sel if k not in ds.dims and k not in ds.coords]
        if unknown:
            raise CatalogError(f"source {name!r}: cannot select on {unknown}; dimensions are {tuple(ds.dims)}")
        ds = ds.sel({k: _indexer(ds, k, v) for k, v in sel.items()})
    return ds


# --------------------------------------------------------------------------- opening


def open_catalog(name: str, *, catalog=None, **overrides) -> xr.Dataset:
    """Open the source ``name`` of a data catalog as an :class:`xarray.Dataset` (lazily).

    ``catalog``: a YAML path, a loaded mapping, or None for the default catalog
    (``$XDOWNSCALE_CATALOG``, else the copy shipped with the package).
    ``overrides``: keywords named like entry fields (``url``, ``engine``,
    ``variables``, ``rename``, ``sel``) replace the entry's; ``open_kwargs``
    is merged into the entry's; any other keyword (``chunks={}``, ...) is passed
    on to :func:`xarray.open_dataset`.
    """
    sources, bases = _load(catalog)
    if name not in sources:
        close = difflib.get_close_matches(str(name), list(sources), n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise CatalogError(
            f"no source {name!r} in the data catalog.{hint} Available sources: {', '.join(sorted(sources))}"
        )
    entry = dict(sources[name] or {})
    extra_open = dict(overrides.pop("open_kwargs", None) or {})
    for key in list(overrides):
        if key in ENTRY_FIELDS:
            entry[key] = overrides.pop(key)
    extra_open.update(overrides)

    if not entry.get("url"):
        raise CatalogError(f"source {name!r} has no 'url'")
    engine = entry.get("engine")
    if engine not in ENGINES:
        raise CatalogError(f"source {name!r}: engine must be one of {ENGINES}, got {engine!r}")
    url = expand_env(str(entry["url"]))
    open_kwargs = _expand_all(dict(entry.get("open_kwargs") or {}))
    open_kwargs.update(extra_open)

    protocol = _protocol(url)
    if protocol is not None:
        _require_remote(url, protocol)
        target: Any = url
        if engine != "zarr":
            # netCDF/GRIB over fsspec: open a file object
            import fsspec

            target = fsspec.open(url, mode="rb", **(open_kwargs.pop("storage_options", None) or {})).open()
    else:
        path = _resolve_local(url, bases)
        if not path.exists():
            raise FileNotFoundError(
                f"source {name!r}: {str(path)!r} does not exist (url {entry['url']!r}). Set XDOWNSCALE_DATA "
                "to the folder holding the data, or fix the url in the catalog."
            )
        target = str(path)
        open_kwargs.pop("storage_options", None)

    if engine == "cfgrib":
        try:
            importlib.import_module("cfgrib")
        except ImportError as exc:
            raise ImportError(f'source {name!r} is GRIB: install cfgrib with pip install "xdownscale[grib]"') from exc
        bk = dict(open_kwargs.get("backend_kwargs") or {})
        bk.setdefault("indexpath", "")  # never write .idx files beside (read-only) data
        open_kwargs["backend_kwargs"] = bk

    ds = xr.open_dataset(target, engine=engine, **open_kwargs)
    if engine == "cfgrib":
        ds = _tidy_grib(ds)
    ds = _apply(ds, entry, name)
    ds.attrs["catalog_source"] = name
    if entry.get("licence"):
        ds.attrs.setdefault("licence", str(entry["licence"]).strip())
    if entry.get("citation"):
        ds.attrs.setdefault("references", str(entry["citation"]).strip())
    return ds
