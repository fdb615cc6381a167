"""Atomic writing of downscaled fields to NetCDF or Zarr.

The output is first written to a hidden temporary sibling
(``.<name>.tmp-<pid>-<random>``) and then renamed onto the destination, so a
crash, an exception or a Ctrl-C midway never leaves a half-written file under
the final name, and an existing destination is only replaced by a complete one.
Dask-backed data is streamed to disk chunk by chunk, never loaded whole.

A process killed outright (``kill -9``, out of memory, a batch time limit) cannot
remove its temporary; the next write of the same destination does: temporaries of
that destination whose writing process no longer runs on this machine are deleted
first (on Windows, where that cannot be checked cheaply, they are left).
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import warnings

import numpy as np
import xarray as xr

from ..errors import DataError
from .atomic import commit, remove, remove_stale_temporaries, sibling
from .cf import to_cf_dataset

__all__ = ["write"]

log = logging.getLogger("xdownscale")

_SUFFIXES = {".nc": "netcdf", ".nc4": "netcdf", ".netcdf": "netcdf", ".zarr": "zarr"}
_FORMATS = {"netcdf": "netcdf", "nc": "netcdf", "netcdf4": "netcdf", "zarr": "zarr"}


def _format(path: pathlib.Path, format: str | None) -> str:
    if format is not None:
        fmt = _FORMATS.get(str(format).lower())
        if fmt is None:
            raise DataError(f"unknown format {format!r}: use 'netcdf' or 'zarr'")
        return fmt
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the output format from the suffix of {str(path)!r}: name it '*.nc' "
            "(NetCDF) or '*.zarr' (Zarr), or pass format='netcdf' / format='zarr'."
        )
    return fmt


def _netcdf_encoding(ds: xr.Dataset) -> dict:
    enc = {}
    for name, var in ds.variables.items():
        e = dict(var.encoding)  # the ``encoding=`` argument replaces, not updates, var.encoding
        if name in ds.data_vars and np.issubdtype(var.dtype, np.floating) and var.ndim > 0:
            e.update(zlib=True, complevel=4)
            if var.chunks is not None:
                # netCDF chunks follow the dask chunks (capped by the dim sizes)
                e["chunksizes"] = tuple(int(c[0]) for c in var.chunks)
        enc[name] = e
    return enc


def _write_netcdf(ds: xr.Dataset, tmp: pathlib.Path) -> None:
    ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_netcdf_encoding(ds))


def _write_zarr(ds: xr.Dataset, tmp: pathlib.Path) -> None:
    # strip netCDF-only encodings; dask chunks define the Zarr chunks
    for var in ds.variables.values():
        for key in ("zlib", "complevel", "shuffle", "chunksizes", "contiguous", "fletcher32"):
            var.encoding.pop(key, None)
    with warnings.catch_warnings():
        # consolidated metadata (one read to open the store, much faster on object stores) is an
        # extension in Zarr format 3; xarray and zarr-python read it, so don't warn about it
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(tmp, mode="w", consolidated=True)


def write(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    mode: str = "w-",
    chunks: dict | int | str | None = None,
    progress: bool = False,
    resume: bool = False,
    on_report=None,
) -> pathlib.Path:
    """Write a (downscaled) field to NetCDF (``.nc``/``.nc4``) or Zarr (``.zarr``), atomically.

    ``obj`` is made CF-1.8 compliant first (:func:`xdownscale.io.to_cf_dataset`:
    bounds, coordinate and global attributes). NetCDF output uses the netCDF4
    engine with zlib level-4 compression of float variables; Zarr output keeps
    the Dask chunks (``chunks=`` rechunks first), so lazy arrays stream to disk.

    ``mode="w-"`` (default) refuses to overwrite an existing ``path``;
    ``mode="w"`` replaces it, but only once the new output is complete.
    ``progress=True`` shows a Dask progress bar. Returns the path written.

    ``resume=True`` (Zarr only) writes region by region (one Dask chunk each) into
    ``.<name>.partial`` next to ``path``, marking each finished region, and renames it onto
    ``path`` when complete; after a crash or kill, the same call computes only the missing
    regions (see :mod:`xdownscale.io.resumable`). With an active ``dask.distributed``
    ``Client`` the regions are computed and written by the cluster's workers.
    """
    path = pathlib.Path(os.fspath(path)).expanduser()
    if mode not in ("w", "w-"):
        raise DataError(f"mode must be 'w-' (refuse to overwrite) or 'w' (overwrite), got {mode!r}")
    fmt = _format(path, format)
    overwrite = mode == "w"
    if resume:
        if fmt != "zarr":
            raise DataError(f"resume=True needs a Zarr output ('*.zarr'), not {fmt} ({str(path)!r})")
        from .resumable import write_resumable

        ds = to_cf_dataset(obj)
        path.parent.mkdir(parents=True, exist_ok=True)
        bar = contextlib.nullcontext()
        if progress:
            from dask.diagnostics import ProgressBar

            bar = ProgressBar()
        with bar:
            report = write_resumable(ds.chunk(chunks) if chunks is not None else ds, path, overwrite=overwrite)
        if on_report is not None:
            on_report(report)
        return report.path
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f'{str(path)!r} already exists; pass mode="w" to overwrite it')
    ds = to_cf_dataset(obj)
    if chunks is not None:
        ds = ds.chunk(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = sibling(path, "tmp")
    bar = contextlib.nullcontext()
    if progress:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar()
    try:
        with bar:
            (_write_zarr if fmt == "zarr" else _write_netcdf)(ds, tmp)
        commit(tmp, path, overwrite)
    except BaseException:
        remove(tmp)
        raise
    return path
