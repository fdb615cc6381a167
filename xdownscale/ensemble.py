"""Ensembles from stochastic models: ``predict(lr, model="gan", members=N, seed=s)``.

The noise that drives a stochastic generator is a seeded, lazy Dask array on
the *coarse* grid (:func:`seeded_noise`). It is passed to
:func:`xdownscale.engine.infer.tiled_predict` as further input channels, next
to the variable and its predictors, so tiles and their halos read the same
noise as a single-chunk run would: the result does not depend on the chunking.
The noise at a coarse cell depends only on ``(seed, member, time index, cell)``
(it is drawn in fixed 32x32-cell tiles), so member ``k`` of seed ``s`` is the
same field whether 2 or 20 members are asked for.

The result has a leading ``member`` dimension; the ensemble mean is
``ens.mean("member")`` (or :func:`ensemble_mean`, which keeps the attributes).
Constraint layers act on every member: each one conserves the coarse field.
"""
from __future__ import annotations

import copy
import itertools

import dask.array as dsa
import numpy as np
import xarray as xr

from .errors import DataError
from .grid.cf import find_axes

NOISE_TILE = 32  # coarse cells per side of an independently seeded noise tile
MEMBER_DIM = "member"


def _noise_block(seed: int, channels: int, tile: int, block_info=None) -> np.ndarray:
    info = block_info[None]
    loc = info["array-location"]
    (y0, y1), (x0, x1) = loc[-2], loc[-1]
    lead = loc[1:-2]
    out = np.empty(info["chunk-shape"], dtype="float32")
    for pos in itertools.product(*[range(a, b) for a, b in lead]):
        rel = tuple(p - a for p, (a, _) in zip(pos, lead))
        for ty in range(y0 // tile, (y1 - 1) // tile + 1):
            for tx in range(x0 // tile, (x1 - 1) // tile + 1):
                rng = np.random.default_rng([seed, *pos, ty, tx])
                values = rng.standard_normal((channels, tile, tile), dtype="float32")
                ys = slice(max(y0, ty * tile), min(y1, (ty + 1) * tile))
                xs = slice(max(x0, tx * tile), min(x1, (tx + 1) * tile))
                out[(slice(None), *rel, slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))] = \
                    values[:, ys.start - ty * tile: ys.stop - ty * tile, xs.start - tx * tile: xs.stop - tx * tile]
    return out


def seeded_noise(shape: tuple[int, ...], *, channels: int, seed: int, chunks=None, tile: int = NOISE_TILE) -> dsa.Array:
    """Standard-normal noise ``(channels, *shape)`` as a lazy Dask array.

    ``shape`` is ``(*lead, ny, nx)``, with the member index first among the
    lead dims. Values depend only on ``(seed, lead index, tile of the cell)``,
    never on ``chunks`` (which default to one chunk per lead index).
    """
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    full = (int(channels),) + tuple(int(s) for s in shape)
    if chunks is None:
        chunks = (-1,) + (1,) * (len(shape) - 2) + (-1, -1)
    else:
        chunks = (-1,) + tuple(chunks)
    norm = dsa.core.normalize_chunks(chunks, full, dtype="float32")
    return dsa.map_blocks(_noise_block, int(seed), int(channels), int(tile), chunks=norm, dtype="float32",
                          meta=np.empty((0,) * len(full), dtype="float32"))


def ensemble_mean(ens: xr.DataArray, member_dim: str = MEMBER_DIM) -> xr.DataArray:
    """The ensemble mean ``ens.mean(member_dim)``, attributes kept (it conserves when the members do)."""
    if member_dim not in ens.dims:
        raise DataError(f"no ensemble dimension {member_dim!r} in dims {tuple(ens.dims)}")
    out = ens.mean(member_dim, keep_attrs=True)
    out.attrs["cell_methods"] = (str(out.attrs.get("cell_methods", "")) + f" {member_dim}: mean").strip()
    return out


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
    data = dsa.broadcast_to(data[None], (members,) + data.shape)
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


def window_inputs(da: xr.DataArray, lr_m: xr.DataArray, noise: dsa.Array, window: int, target_stats: dict):
    """Extra inputs of a recurrent model packed per output step: the variable at the ``window - 1``
    earlier steps, then the noise of all ``window`` steps (oldest first; see
    :func:`xdownscale.models.rnngan.trailing_windows`), with their statistics."""
    from .models.rnngan import trailing_windows

    tdim = find_axes(da).time
    if tdim is None or tdim not in da.dims:
        raise DataError(f"a recurrent model needs a time dimension, got dims {tuple(da.dims)}")
    idx = trailing_windows(da[tdim].values, window)
    frames = [lr_m.isel({tdim: idx[:, k]}).assign_coords({tdim: lr_m[tdim]}) for k in range(window - 1)]
    axis = 1 + lr_m.dims.index(tdim)
    noise_frames = []
    for k in range(window):
        noise_frames += _channel_arrays(dsa.take(noise, idx[:, k], axis=axis).rechunk(noise.chunks), lr_m)
    stats = [target_stats] * (window - 1) + [{"mean": 0.0, "std": 1.0}] * len(noise_frames)
    return frames + noise_frames, stats


def predict_ensemble(lr, *, model, factor=None, var=None, covariates=None, constraint=None, chunks=None,
                     halo=None, batch_size: int = 16, device: str = "auto", like=None, members: int = 10,
                     seed: int = 0, member_dim: str = MEMBER_DIM, window: int | None = None):
    """``predict_with`` hook of stochastic models: an ensemble with a leading ``member_dim``.

    ``members``: ensemble size; ``seed``: the noise seed (member ``k`` of seed
    ``s`` is reproducible on its own). ``window``: recurrent models only, the
    number of steps each output is generated from (default: the training
    window; longer windows warm the state up longer). Other arguments as in
    :func:`xdownscale.predict`; ``chunks`` may also name ``member_dim``.
    """
    from .prediction import _pick, predict_dataarray, resolve_model

    if int(members) < 1:
        raise DataError(f"members must be >= 1, got {members}")
    members, seed = int(members), int(seed)
    dataset_in = isinstance(lr, xr.Dataset)
    if dataset_in:
        ds0 = model if not isinstance(model, str) else None
        name = var if var is not None else (ds0.variable if ds0 is not None and ds0.variable in lr else None)
        da = _pick(lr, name)
    elif isinstance(lr, xr.DataArray):
        da = lr
    else:
        raise DataError(f"expected an xarray DataArray or Dataset, got {type(lr).__name__}")
    downscaler = resolve_model(model, factor=factor, variable=None if da.name is None else str(da.name),
                               constraint=constraint)
    net = downscaler.module
    n_noise = int(getattr(net, "noise_channels", 0))
    if n_noise < 1:
        raise DataError(f"{downscaler.model_name!r} takes no noise channels: members= needs a stochastic model")
    extra = []
    if downscaler.meta.get("predictors"):
        if not dataset_in:
            raise DataError(f"this model also needs predictors {downscaler.meta['predictors']}: pass the Dataset")
        extra = [_pick(lr, p) for p in downscaler.meta["predictors"]]
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
        inputs, stats = window_inputs(da, lr_m, noise, module.window, target)
    elif window is not None:
        raise DataError(f"window= applies to recurrent models; {downscaler.model_name!r} is not one")
    else:
        inputs, stats = _channel_arrays(noise, lr_m), [{"mean": 0.0, "std": 1.0}] * n_noise
    out = predict_dataarray(lr_m, with_extra_stats(downscaler, stats, module), extra=extra_m + inputs,
                            covariates=covariates, halo=halo, batch_size=batch_size, device=device, like=like)
    out = out.assign_coords({member_dim: (member_dim, np.arange(members), {"long_name": "ensemble member"})})
    out.attrs.update(ensemble_members=members, ensemble_seed=seed)
    if dataset_in:
        result = out.to_dataset()
        result.attrs = dict(lr.attrs)
        return result
    return out
