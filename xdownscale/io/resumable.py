"""Resumable Zarr products: written region by region, restartable after a crash or a kill.

``write(da, "x.zarr", resume=True)`` works in a *partial* store next to the
destination, ``.x.zarr.partial``:

1. the first run creates the store's metadata and coordinates (``to_zarr(compute=False)``)
   with the attributes ``xdownscale_complete = False`` and a fingerprint of the product
   (variables, shapes, chunks, dtypes, coordinates, attributes such as the checkpoint hash);
2. every region (one Dask chunk of the data) is computed and written with
   ``to_zarr(region=...)``, and only then an empty marker file
   ``.xdownscale-progress/<region>.done`` is created inside the partial store, in the same
   task, so a marker always means "this region is on disk";
3. when every region has its marker, ``xdownscale_complete`` is set to True, the markers
   are removed, metadata consolidated and the partial store renamed onto the destination.

Killing the process at any point leaves the destination untouched (there is never a
half-written product under the final name); running the same write again finds the
partial store, checks its fingerprint and computes only the regions without a marker.
A region that was being written when the process died has no marker and is rewritten.

Markers are files next to the store, so the destination must be a local or shared POSIX
path (with a ``dask.distributed`` cluster: a filesystem every worker sees), not an object
store URL.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pathlib
import shutil
import warnings
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from ..errors import DataError
from .atomic import commit

log = logging.getLogger("xdownscale")

COMPLETE_ATTR = "xdownscale_complete"
FINGERPRINT_ATTR = "xdownscale_fingerprint"
_VOLATILE_ATTRS = ("history", "date_created", "date_modified")  # differ between runs of the same product


@dataclass
class ResumeReport:
    """What a resumable write did: regions in the product, reused from an earlier run, computed now."""

    path: pathlib.Path
    regions: int
    reused: int
    computed: int


def partial_path(path: pathlib.Path) -> pathlib.Path:
    """Where an unfinished resumable product lives until it is complete."""
    return path.with_name(f".{path.name}.partial")


def progress_path(path: pathlib.Path) -> pathlib.Path:
    """The folder of finished-region markers of an unfinished resumable product."""
    return path.with_name(f".{path.name}.progress")


def store_status(path) -> dict:
    """Whether the Zarr product ``path`` is finished, and how far an unfinished resumable run got:
    ``{"complete": bool, "partial": path or None, "regions_done": int}``.

    A store written without ``resume`` is complete by construction; a resumable one is
    complete once its ``xdownscale_complete`` attribute is True (only then does it carry the
    final name)."""
    path = pathlib.Path(path)
    partial, progress = partial_path(path), progress_path(path)
    done = len(list(progress.glob("*.done"))) if progress.is_dir() else 0
    complete = path.exists() and bool(_attrs(path).get(COMPLETE_ATTR, True))
    return {"complete": complete, "partial": partial if partial.exists() else None, "regions_done": done}


def _regular(ds: xr.Dataset) -> xr.Dataset:
    """Zarr needs equal chunks (the last may be smaller): rechunk to the first chunk size where not."""
    fix = {}
    for dim, sizes in ds.chunksizes.items():
        if len(sizes) > 1 and (len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]):
            fix[dim] = sizes[0]
    return ds.chunk(fix) if fix else ds


def _fingerprint(ds: xr.Dataset) -> str:
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds[name].variable
        h.update(json.dumps([name, var.dims, var.shape, str(var.dtype), var.chunks, sorted(
            (str(k), str(v)) for k, v in var.attrs.items() if k not in _VOLATILE_ATTRS)], default=str).encode())
        if name not in ds.data_vars:
            h.update(np.ascontiguousarray(np.asarray(var.values)).tobytes())
    h.update(json.dumps(sorted((str(k), str(v)) for k, v in ds.attrs.items() if k not in _VOLATILE_ATTRS)).encode())
    return h.hexdigest()


def _regions(ds: xr.Dataset, dims: tuple[str, ...], region_dims=None) -> list[dict]:
    """One region per Dask chunk over ``dims`` (only along ``region_dims`` if given: whole extent on the
    others): {dim: slice}."""
    bounds = []
    for dim in dims:
        sizes = ds.chunksizes[dim] if region_dims is None or dim in region_dims else (ds.sizes[dim],)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        bounds.append([slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])])
    return [dict(zip(dims, combo)) for combo in itertools.product(*bounds)]


def _region_name(region: dict) -> str:
    return "_".join(f"{d}-{s.start}-{s.stop}" for d, s in region.items())


def _touch(marker: str, _written=None) -> str:
    """Runs after the region's write task (``_written`` is its result): the region is on disk."""
    tmp = marker + ".tmp"
    with open(tmp, "w"):
        pass
    os.replace(tmp, marker)
    return marker


def _initialise(ds: xr.Dataset, store: pathlib.Path, fingerprint: str) -> None:
    template = ds.copy()
    template.attrs = {**ds.attrs, COMPLETE_ATTR: False, FINGERPRINT_ATTR: fingerprint}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        template.to_zarr(store, mode="w", compute=False, consolidated=False)


def _check_partial(store: pathlib.Path, fingerprint: str) -> None:
    import zarr

    try:
        attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    except Exception as exc:  # a store whose metadata was never completed
        raise DataError(f"{str(store)!r} is not a readable partial Zarr product ({exc}); delete it to start "
                        "again") from exc
    if attrs.get(FINGERPRINT_ATTR) != fingerprint:
        raise DataError(f"the unfinished product {str(store)!r} was started for different data (variables, "
                        "grid, chunks or model differ); delete it, or write the same product with the same "
                        "chunks to resume it")


def _finalise(store: pathlib.Path) -> None:
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group.attrs[COMPLETE_ATTR] = True
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(store))


def write_resumable(ds: xr.Dataset, path: pathlib.Path, *, overwrite: bool, region_dims=None) -> ResumeReport:
    """Write ``ds`` to the Zarr store ``path`` region by region, resuming an unfinished earlier run.

    A region is one Dask chunk; ``region_dims`` (e.g. ``("time",)``) makes it one chunk along those
    dimensions and the whole extent along the others: fewer, larger regions (and markers) for
    products of many thousands of chunks. Resume with the same ``region_dims``."""
    if region_dims is not None:
        region_dims = (region_dims,) if isinstance(region_dims, str) else tuple(region_dims)
        unknown = [d for d in region_dims if d not in ds.dims]
        if unknown:
            raise DataError(f"region_dims {unknown} are not dimensions of the product "
                            f"({', '.join(map(str, ds.dims))})")
    ds = _regular(ds)
    for name, var in ds.variables.items():
        for key in ("zlib", "complevel", "shuffle", "chunksizes", "contiguous", "fletcher32", "chunks",
                    "preferred_chunks"):
            var.encoding.pop(key, None)
    # coordinates are small: hold them in memory so the template writes them at once
    ds = ds.assign_coords({k: ds[k].compute() for k in ds.coords if ds[k].chunks is not None})
    # lazy data variables are written region by region, in-memory ones with the metadata
    lazy = [k for k in ds.data_vars if ds[k].chunks is not None]
    if not lazy:
        ds = ds.chunk()
        lazy = list(ds.data_vars)
    dims = ds[lazy[0]].dims
    if any(ds[k].dims != dims for k in lazy):
        raise DataError("a resumable write needs its lazy variables on the same dimensions; got "
                        + ", ".join(f"{k}{ds[k].dims}" for k in lazy) + "; write them separately")
    fingerprint = _fingerprint(ds)
    if path.exists():
        if COMPLETE_ATTR in _attrs(path) and _attrs(path).get(FINGERPRINT_ATTR) == fingerprint:
            log.info("%s is already complete", path)
            shutil.rmtree(progress_path(path), ignore_errors=True)  # left if a run died right after its rename
            n = len(_regions(ds, dims, region_dims))
            return ResumeReport(path, n, n, 0)
        if not overwrite:
            raise FileExistsError(f'{str(path)!r} already exists; pass mode="w" to overwrite it')
    store, progress = partial_path(path), progress_path(path)
    if store.exists():
        _check_partial(store, fingerprint)
    else:
        shutil.rmtree(progress, ignore_errors=True)  # markers without their store mean nothing
        _initialise(ds, store, fingerprint)
    regions = _regions(ds, dims, region_dims)
    progress.mkdir(exist_ok=True)
    todo = [r for r in regions if not (progress / f"{_region_name(r)}.done").exists()]
    reused = len(regions) - len(todo)
    if reused:
        log.info("resuming %s: %d of %d regions already written", path, reused, len(regions))
    tasks = []
    for region in todo:
        sub = ds.isel(region)
        sub = sub[lazy].drop_vars(list(sub[lazy].coords))
        written = sub.to_zarr(store, region=region, mode="r+", compute=False, consolidated=False)
        tasks.append(dask.delayed(_touch)(str(progress / f"{_region_name(region)}.done"), written))
    if tasks:
        dask.compute(*tasks)
    missing = [r for r in regions if not (progress / f"{_region_name(r)}.done").exists()]
    if missing:  # pragma: no cover - a write that raised stops above
        raise RuntimeError(f"{len(missing)} regions of {str(path)!r} were not written")
    _finalise(store)
    commit(store, path, overwrite)
    shutil.rmtree(progress, ignore_errors=True)
    log.info("wrote %s: %d regions computed, %d reused", path, len(todo), reused)
    return ResumeReport(path, len(regions), reused, len(todo))


def _attrs(path: pathlib.Path) -> dict:
    import zarr

    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:
        return {}
