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
"""
from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import xarray as xr

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
from ...models.convgru import N_SCHEDULE, POOL, inputs_needed
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
    opts = parse_options(TemporalPredictOptions, request.options, model=model_name_of(request.model),
                         call="predict")
    time_factor, gaps = int(opts.time_factor), opts.gaps
    lr, model, var, factor, constraint = request.lr, request.model, request.var, request.factor, request.constraint
    chunks, halo, batch_size, device, like = (request.chunks, request.halo, request.batch_size, request.device,
                                              request.like)
    if request.covariates is not None:
        raise DataError("temporal models take the target variable only: drop covariates=")
    name = var
    if isinstance(lr, xr.Dataset) and name is None and not isinstance(model, str):
        name = model.variable if model.variable in lr else None
    da = select_variable(lr, name, "input")
    downscaler = resolve_model(model, factor=factor, variable=None if da.name is None else str(da.name),
                               constraint=constraint, field=da, allow_other_variable=request.allow_other_variable)
    net = downscaler.module
    if time_factor > 1 and net.flow is None:
        raise DataError(f"model {downscaler.model_name!r} cannot make new time steps: use model='flowconvgru' "
                        "for time_factor > 1")
    axes = find_axes(da)
    if axes.time is None:
        raise DataError(f"{da.name!r} has no time dimension: temporal models downscale a (time, y, x) series")
    f, tdim = downscaler.factor, axes.time
    da = da.transpose(tdim, *axes.spatial)
    new_times, source, phase, inputs = window_plan(da[tdim].values, net.window, time_factor, gaps)
    data = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.values), chunks=-1)
    data = data.rechunk({0: -1})
    i, k = source[:, 0], source[:, 1]
    tau = (k / time_factor)[:, None, None]
    nxt = np.minimum(i + 1, da.sizes[tdim] - 1)
    target = _gather(data, i) * (1 - tau) + _gather(data, nxt) * tau if time_factor > 1 else _gather(data, i)
    shape = target.shape
    phase_channel = dsa.broadcast_to(dsa.from_array(phase[:, None, None].astype(data.dtype)), shape)
    channels = [target, phase_channel, dsa.full(shape, time_factor, dtype=data.dtype)]
    channels += [_gather(data, inputs[:, m]) for m in range(inputs.shape[1])]
    halo = net.receptive_radius if halo is None else int(halo)
    stacked = dsa.stack([c.rechunk({0: -1}) for c in channels], axis=0)
    spatial = None if chunks is None else ((chunks, chunks) if isinstance(chunks, int) else
                                           (chunks.get(axes.y, -1), chunks.get(axes.x, -1)))
    spec = [n if c == -1 else c for c, n in zip(default_chunks(stacked.shape, f, halo, spatial), stacked.shape)]
    runner = ModelRunner(downscaler, device)
    plan = memory_plan(runner, downscaler, max_memory=request.max_memory, in_channels=stacked.shape[0], halo=halo,
                       side=max(spec[2:]), steps=max(1, batch_size), batch_size=max(1, batch_size),
                       fixed_channels={1: 0.0, 2: float(time_factor)})
    spec = spec[:2] + [min(c, plan.side) for c in spec[2:]]
    if net.flow is not None:  # tiles start on the voxel-flow pooling grid (see TemporalNet.receptive_radius)
        spec = spec[:2] + [c if c == n else max(POOL, c // POOL * POOL) for c, n in zip(spec[2:], stacked.shape[2:])]
    stacked = stacked.rechunk((-1, plan.steps) + tuple(spec[2:]))
    target_stats = downscaler.meta.get("normalization", {}).get("target", {"mean": 0.0, "std": 1.0})
    unit = {"mean": 0.0, "std": 1.0}
    stats = [target_stats, unit, unit] + [target_stats] * (stacked.shape[0] - N_SCHEDULE)
    coords = fine_coordinates(da, f, axes)
    out = tiled_predict(runner, stacked, stats=stats, factor=f, halo=halo, row_weights=fine_weights(coords, axes),
                        batch_size=plan.batch, gate=ChunkGate(plan.slots))
    time_coord = xr.DataArray(new_times, dims=(tdim,), attrs=dict(da[tdim].attrs))
    result = xr.DataArray(out, dims=(tdim, *axes.spatial), coords={tdim: time_coord, **coords}, name=da.name)
    if time_factor > 1:
        result = result.assign_coords(synthesised=(tdim, k > 0, {"long_name": "frame synthesised between inputs"}))
    order = [d for d in lr[da.name].dims] if isinstance(lr, xr.Dataset) else list(lr.dims)
    result = result.transpose(*order)
    if like is not None:
        result = snap_to(result, like, axes)
    result.attrs = dict(da.attrs)
    extra = {"xdownscale_time_factor": np.int32(time_factor), "xdownscale_window": np.int32(net.window)}
    result = add_cf_attrs(result, source=da, model=downscaler.model_name, factor=f,
                          constraint=downscaler.constraint, checkpoint_hash=downscaler.checkpoint_hash, extra=extra)
    return result.to_dataset() if isinstance(lr, xr.Dataset) else result
