"""Prediction with the temporal models: windowed, tiled prediction of a series.

For every output time the packed window (:mod:`xdownscale.models.convgru`) is
gathered lazily from the coarse series and stacked along the *channel* axis,
with time as the leading axis; :func:`~xdownscale.engine.infer.tiled_predict`
then runs it tile by tile with halos, exactly like a spatial model. Each
output time is one sample, so the stitched series has exactly one value per
time step. Gaps split the series (``gaps="split"``, a warning) or raise
(``gaps="error"``); edge frames are repeated at the ends of every segment.

``time_factor=k`` (``flowconvgru`` only) adds ``k - 1`` synthesised frames
between each pair of consecutive inputs (not across gaps, not after the last
input); the output's ``time`` coordinate holds the new times and a boolean
``synthesised`` coordinate marks them. A synthesised frame conserves the
voxel-flow interpolation of the coarse field at its time (there is no observed
coarse field there); frames at input times conserve the input.

A model trained with static ``covariates=`` needs them again, on the fine grid of the
prediction, as the spatial models do: they are folded onto the coarse grid, tiled with the
windows (halos included) and given with every output time, input or synthesised.
"""
from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import xarray as xr

from ...data.covariates import as_dataset, fold_covariates, spatial_coords
from ...data.pairs import select_variable
from ...data.windows import dense_times, segment_ids
from ...engine.budget import ChunkGate
from ...engine.contract import PredictRequest, parse_options
from ...engine.field_predict import fine_weights, memory_plan, snap_to
from ...engine.infer import ModelRunner, default_chunks, tiled_predict
from ...engine.resolve import model_name_of, resolve_model
from ...errors import DataError
from ...grid.cf import find_axes
from ...io.cf import add_cf_attrs, fine_coordinates
from ...models.convgru import POOL, inputs_needed
from .dataset import pack_indices
from .options import TemporalPredictOptions


def window_plan(times, window: int, time_factor: int, gaps: str = "split"):
    """Indices for every output time: ``(new_times, source, phase, inputs)``.

    ``source[j] = (i, k)``: output ``j`` is ``k / time_factor`` of a step after input ``i``;
    ``phase[j]`` the packed phase; ``inputs[j]`` the ``M`` input indices of its window.
    """
    new_times, source = dense_times(times, time_factor, gaps=gaps)
    with warnings.catch_warnings():  # dense_times has already warned about the gaps
        warnings.simplefilter("ignore")
        ids = segment_ids(times, gaps="split") if len(times) > 1 else np.zeros(1, dtype=int)
    first = np.searchsorted(ids, ids, side="left")
    last = np.searchsorted(ids, ids, side="right") - 1
    i, k = source[:, 0], source[:, 1]
    dense = (i - first[i]) * time_factor + k  # dense position inside the segment
    phase = (dense - window // 2) % time_factor
    anchor = first[i] + (dense - window // 2 - phase) // time_factor
    inputs = pack_indices(anchor, 1, inputs_needed(window, time_factor), first[i], last[i])
    return new_times, source, phase, inputs


def _gather(data: dsa.Array, idx: np.ndarray) -> dsa.Array:
    return data[idx]


def predict_temporal(request: PredictRequest):
    """Downscale a (time, y, x) coarse series with ``convgru``/``flowconvgru`` (see module doc)."""
    time_factor, gaps = predict_options(request)
    lr, model, var, factor, constraint = request.lr, request.model, request.var, request.factor, request.constraint
    name = var
    if isinstance(lr, xr.Dataset) and name is None and not isinstance(model, str):
        name = model.variable if model.variable in lr else None
    da = select_variable(lr, name, "input")
    downscaler = resolve_model(model, factor=factor, variable=None if da.name is None else str(da.name),
                               constraint=constraint, field=da, allow_other_variable=request.allow_other_variable)
    axes = find_axes(da)
    if axes.time is None:
        raise DataError(f"{da.name!r} has no time dimension: temporal models downscale a (time, y, x) series")
    target_stats = downscaler.meta.get("normalization", {}).get("target", {"mean": 0.0, "std": 1.0})
    da = da.transpose(axes.time, *axes.spatial)
    out, coords, synthesised = predict_packed(request, downscaler, [da], [target_stats], time_factor, gaps)
    result = xr.DataArray(out, dims=(axes.time, *axes.spatial), coords=coords, name=da.name)
    if synthesised is not None:
        result = result.assign_coords(synthesised=synthesised)
    order = [d for d in lr[da.name].dims] if isinstance(lr, xr.Dataset) else list(lr.dims)
    result = result.transpose(*order)
    if request.like is not None:
        result = snap_to(result, request.like, axes)
    result.attrs = dict(da.attrs)
    extra = {"xdownscale_time_factor": np.int32(time_factor), "xdownscale_window": np.int32(downscaler.module.window)}
    result = add_cf_attrs(result, source=da, model=downscaler.model_name, factor=downscaler.factor,
                          constraint=downscaler.constraint, checkpoint_hash=downscaler.checkpoint_hash, extra=extra)
    return result.to_dataset() if isinstance(lr, xr.Dataset) else result


def predict_options(request: PredictRequest) -> tuple[int, str]:
    """``(time_factor, gaps)`` of a temporal ``predict`` call."""
    opts = parse_options(TemporalPredictOptions, request.options, model=model_name_of(request.model),
                         call="predict")
    return int(opts.time_factor), opts.gaps


def predict_packed(request: PredictRequest, downscaler, inputs: list[xr.DataArray], stats: list[dict],
                   time_factor: int, gaps: str, sources: list | None = None):
    """``(fine data, coordinates, synthesised flags or None)`` of a temporal network on the
    (time, y, x) ``inputs`` (one per input variable, with their ``stats``): the packed windows of
    every output time (module docstring) through tiled inference. ``sources``: a multi-target
    network's source input per target (the data then has a leading target axis). The model's
    static covariates come from ``request.covariates`` (refused in one line where missing or on
    another grid)."""
    net = downscaler.module
    if time_factor > 1 and net.flow is None:
        raise DataError(f"model {downscaler.model_name!r} cannot make new time steps: use model='flowconvgru' "
                        "for time_factor > 1")
    da, chunks, batch_size = inputs[0], request.chunks, request.batch_size
    axes = find_axes(da)
    f, tdim, c = downscaler.factor, axes.time, len(inputs)
    cov_stats = downscaler.meta.get("normalization", {}).get("covariates", {})
    coords = fine_coordinates(da, f, axes)
    cov = fold_covariates(as_dataset(request.covariates), cov_stats, (da.sizes[axes.y] * f, da.sizes[axes.x] * f), f,
                          spatial_coords(coords, axes.spatial))
    n_static = 0 if cov is None else cov.shape[0]
    new_times, source, phase, frames = window_plan(da[tdim].values, net.window, time_factor, gaps)
    datas = [(x.data if isinstance(x.data, dsa.Array) else dsa.from_array(np.asarray(x.values), chunks=-1))
             .rechunk({0: -1}) for x in inputs]
    i, k = source[:, 0], source[:, 1]
    tau = (k / time_factor)[:, None, None]
    nxt = np.minimum(i + 1, da.sizes[tdim] - 1)
    channels = [_gather(d, i) * (1 - tau) + _gather(d, nxt) * tau if time_factor > 1 else _gather(d, i)
                for d in datas]
    shape, dtype = channels[0].shape, datas[0].dtype
    channels += [dsa.broadcast_to(dsa.from_array(phase[:, None, None].astype(dtype)), shape),
                 dsa.full(shape, time_factor, dtype=dtype)]
    channels += [_gather(d, frames[:, m]) for m in range(frames.shape[1]) for d in datas]  # frame-major
    halo = net.receptive_radius if request.halo is None else int(request.halo)
    stacked = dsa.stack([ch.rechunk({0: -1}) for ch in channels], axis=0)
    spatial = None if chunks is None else ((chunks, chunks) if isinstance(chunks, int) else
                                           (chunks.get(axes.y, -1), chunks.get(axes.x, -1)))
    spec = [n if ch == -1 else ch for ch, n in zip(default_chunks(stacked.shape, f, halo, spatial), stacked.shape)]
    runner = ModelRunner(downscaler, request.device)
    plan = memory_plan(runner, downscaler, max_memory=request.max_memory, in_channels=stacked.shape[0] + n_static,
                       halo=halo, side=max(spec[2:]), steps=max(1, batch_size), batch_size=max(1, batch_size),
                       fixed_channels={c: 0.0, c + 1: float(time_factor)})
    spec = spec[:2] + [min(ch, plan.side) for ch in spec[2:]]
    if net.flow is not None:  # tiles start on the voxel-flow pooling grid (see TemporalNet.receptive_radius)
        spec = spec[:2] + [ch if ch == n else max(POOL, ch // POOL * POOL) for ch, n in zip(spec[2:],
                                                                                          stacked.shape[2:])]
    stacked = stacked.rechunk((-1, plan.steps) + tuple(spec[2:]))
    unit = {"mean": 0.0, "std": 1.0}
    all_stats = list(stats) + [unit, unit] + list(stats) * frames.shape[1]
    out = tiled_predict(runner, stacked, stats=all_stats, factor=f, halo=halo,
                        row_weights=fine_weights(coords, axes), covariates=cov, batch_size=plan.batch,
                        gate=ChunkGate(plan.slots), sources=sources)
    time_coord = xr.DataArray(new_times, dims=(tdim,), attrs=dict(da[tdim].attrs))
    synthesised = (tdim, k > 0, {"long_name": "frame synthesised between inputs"}) if time_factor > 1 else None
    return out, {tdim: time_coord, **coords}, synthesised
