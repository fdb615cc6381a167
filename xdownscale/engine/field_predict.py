"""Tiled, lazy prediction of one coarse field with a spatial network, on exact fine coordinates."""
from __future__ import annotations

import threading
import warnings
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from ..data.covariates import as_dataset, fold_covariates, spatial_coords
from ..data.pairs import select_variable
from ..errors import DataError
from ..grid.cf import find_axes, latitude_weights, wraps_longitude
from ..io.cf import add_cf_attrs, fine_coordinates
from .budget import ChunkGate, MemoryPlan, network_cost, plan_memory, resolve_max_memory
from .downscaler import Downscaler
from .infer import DEFAULT_FINE_CHUNK, TARGET_CHUNK_BYTES, ModelRunner, plan_chunks, runner_for, tiled_predict


def stack_inputs(lr: xr.DataArray, extra: list[xr.DataArray], axes) -> tuple[dsa.Array, list[str]]:
    lead = [d for d in lr.dims if d not in axes.spatial]
    order = lead + list(axes.spatial)
    arrays = [lr.transpose(*order)] + [e.transpose(*order) for e in extra]
    data = [a.data if isinstance(a.data, dsa.Array) else a.chunk().data for a in arrays]  # lazy reads stay lazy
    data = [d.rechunk(data[0].chunks) for d in data]
    return dsa.stack(data, axis=0), lead


def stack_in_memory(lr: xr.DataArray, extra: list[xr.DataArray], axes) -> tuple[Any, list]:
    """:func:`stack_inputs` as one numpy array (the small-input path: no graph)."""
    lead = [d for d in lr.dims if d not in axes.spatial]
    order = lead + list(axes.spatial)
    return np.stack([np.asarray(a.transpose(*order).values) for a in [lr, *extra]], axis=0), lead


def one_chunk(spec: dict, sizes) -> bool:
    """Whether the chunk plan ``spec`` (dim -> chunk length, -1: whole) holds the field in one chunk."""
    return all(n == -1 or n >= sizes[d] for d, n in spec.items())


class ValidityCheck:
    """Whether a lazy input holds any valid value, found once, when the first output chunk runs.

    It runs as its own small computation (synchronous, chunk by chunk) instead of as part of the
    prediction's graph: a graph edge from one global reduction to every output chunk would make
    Dask keep every input chunk in memory until the end, and building the prediction must not
    compute anything."""

    def __init__(self, source: dsa.Array, name: str):
        self.source, self.name, self.valid = source, name, None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # travels to dask.distributed workers without its lock
        return {"source": self.source, "name": self.name, "valid": self.valid}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def require(self) -> None:
        with self._lock:
            if self.valid is None:
                self.valid = bool(dsa.isfinite(self.source).any().compute(scheduler="sync"))
        if not self.valid:
            raise DataError(f"{self.name!r} is NaN everywhere: nothing to downscale (check the variable and the "
                            "time selection)")


def _checked(block: np.ndarray, check: ValidityCheck) -> np.ndarray:
    check.require()
    return block


def require_valid(out: dsa.Array, source: dsa.Array, name: str) -> dsa.Array:
    """``out``, whose chunks refuse to compute if ``source`` has no valid value at all."""
    return dsa.map_blocks(_checked, out, check=ValidityCheck(source, name), dtype=out.dtype, meta=out._meta)


def fine_weights(coords: dict, axes) -> np.ndarray | None:
    if axes.kind != "latlon":
        return None
    return latitude_weights(coords[axes.y].values)


def snap_to(out: xr.DataArray, like, axes) -> xr.DataArray:
    """Put ``out`` on the exact fine coordinates of ``like`` (they must agree to 1e-6 of a cell).

    Fine centres rebuilt from coarse bounds differ from the original grid's by
    float round-off, and xarray aligns on exact labels: without this, ``sr - hr``
    silently keeps only the labels that happen to match.
    """
    lax = find_axes(like)
    for dim, ldim in zip(axes.spatial, lax.spatial):
        mine, theirs = out[dim].values.astype("float64"), like[ldim].values.astype("float64")
        step = abs(mine[1] - mine[0]) if mine.size > 1 else 1.0
        if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=0, atol=1e-6 * step):
            raise DataError(
                f"like= grid does not match the prediction on {dim!r}: sizes {mine.size} vs {theirs.size}, "
                f"largest offset {np.max(np.abs(mine - theirs)) if mine.shape == theirs.shape else 'n/a'}; "
                "pass the fine field the coarse input was made from (trimmed the same way)"
            )
        out = out.assign_coords({dim: (dim, like[ldim].values, out[dim].attrs)})
    return out


PASS_CELLS = 1 << 20  # fine cells per network pass that many small tiles are grouped up to


def memory_plan(runner: ModelRunner, downscaler: Downscaler, *, max_memory, in_channels: int, halo: int,
                side: int, steps: int, batch_size: int, fixed_channels=None) -> MemoryPlan:
    """The tile, chunk, batch and concurrency that ``max_memory`` allows for this model (measured once
    per model, see :mod:`~xdownscale.engine.budget`). Small tiles go through the network more than
    ``batch_size`` frames at a time: up to :data:`PASS_CELLS` fine cells per pass, within the budget."""
    # 168 frames of 8x12 coarse cells in passes of 16 took from as long as to 2-4x as long as one
    # pass on the busy 2-core machine (each op's thread barrier waits for descheduled threads)
    small = PASS_CELLS // max(1, (side * downscaler.factor) ** 2)
    batch_size = max(batch_size, min(steps, small))
    budget = resolve_max_memory(max_memory)
    per_cell, fixed = network_cost(runner, in_channels, downscaler.factor, owner=downscaler.module,
                                   fixed_channels=fixed_channels)
    return plan_memory(budget, per_cell=per_cell, fixed=fixed, factor=downscaler.factor, halo=halo,
                       in_channels=in_channels, side=side, steps=steps, batch_size=batch_size)


def cap_chunks(chunks: tuple[tuple[int, ...], ...], side: int, steps: int) -> tuple | None:
    """A rechunk spec for (channel, *lead, y, x) chunks that splits tiles wider than ``side`` and
    chunks of more than ``steps`` frames (lead dims multiplied), or None when all fit."""
    lead = [max(c) for c in chunks[1:-2]]
    ys, xs = max(chunks[-2]), max(chunks[-1])
    if ys <= side and xs <= side and int(np.prod(lead)) <= steps:
        return None
    capped, room = [], steps
    for n in reversed(lead):  # the last lead dims keep their length first (e.g. members, then time)
        keep = max(1, min(n, room))
        capped.insert(0, keep)
        room = max(1, room // keep)
    return (-1, *capped, min(ys, side), min(xs, side))


def predict_dataarray(lr: xr.DataArray, downscaler: Downscaler, *, extra=(), covariates=None, chunks=None,
                      halo: int | None = None, batch_size: int = 16, device: str = "auto",
                      like=None, max_memory=None, precision: str | None = "fp32") -> xr.DataArray:
    """Lazy fine-resolution prediction of a coarse DataArray (see :func:`predict`). ``max_memory``
    (bytes or ``"2GB"``; default from the machine) bounds the tile, the chunk, the batch and the
    chunks computed at once (:mod:`~xdownscale.engine.budget`). ``precision``: the network body's
    arithmetic (:mod:`~xdownscale.engine.precision`).

    An input held in memory that the plan fits in one chunk is predicted at once, with no Dask
    graph (the result holds numpy): one chunk gains nothing from a graph, and a user who calls
    ``predict`` in a loop on small domains pays its building and scheduling on every call."""
    norm = downscaler.meta.get("normalization", {})
    stats = [norm.get("target", {"mean": 0.0, "std": 1.0})] + list(norm.get("predictors", []))
    data, coords, lead, used = predict_stack(lr, downscaler, extra=list(extra), stats=stats, covariates=covariates,
                                             chunks=chunks, halo=halo, batch_size=batch_size, device=device,
                                             max_memory=max_memory, precision=precision)
    return finish_field(data, lr, downscaler, coords, lead, like=like, constraint=downscaler.constraint,
                        precision=used)


def predict_targets(inputs: list[xr.DataArray], downscaler: Downscaler, *, targets: list[str], sources: list,
                    attrs: dict, constraints: dict, covariates=None, chunks=None, halo: int | None = None,
                    batch_size: int = 16, device: str = "auto", like=None, max_memory=None,
                    precision: str | None = "fp32") -> xr.Dataset:
    """Lazy prediction of a multi-target network: a Dataset with one fine field per target, each with
    its own CF attributes (``attrs``) and constraint (``constraints``). ``sources``: the input index
    each target conserves (None: none). ``like``: a fine Dataset (or field) whose coordinates to take."""
    stats = list(downscaler.meta["normalization"]["inputs"])
    data, coords, lead, used = predict_stack(inputs[0], downscaler, extra=inputs[1:], stats=stats,
                                             covariates=covariates, chunks=chunks, halo=halo, batch_size=batch_size,
                                             device=device, max_memory=max_memory, sources=sources,
                                             precision=precision)
    out = {}
    for k, name in enumerate(targets):
        src = inputs[sources[k]] if sources[k] is not None else inputs[0]
        template = src.rename(name)
        template.attrs = dict(attrs.get(name, {}))  # the target's own CF attributes, not its source's
        out[name] = finish_field(data[k], template, downscaler, coords, lead, constraint=constraints[name],
                                 like=None if like is None else (like[name] if isinstance(like, xr.Dataset) else like),
                                 precision=used)
    return xr.Dataset(out)


def finish_field(data, lr: xr.DataArray, downscaler: Downscaler, coords: dict, lead: list, *, constraint: str,
                 like=None, precision: str | None = None) -> xr.DataArray:
    """The fine DataArray around ``data``: the coarse input's lead coordinates, the fine ones, its
    dimension order, CF attributes and provenance (``precision``: the body's arithmetic)."""
    axes = find_axes(lr)
    out_coords = {d: lr.coords[d] for d in lead if d in lr.coords}
    out_coords.update(coords)
    for name, c in lr.coords.items():  # scalar and lead-only coordinates (e.g. a time label)
        if name not in out_coords and set(c.dims) <= set(lead):
            out_coords[name] = c
    out = xr.DataArray(data, dims=lead + list(axes.spatial), coords=out_coords, name=lr.name)
    out = out.transpose(*[d for d in lr.dims])
    if like is not None:
        out = snap_to(out, like, axes)
    out.attrs = dict(lr.attrs)
    return add_cf_attrs(out, source=lr, model=downscaler.model_name, factor=downscaler.factor, constraint=constraint,
                        checkpoint_hash=downscaler.checkpoint_hash, precision=precision)


def predict_stack(lr: xr.DataArray, downscaler: Downscaler, *, extra: list, stats: list, covariates=None,
                  chunks=None, halo: int | None = None, batch_size: int = 16, device: str = "auto",
                  max_memory=None, sources: list | None = None, precision: str | None = "fp32") -> tuple:
    """``(fine data, fine coordinates, lead dims, the precision used)`` of the network on ``lr`` and
    ``extra`` (the input channels, with their normalisation ``stats``), tiled to the memory budget;
    the data is lazy except on the small in-memory path (see :func:`predict_dataarray`)."""
    if not isinstance(lr, xr.DataArray):
        raise DataError(f"expected a DataArray, got {type(lr).__name__}")
    if not np.issubdtype(lr.dtype, np.number):
        raise DataError(f"{lr.name!r} is not numeric (dtype {lr.dtype})")
    axes = find_axes(lr)
    f = downscaler.factor
    net = downscaler.module
    halo = net.receptive_radius if halo is None else int(halo)
    if halo < net.receptive_radius:
        warnings.warn(f"halo={halo} is below the model's receptive radius ({net.receptive_radius} coarse cells): "
                      "tiles will show seams", stacklevel=4)
    norm = downscaler.meta.get("normalization", {})
    coords = fine_coordinates(lr, f, axes)
    fine_shape = (lr.sizes[axes.y] * f, lr.sizes[axes.x] * f)
    cov = fold_covariates(as_dataset(covariates), norm.get("covariates", {}), fine_shape, f,
                          spatial_coords(coords, axes.spatial))
    runner = runner_for(downscaler, device, precision)
    in_channels = 1 + len(extra) + (0 if cov is None else cov.shape[0])
    planned = not isinstance(lr.data, dsa.Array)
    in_memory = False
    stacked: Any = None  # (C, *lead, y, x): numpy on the small-input path, else a Dask array
    lead_dims = [d for d in lr.dims if d not in axes.spatial]
    if planned:  # in memory or read lazily from a file: the one chunk plan (see plan_chunks)
        spec = plan_chunks(dict(lr.sizes), lead_dims, axes, f, halo, chunks, time_dim=axes.time)
        frames = int(np.prod([lr.sizes[d] if spec[d] == -1 else spec[d] for d in lead_dims]))
        plan = memory_plan(runner, downscaler, max_memory=max_memory, in_channels=in_channels, halo=halo,
                           side=max(spec[axes.y], spec[axes.x]), steps=frames, batch_size=batch_size)
        spec = plan_chunks(dict(lr.sizes), lead_dims, axes, f, halo, chunks, time_dim=axes.time,
                           limit=(plan.side, plan.steps))
        if one_chunk(spec, lr.sizes) and not any(isinstance(e.data, dsa.Array) for e in extra):
            stacked, lead = stack_in_memory(lr, list(extra), axes)
            in_memory = True
        else:
            lr = lr.chunk(spec)
        if bool(lr.isnull().all()):  # chunk by chunk: a file is read once, never whole into memory
            raise DataError(f"{lr.name!r} is NaN everywhere: nothing to downscale (check the variable and the "
                            "time selection)")
    if not in_memory:
        stacked, lead = stack_inputs(lr, list(extra), axes)
    if chunks is not None and not planned:
        named = chunks if isinstance(chunks, dict) else {axes.y: chunks, axes.x: chunks}
        spec = (-1,) + tuple(named.get(d, stacked.chunks[i + 1]) for i, d in enumerate(lead + list(axes.spatial)))
        stacked = stacked.rechunk(spec)
    if not planned:  # a Dask input keeps its chunks where they fit the budget, and is split where not
        side = max(max(stacked.chunks[-2]), max(stacked.chunks[-1]))
        frames = int(np.prod([max(c) for c in stacked.chunks[1:-2]]))
        steps_cap = max(1, TARGET_CHUNK_BYTES // max(1, (min(side, DEFAULT_FINE_CHUNK // f) * f) ** 2 * 4))
        plan = memory_plan(runner, downscaler, max_memory=max_memory, in_channels=in_channels, halo=halo,
                           side=side, steps=max(frames, steps_cap), batch_size=batch_size)
        spec = cap_chunks(stacked.chunks, plan.side, max(plan.steps, 1))
        if spec is not None:
            stacked = stacked.rechunk(spec)
    data = tiled_predict(runner, stacked, stats=stats, factor=f, halo=halo,
                         row_weights=fine_weights(coords, axes), covariates=cov, batch_size=plan.batch,
                         periodic_x=wraps_longitude(lr, axes), gate=ChunkGate(plan.slots), sources=sources)
    if not planned:  # a Dask input stays lazy: the all-NaN check runs when the result is computed
        data = require_valid(data, lr.data, str(lr.name))
    return data, coords, lead, runner.precision


def pick(ds: xr.Dataset, name: str | None) -> xr.DataArray:
    """The variable ``name`` of an input Dataset (or its only data variable)."""
    return select_variable(ds, name, "input")
