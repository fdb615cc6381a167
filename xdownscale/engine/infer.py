"""Lazy tiled inference with halos.

The coarse field is split into Dask chunks; each chunk is extended towards its
neighbours by a halo of at least the network's receptive radius (in coarse
cells) with ``dask.array.map_overlap``, run through the network, and trimmed by
``halo * factor`` fine cells. No halo is invented beyond the domain edge: the
network sees the edge as it does in a whole-field pass and in training (on a
global grid the longitude halo wraps round instead). Missing (NaN) coarse cells
are filled from their nearest valid neighbour before the network sees them and
are NaN again in the output. A chunked
prediction therefore equals the single-chunk prediction to float precision,
and grids larger than memory stream chunk by chunk. Output chunks are the
input chunks times the factor, as Zarr writes need.

On a ``dask.distributed`` cluster the :class:`ModelRunner` travels in the graph as a
reference to its checkpoint (path and SHA-256), so each worker process loads the model
once and keeps it cached; each task runs torch with the worker's thread budget
(:func:`task_threads`).
"""
from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from typing import Any

import dask.array as dsa
import numpy as np
import torch

from ..data.fill import fill_nearest
from .device import resolve_device, use_channels_last
from .precision import autocast, resolve_precision

DEFAULT_FINE_CHUNK = 1024  # fine cells per side of an output chunk when the input is not chunked
TARGET_CHUNK_BYTES = 64 << 20  # fine float32 output per chunk: time steps are grouped up to this
_CACHE: dict = {}
_LOCK = threading.Lock()
_RUNNERS: OrderedDict = OrderedDict()  # (id(downscaler), device, precision) -> (downscaler, weights, runner, module)
RUNNER_CACHE_SIZE = 8  # networks kept alive for repeated predict calls (the least recently used go)


def task_threads() -> int | None:
    """Torch intra-op threads for one inference task, or None to leave torch's setting alone.

    ``$XDOWNSCALE_TORCH_THREADS`` if set; inside a ``dask.distributed`` worker, the worker's
    ``OMP_NUM_THREADS`` (the Nanny sets it, 1 by default, configurable with
    ``distributed.nanny.pre-spawn-environ``), else the cores this process may use divided by
    the worker's task slots, so concurrent tasks never oversubscribe the cores."""
    env = os.environ.get("XDOWNSCALE_TORCH_THREADS")
    if env:
        return max(1, int(env))
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp and omp.isdigit():
        return max(1, int(omp))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, worker.state.nthreads))


def _runner_from_checkpoint(path: str, digest: str | None, device: str, precision: str = "fp32"):
    key = (path, digest, device, precision)
    with _LOCK:
        if key not in _CACHE:
            from .downscaler import Downscaler

            _CACHE[key] = ModelRunner(Downscaler.load(path), device, precision)
        return _CACHE[key]


def _runner_from_meta(meta: dict, device: str, precision: str = "fp32"):
    from .downscaler import Downscaler

    return ModelRunner(Downscaler.from_meta(meta), device, precision)


def _weights_version(module) -> tuple:
    """Changes whenever a weight or buffer is replaced or edited in place (training, load_state_dict):
    torch counts in-place edits of every tensor in ``_version`` (what autograd checks too)."""
    return tuple((id(t), t._version) for t in (*module.parameters(), *module.buffers()))


def runner_for(downscaler, device="auto", precision: str | None = "fp32") -> "ModelRunner":
    """The :class:`ModelRunner` of ``downscaler`` on ``device``, kept while the module lives and its
    weights are unchanged: repeated ``predict`` calls skip the channels-last copy of the network."""
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    key = (id(downscaler), str(dev), precision)
    version = _weights_version(downscaler.module)
    with _LOCK:
        cached = _RUNNERS.get(key)
        # the entry holds the Downscaler and its module, so neither id can be reused while cached
        if cached is not None and cached[0] is downscaler and cached[1] == version and cached[3] is downscaler.module:
            _RUNNERS.move_to_end(key)
            return cached[2]
    runner = ModelRunner(downscaler, dev, precision)
    with _LOCK:
        _RUNNERS[key] = (downscaler, version, runner, downscaler.module)
        while len(_RUNNERS) > RUNNER_CACHE_SIZE:
            _RUNNERS.popitem(last=False)
    return runner


class ModelRunner:
    """Holds the network on its device. Pickles as a reference to its checkpoint, so a
    Dask cluster loads the model once per worker instead of shipping it in the graph."""

    def __init__(self, downscaler, device="auto", precision: str | None = "fp32"):
        self.downscaler = downscaler
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.module = downscaler.module.to(self.device).eval()
        self.channels_last = use_channels_last(self.device)
        if self.channels_last:  # a copy: the Downscaler's own module keeps its layout
            self.module = copy.deepcopy(self.module).to(memory_format=torch.channels_last)

    def __reduce__(self):
        d = self.downscaler
        if not any(True for _ in d.module.parameters()):
            return (_runner_from_meta, (d.meta, str(self.device), self.precision))
        if d.checkpoint is None:
            raise RuntimeError("save the model first (Downscaler.save(path)) to predict on a distributed cluster")
        return (_runner_from_checkpoint, (str(d.checkpoint), d.checkpoint_hash, str(self.device), self.precision))

    @torch.inference_mode()
    def __call__(self, x: np.ndarray, coarse: np.ndarray, weights: np.ndarray | None, batch_size: int,
                 threads: int | None = None) -> np.ndarray:
        """x: (N, C, h, w) normalised; coarse: (N, h, w) physical field to conserve, or (N, K, h, w)
        one per output of a multi-target network (then the result is (N, K, H, W));
        weights: (H,) fine row weights or None; threads: torch threads (default :func:`task_threads`
        of the calling thread). Returns (N, H, W)."""
        threads = task_threads() if threads is None else threads
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        w = None if weights is None else torch.from_numpy(weights.astype("float32")).view(1, 1, -1, 1).to(self.device)
        out = None  # filled batch by batch: no list of batches and no concatenated copy
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype="float32")).to(self.device)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            multi = coarse.ndim == 4  # one coarse map per output channel: a multi-target network
            part = coarse[i : i + batch_size] if multi else coarse[i : i + batch_size, None]
            cb = torch.from_numpy(np.ascontiguousarray(part, dtype="float32")).to(self.device)
            with autocast(self.precision, self.device):
                pred = self.module(xb, w, cb).float()
            y = (pred if multi else pred[:, 0]).cpu().numpy()
            del xb, cb
            if out is None:
                out = np.empty((len(x),) + y.shape[1:], dtype="float32")
            out[i : i + len(y)] = y
            del y
        return out


def _starts(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(int)


def _min_chunks(chunks: tuple[int, ...], halo: int) -> tuple[int, ...]:
    """Merge chunks smaller than the halo into their neighbours (map_overlap needs depth <= chunk)."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < halo:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < halo:
        tail = out.pop()
        out[-1] += tail
    return tuple(out)


def default_chunks(shape, factor: int, halo: int, spatial_chunks=None):
    """Input chunks: one sample per chunk along leading dims, spatial tiles of ~1024 fine cells."""
    side = max(DEFAULT_FINE_CHUNK // factor, 2 * halo, 16)
    lead = tuple(1 for _ in shape[1:-2])
    ys, xs = spatial_chunks or (min(shape[-2], side), min(shape[-1], side))
    return (shape[0],) + lead + (ys, xs)


def plan_chunks(sizes: dict, lead: list[str], axes, factor: int, halo: int, chunks=None,
                time_dim: str | None = None, limit=None) -> dict:
    """Input chunks for a field that is not a Dask array yet (in memory, or read lazily from a
    file): spatial tiles of about ``DEFAULT_FINE_CHUNK`` fine cells (or ``chunks``: an int per
    spatial axis, or a dict by dimension), and along ``time_dim`` as many steps as make about
    ``TARGET_CHUNK_BYTES`` of fine output, so the network sees real batches; other leading dims 1.
    The Python API and the CLI both chunk through here. ``limit``: ``(side, steps)`` of a memory
    plan (:func:`~xdownscale.engine.budget.plan_memory`), which caps both, ``chunks`` included."""
    named = chunks if isinstance(chunks, dict) else ({axes.y: chunks, axes.x: chunks} if chunks else {})
    side = max(DEFAULT_FINE_CHUNK // factor, 2 * halo, 16)
    ys = int(named.get(axes.y, min(sizes[axes.y], side)))
    xs = int(named.get(axes.x, min(sizes[axes.x], side)))
    ys, xs = (sizes[axes.y] if ys == -1 else ys), (sizes[axes.x] if xs == -1 else xs)
    fine_tile = min(ys, sizes[axes.y]) * min(xs, sizes[axes.x]) * factor ** 2 * 4
    out = {axes.y: ys, axes.x: xs}
    for d in lead:
        steps = max(1, min(sizes[d], TARGET_CHUNK_BYTES // max(fine_tile, 1))) if d == time_dim else 1
        out[d] = named.get(d, steps)
    if limit is not None:
        out[axes.y], out[axes.x] = min(out[axes.y], limit[0]), min(out[axes.x], limit[0])
        if time_dim in out:
            out[time_dim] = min(sizes[time_dim] if out[time_dim] == -1 else out[time_dim], limit[1])
    return out


def tiled_predict(
    runner: ModelRunner,
    stacked: Any,
    *,
    stats: list[dict],
    factor: int,
    halo: int,
    row_weights: np.ndarray | None,
    covariates: np.ndarray | None = None,
    batch_size: int = 16,
    periodic_x: bool = False,
    gate=None,
    sources: list | None = None,
) -> Any:
    """Predict lazily. ``stacked``: (C, *lead, ny, nx) coarse inputs in physical units (channel 0:
    the variable). ``row_weights``: (ny * factor,) fine row weights or None. ``periodic_x``: the
    last axis closes on itself (global longitude), so halos wrap round instead of repeating the
    edge and no seam appears at the date line. ``gate``: what runs each chunk (``gate.run(fn,
    *args)``; :class:`~xdownscale.engine.budget.ChunkGate` bounds the chunks at once). Returns a dask
    array (*lead, ny*factor, nx*factor) float32; with ``sources`` (a multi-target network: the input
    channel each output conserves, or None) one more leading axis, the K outputs. A numpy ``stacked``
    is predicted at once as one tile, with no graph (the small-input path of
    :func:`~xdownscale.engine.field_predict.predict_dataarray`) and gives numpy."""
    ny, nx = stacked.shape[-2:]
    in_memory = not isinstance(stacked, dsa.Array)
    if in_memory:
        ychunks, xchunks = (ny,), (nx,)
    else:
        stacked = stacked.rechunk({stacked.ndim - 2: _min_chunks(stacked.chunks[-2], halo),
                                   stacked.ndim - 1: _min_chunks(stacked.chunks[-1], halo)})
        ychunks, xchunks = stacked.chunks[-2], stacked.chunks[-1]
    depth_y, depth_x = min(halo, min(ychunks)), min(halo, min(xchunks))
    ystart, xstart = _starts(ychunks), _starts(xchunks)
    mean = np.array([s["mean"] for s in stats], dtype="float32")
    std = np.array([s["std"] for s in stats], dtype="float32")
    f = factor

    def run_block(block: np.ndarray, block_info=None) -> np.ndarray:
        if gate is None:
            return predict_block(block, block_info, None)
        # the thread budget is read here: a Dask worker knows its own only in its task threads
        return gate.run(predict_block, block, block_info, task_threads())

    def predict_block(block: np.ndarray, block_info, threads: int | None) -> np.ndarray:
        iy, ix = block_info[0]["chunk-location"][-2:]
        c, *lead, h, w = block.shape
        # halos only between tiles (and round a periodic axis): at the domain edge the network
        # sees the edge itself, as in a whole-field pass and in training
        top, bottom = (depth_y if iy > 0 else 0), (depth_y if iy < len(ychunks) - 1 else 0)
        left = depth_x if (periodic_x or ix > 0) else 0
        right = depth_x if (periodic_x or ix < len(xchunks) - 1) else 0
        rows = np.arange(ystart[iy] - top, ystart[iy] - top + h)
        cols = np.mod(np.arange(xstart[ix] - left, xstart[ix] - left + w), nx)
        n = int(np.prod(lead)) if lead else 1
        x = block.reshape(c, n, h, w).transpose(1, 0, 2, 3).astype("float32")  # the network's precision
        missing = ~np.isfinite(x[:, 0])
        x = fill_nearest(x)  # every channel, as training fills them (data/fill.py)
        coarse = np.where(missing, mean[0], x[:, 0])
        if sources is not None:  # each output's own source (filled where missing), zeros without one
            coarse = np.stack([x[:, k] if k is not None else np.zeros_like(x[:, 0]) for k in sources], axis=1)
        x -= mean[None, :, None, None]
        x /= std[None, :, None, None]
        x = np.nan_to_num(x, nan=0.0, copy=False)
        if covariates is not None:
            cov = covariates[:, rows][:, :, cols]
            x = np.concatenate([x, np.broadcast_to(cov, (n, *cov.shape))], axis=1)
        wts = None if row_weights is None else row_weights.reshape(ny, f)[rows].reshape(-1)
        y = runner(x, coarse, wts, batch_size, threads)
        y = y[..., top * f : y.shape[-2] - bottom * f, left * f : y.shape[-1] - right * f]
        miss = missing[:, top : h - bottom, left : w - right]
        if miss.any():
            miss = miss.repeat(f, axis=1).repeat(f, axis=2)
            y = np.where(miss[:, None] if sources is not None else miss, np.nan, y)
        if sources is not None:  # (N, K, H, W) -> (K, *lead, H, W)
            return np.moveaxis(y, 1, 0).reshape(len(sources), *lead, *y.shape[-2:]).astype("float32", copy=False)
        return y.reshape(*lead, y.shape[1], y.shape[2]).astype("float32", copy=False)

    if in_memory:  # the halo a periodic axis wraps round, as map_overlap would add it
        block = np.concatenate([stacked[..., nx - depth_x:], stacked, stacked[..., :depth_x]], axis=-1) \
            if periodic_x and depth_x else stacked
        return predict_block(block, {0: {"chunk-location": (0,) * block.ndim}}, task_threads())
    out_chunks = stacked.chunks[1:-2] + (tuple(c * f for c in ychunks), tuple(c * f for c in xchunks))
    depth = {i: 0 for i in range(stacked.ndim)}
    depth[stacked.ndim - 2], depth[stacked.ndim - 1] = depth_y, depth_x
    boundary = {i: "none" for i in range(stacked.ndim)}
    boundary[stacked.ndim - 1] = "periodic" if periodic_x else "none"
    if sources is not None:  # the channel axis (one chunk) becomes the outputs' axis
        return dsa.map_overlap(run_block, stacked.rechunk({0: -1}), depth=depth, boundary=boundary, trim=False,
                               chunks=((len(sources),),) + out_chunks, dtype="float32",
                               meta=np.empty((0,) * stacked.ndim, dtype="float32"))
    return dsa.map_overlap(run_block, stacked, depth=depth, boundary=boundary, trim=False,
                           drop_axis=0, chunks=out_chunks, dtype="float32",
                           meta=np.empty((0,) * (stacked.ndim - 1), dtype="float32"))
