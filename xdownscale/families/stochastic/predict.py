"""Ensembles from stochastic models: ``predict(lr, model="gan", members=N, seed=s)``.

The noise is a seeded, lazy Dask array on the coarse grid (:func:`xdownscale.ensemble.seeded_noise`)
passed to tiled inference as further input channels, so the result does not depend on the
chunking and member ``k`` of seed ``s`` is the same field whatever the ensemble size.
"""
from __future__ import annotations

import copy

import dask.array as dsa
import numpy as np
import xarray as xr

from ...engine.contract import PredictRequest, parse_options
from ...engine.field_predict import pick, predict_dataarray
from ...engine.resolve import model_name_of, resolve_model
from ...ensemble import seeded_noise
from ...errors import DataError
from ...grid.cf import find_axes
from ...models.rnngan import trailing_windows
from ..spatial.multi import is_multi_target, multi_inputs
from .options import EnsembleOptions


def _input_chunks(da: xr.DataArray, members: int, member_dim: str, factor: int, batch: int) -> dict:
    axes = find_axes(da)
    side = max(1024 // factor, 16)
    per_field = max(1, members)
    lead = {d: 1 for d in da.dims if d not in axes.spatial}
    if axes.time and axes.time in da.dims:  # a few fields per chunk, so the network sees real batches
        lead[axes.time] = max(1, min(da.sizes[axes.time], (4 * batch) // per_field))
    return {member_dim: -1, **lead, axes.y: min(da.sizes[axes.y], side), axes.x: min(da.sizes[axes.x], side)}


def expand_members(da: xr.DataArray, members: int, member_dim: str, chunks: dict) -> xr.DataArray:
    """``da`` with a leading ``member_dim`` of size ``members`` (a lazy broadcast, no copies)."""
    if member_dim in da.dims:
        raise DataError(f"the input already has a {member_dim!r} dimension; pass member_dim=... with another name")
    data = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.values), chunks=-1)
    # stack, not data[None]: dask 2026.8 fails to fuse a getitem-expanded array with the all-NaN check
    data = dsa.broadcast_to(dsa.stack([data]), (members,) + data.shape)
    out = xr.DataArray(data, dims=(member_dim,) + da.dims, coords=da.coords, name=da.name, attrs=da.attrs)
    return out.chunk({d: c for d, c in chunks.items() if d in out.dims})


def with_extra_stats(downscaler, stats: list[dict], module=None):
    """A shallow copy of ``downscaler`` whose predictor statistics are followed by ``stats``
    (noise: mean 0, std 1), so tiled inference normalises the extra channels as in training."""
    ds = copy.copy(downscaler)
    ds.meta = copy.deepcopy(downscaler.meta)
    if module is not None:
        ds.module = module
    norm = ds.meta.setdefault("normalization", {})
    norm["predictors"] = list(norm.get("predictors", [])) + list(stats)
    return ds


def _channel_arrays(noise: dsa.Array, like: xr.DataArray) -> list[xr.DataArray]:
    return [xr.DataArray(noise[i], dims=like.dims, coords=like.coords) for i in range(noise.shape[0])]


def window_inputs(da: xr.DataArray, fields_m: list[xr.DataArray], noise: dsa.Array, window: int,
                  field_stats: list[dict]):
    """Extra inputs of a recurrent model packed per output step: the fields (one variable, or every
    input of a multi-target model, with ``field_stats``) at each of the ``window - 1`` earlier steps,
    then the noise of all ``window`` steps (oldest first; see
    :func:`~xdownscale.models.rnngan.trailing_windows`), with their statistics."""
    tdim = find_axes(da).time
    if tdim is None or tdim not in da.dims:
        raise DataError(f"a recurrent model needs a time dimension, got dims {tuple(da.dims)}")
    idx = trailing_windows(da[tdim].values, window)
    lr_m = fields_m[0]
    frames = [m.isel({tdim: idx[:, k]}).assign_coords({tdim: m[tdim]}) for k in range(window - 1) for m in fields_m]
    axis = 1 + lr_m.dims.index(tdim)
    noise_frames = []
    for k in range(window):
        noise_frames += _channel_arrays(dsa.take(noise, idx[:, k], axis=axis).rechunk(noise.chunks), lr_m)
    stats = list(field_stats) * (window - 1) + [{"mean": 0.0, "std": 1.0}] * len(noise_frames)
    return frames + noise_frames, stats


def predict_joint_members(request: PredictRequest, downscaler, *, members: int, seed: int, member_dim: str,
                          window: int | None = None):
    """The ensemble of a multi-target generator: member ``k`` is one noise draw, shared by every
    target (a joint draw), as a Dataset of the targets with a ``member_dim``; a recurrent generator
    sees the trailing ``window`` steps of every input (default: its training window)."""
    from ...engine.field_predict import predict_targets

    inputs, sources = multi_inputs(request, downscaler)
    info = downscaler.meta["multi_target"]
    spec = _input_chunks(inputs[0], members, member_dim, downscaler.factor, request.batch_size)
    inputs_m = [expand_members(da, members, member_dim, spec) for da in inputs]
    net = downscaler.module
    n_noise = int(net.noise_channels)
    noise = seeded_noise(inputs_m[0].shape, channels=n_noise, seed=seed, chunks=inputs_m[0].chunks)
    with_noise = copy.copy(downscaler)  # the noise channels are normalised as in training: mean 0, std 1
    with_noise.meta = copy.deepcopy(downscaler.meta)
    stats = with_noise.meta["normalization"]["inputs"]
    if hasattr(net, "window"):  # recurrent: pack the trailing window of every step as channels
        with_noise.module = copy.copy(net)  # shares the weights; only the window length differs
        with_noise.module.window = int(net.window if window is None else window)
        extra, extra_stats = window_inputs(inputs[0], inputs_m, noise, with_noise.module.window, list(stats))
    elif window is not None:
        raise DataError(f"window= applies to recurrent models; {downscaler.model_name!r} is not one")
    else:
        extra, extra_stats = _channel_arrays(noise, inputs_m[0]), [{"mean": 0.0, "std": 1.0}] * n_noise
    with_noise.meta["normalization"]["inputs"] = list(stats) + extra_stats
    out = predict_targets(inputs_m + extra, with_noise, targets=list(info["targets"]),
                          sources=sources, attrs=info.get("attrs", {}), constraints=info["constraints"],
                          covariates=request.covariates, chunks=request.chunks, halo=request.halo,
                          batch_size=request.batch_size, device=request.device, like=request.like,
                          max_memory=request.max_memory)
    out = out.assign_coords({member_dim: (member_dim, np.arange(members), {"long_name": "ensemble member"})})
    out.attrs = dict(request.lr.attrs, ensemble_members=members, ensemble_seed=seed)
    return out


def predict_ensemble(request: PredictRequest):
    """An ensemble with a leading ``member_dim`` (options: :class:`EnsembleOptions`).

    ``members``: ensemble size; ``seed``: the noise seed (member ``k`` of seed ``s`` is
    reproducible on its own). ``window``: recurrent models only, the number of steps each
    output is generated from (default: the training window; longer windows warm the state up
    longer). ``chunks`` may also name ``member_dim``.
    """
    opts = parse_options(EnsembleOptions, request.options, model=model_name_of(request.model), call="predict")
    members, seed, member_dim, window = opts.members, opts.seed, opts.member_dim, opts.window
    lr, model, var, factor, constraint, chunks = (request.lr, request.model, request.var, request.factor,
                                                  request.constraint, request.chunks)
    covariates, halo, batch_size, device, like = (request.covariates, request.halo, request.batch_size,
                                                  request.device, request.like)
    members, seed = int(members), int(seed)
    if is_multi_target(model):
        return predict_joint_members(request, model, members=members, seed=seed, member_dim=member_dim,
                                     window=window)
    dataset_in = isinstance(lr, xr.Dataset)
    if dataset_in:
        ds0 = model if not isinstance(model, str) else None
        name = var if var is not None else (ds0.variable if ds0 is not None and ds0.variable in lr else None)
        da = pick(lr, name)
    elif isinstance(lr, xr.DataArray):
        da = lr
    else:
        raise DataError(f"expected an xarray DataArray or Dataset, got {type(lr).__name__}")
    downscaler = resolve_model(model, factor=factor, variable=None if da.name is None else str(da.name),
                               constraint=constraint, field=da, allow_other_variable=request.allow_other_variable)
    net = downscaler.module
    n_noise = int(getattr(net, "noise_channels", 0))
    if n_noise < 1:
        raise DataError(f"{downscaler.model_name!r} takes no noise channels: members= needs a stochastic model")
    extra = []
    if downscaler.meta.get("predictors"):
        if not dataset_in:
            raise DataError(f"this model also needs predictors {downscaler.meta['predictors']}: pass the Dataset")
        extra = [pick(lr, p) for p in downscaler.meta["predictors"]]
    spec = _input_chunks(da, members, member_dim, downscaler.factor, batch_size)
    if chunks is not None:
        axes = find_axes(da)
        spec.update(chunks if isinstance(chunks, dict) else {axes.y: chunks, axes.x: chunks})
    lr_m = expand_members(da, members, member_dim, spec)
    extra_m = [expand_members(e.transpose(*da.dims), members, member_dim, spec) for e in extra]
    noise = seeded_noise(lr_m.shape, channels=n_noise, seed=seed, chunks=lr_m.chunks)
    module = None
    if hasattr(net, "window"):  # recurrent: pack the trailing window of every step as channels
        module = copy.copy(net)  # shares the weights; only the window length differs
        module.window = int(net.window if window is None else window)
        target = downscaler.meta.get("normalization", {}).get("target", {"mean": 0.0, "std": 1.0})
        inputs, stats = window_inputs(da, [lr_m], noise, module.window, [target])
    elif window is not None:
        raise DataError(f"window= applies to recurrent models; {downscaler.model_name!r} is not one")
    else:
        inputs, stats = _channel_arrays(noise, lr_m), [{"mean": 0.0, "std": 1.0}] * n_noise
    out = predict_dataarray(lr_m, with_extra_stats(downscaler, stats, module), extra=extra_m + inputs,
                            covariates=covariates, halo=halo, batch_size=batch_size, device=device, like=like,
                            max_memory=request.max_memory)
    out = out.assign_coords({member_dim: (member_dim, np.arange(members), {"long_name": "ensemble member"})})
    out.attrs.update(ensemble_members=members, ensemble_seed=seed)
    if dataset_in:
        result = out.to_dataset()
        result.attrs = dict(lr.attrs)
        return result
    return out
