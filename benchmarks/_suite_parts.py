"""Measurements behind benchmarks/suite.py (each returns plain numbers)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import numpy as np
import torch


def suite_models() -> list[str]:
    """Registered deterministic models on the default spatial path (DownscalingNet, fit's own loop)."""
    import xdownscale as xds

    out = []
    for name in xds.list_models():
        info = xds.model_info(name)
        if (info["trainable"] and not info["probabilistic"] and info["family"] == "spatial"
                and info["wrapper"].endswith(":DownscalingNet")):
            out.append(name)
    return out


def make_model(name: str, width: int, n_blocks: int):
    """An untrained, seeded x4 softmax model (costs what a trained one costs), saved as a checkpoint."""
    from xdownscale.downscaler import Downscaler
    from xdownscale.models import DownscalingNet
    from xdownscale.prediction import baseline

    torch.manual_seed(0)
    meta = baseline("bicubic", 4).meta
    network = dict(meta["network"], model=name, constraint="softmax", skip="bicubic", mean=20.0, std=5.0,
                   width=width, n_blocks=n_blocks)
    meta = dict(meta, network=network, variable="tcwv", attrs={"units": "kg m-2"},
                normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
    m = Downscaler(DownscalingNet(**network), meta)
    m.save(os.path.join(os.environ["XDOWNSCALE_HOME"], f"bench-{name}-{width}-{n_blocks}.pt"))
    return m


def train_rate(name: str, size: dict, width: int, n_blocks: int) -> float:
    """Training samples/s of the second epoch (the first warms up), 64x64 fine patches, batch 16."""
    import xdownscale as xds
    from xdownscale.testing import synthetic_field

    hr = synthetic_field("tcwv", times=size["train_times"], ny=size["train_side"], nx=size["train_side"], seed=0)
    m = xds.fit(hr, model=name, factor=4, constraint="softmax", epochs=2, batch_size=16, patch_size=64, width=width,
                n_blocks=n_blocks, samples_per_epoch=size["samples"], val_samples=16, progress=False,
                checkpoint=os.path.join(os.environ["XDOWNSCALE_HOME"], f"train-{name}.pt"))
    return float(m.history[-1]["samples_per_s"])


def tiles_for(m, lr, chunk: int, halo: int, batch: int) -> list[tuple]:
    """The (x, weights, coarse) float32 tensors the pipeline feeds the network: blocks of ``batch``
    time steps x ``chunk`` coarse cells, extended by ``halo`` towards neighbouring tiles only (as
    the pipeline does: no halo is invented beyond the domain edge)."""
    stats = m.meta["normalization"]["target"]
    f = m.factor
    x = lr.values.astype("float32")
    from xdownscale.grid.cf import find_axes, latitude_weights
    from xdownscale.io.cf import fine_coordinates

    axes = find_axes(lr)
    wts = latitude_weights(fine_coordinates(lr, f, axes)[axes.y].values).astype("float32")
    ny, nx = x.shape[-2:]
    out = []
    for t0 in range(0, x.shape[0], batch):
        for y0 in range(0, ny, chunk):
            for x0 in range(0, nx, chunk):
                h, w = min(chunk, ny - y0), min(chunk, nx - x0)
                ys, ye = max(0, y0 - halo), min(ny, y0 + h + halo)
                xs, xe = max(0, x0 - halo), min(nx, x0 + w + halo)
                t = x[t0 : t0 + batch, ys:ye, xs:xe]
                xb = torch.from_numpy(np.ascontiguousarray((t - stats["mean"]) / stats["std"])[:, None])
                cb = torch.from_numpy(np.ascontiguousarray(t)[:, None])
                wb = torch.from_numpy(wts[ys * f : ye * f].copy()).view(1, 1, -1, 1)
                out.append((xb.float(), wb, cb.float()))
    return out


def bare_forward(m, tiles) -> float:
    """Seconds for the network alone over prepared tiles (best of two passes after a warm-up), in the
    memory layout the pipeline's ModelRunner uses (channels_last where it does)."""
    from xdownscale.engine.infer import ModelRunner

    runner = ModelRunner(m, "cpu")
    net = runner.module
    if getattr(runner, "channels_last", False):
        tiles = [(xb.contiguous(memory_format=torch.channels_last), wb, cb) for xb, wb, cb in tiles]
    best = float("inf")
    with torch.inference_mode():
        net(*tiles[0])
        for _ in range(2):
            t0 = time.perf_counter()
            for xb, wb, cb in tiles:
                net(xb, wb, cb)
            best = min(best, time.perf_counter() - t0)
    return best


def count_flops(m, tiles) -> float:
    """Floating-point operations of one pass over the tiles (convolutions, matmuls; FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        for xb, wb, cb in tiles:
            m.module(xb, wb, cb)
    return float(counter.get_total_flops())


def predict_seconds(m, lr, chunk: int, batch: int, scheduler: str | None = None) -> float:
    """End-to-end lazy predict computed to numpy, best of two runs after a warm-up. ``scheduler``:
    None for Dask's default (threads on every core), "sync" for one thread like the bare forward."""
    import dask

    lazy = lr.chunk({"time": batch, "lat": chunk, "lon": chunk})
    with dask.config.set(scheduler=scheduler) if scheduler else contextlib.nullcontext():
        lazy.isel(time=slice(0, 1)).downscale.predict(model=m, batch_size=batch).compute()
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            lazy.downscale.predict(model=m, batch_size=batch).values
            best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(n: int, threads: int | None = None) -> float:
    """GFLOP/s of a float32 n x n matrix product (best of 5) on ``threads`` torch threads (default:
    the current setting): the practical peak of that many cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def zarr_write_rate(times: int, side: int) -> float:
    """MB/s of xds.write to Zarr of an in-memory fine field in 512x512 chunks (compression included)."""
    from xdownscale.testing import synthetic_field

    da = synthetic_field("tcwv", times=times, ny=side, nx=side, seed=2).astype("float32")
    da = da.chunk({"time": 1, "lat": 512, "lon": 512})
    return da.nbytes / 1e6 / timed_zarr_write(da)


def timed_zarr_write(da) -> float:
    """Seconds for ``xds.write`` of ``da`` to a throw-away Zarr store (computing it if lazy)."""
    import xdownscale as xds

    tmp = tempfile.mkdtemp(prefix="xds-zarr-")
    try:
        t0 = time.perf_counter()
        xds.write(da, os.path.join(tmp, "out.zarr"))
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
