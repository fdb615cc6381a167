"""Speed on this machine: training samples/s, inference fine-grid megapixels/s, and the
cost of the Dask pipeline (tiles, halos, normalisation, assembly) over a bare forward
pass of the same model over the same tiles.

    python benchmarks/speed.py [--width 64] [--n-blocks 4] [--times 8] [--size 256]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import dask
import numpy as np
import torch

import xdownscale as xds
from xdownscale.testing import synthetic_field


def bare_forward(m, lr, chunk: int, halo: int, batch_size: int) -> float:
    """Seconds for the network alone over the same halo-padded tiles, inputs prepared beforehand."""
    stats = m.meta["normalization"]["target"]
    x = lr.values.astype("float32")
    pad = np.pad(x, ((0, 0), (halo, halo), (halo, halo)), mode="edge")
    wts = np.cos(np.deg2rad(lr.lat.values)).repeat(m.factor)  # stand-in weights, same cost
    wpad = np.pad(wts.reshape(-1, m.factor), ((halo, halo), (0, 0)), mode="edge").reshape(-1)
    tiles, coarse, rows = [], [], []
    ny, nx = x.shape[-2:]
    for y0 in range(0, ny, chunk):
        for x0 in range(0, nx, chunk):
            t = pad[:, y0 : y0 + chunk + 2 * halo, x0 : x0 + chunk + 2 * halo]
            for k in range(len(t)):
                tiles.append(torch.from_numpy((t[k][None, None] - stats["mean"]) / stats["std"]).float())
                coarse.append(torch.from_numpy(t[k][None, None]).float())
                rows.append(torch.from_numpy(wpad[y0 * m.factor : (y0 + chunk + 2 * halo) * m.factor]).float().view(1, 1, -1, 1))
    net = m.module.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for xb, cb, wb in zip(tiles, coarse, rows):
            net(xb, wb, cb)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=4)
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="coarse grid side")
    ap.add_argument("--chunk", type=int, default=128, help="coarse chunk side")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    hr = synthetic_field("tcwv", times=16, ny=256, nx=256, seed=0)
    m = xds.fit(hr, model="cnn", factor=4, constraint="softmax", epochs=2, batch_size=16, patch_size=64,
                width=args.width, n_blocks=args.n_blocks, samples_per_epoch=512, val_samples=16,
                checkpoint=os.path.join(os.environ["XDOWNSCALE_HOME"], "speed.pt"), progress=False)
    train_rate = m.history[-1]["samples_per_s"]
    print(f"training: {train_rate:.1f} samples/s (64x64 fine patches, batch 16, width {args.width}, "
          f"{args.n_blocks} blocks)")
    big = synthetic_field("tcwv", times=args.times, ny=args.size * 4, nx=args.size * 4, seed=1)
    lr = big.downscale.coarsen(4).compute()
    halo = m.module.receptive_radius
    bare = bare_forward(m, lr, args.chunk, halo, 1)
    with dask.config.set(scheduler="sync"):
        t0 = time.perf_counter()
        lr.chunk({"time": 1, "lat": args.chunk, "lon": args.chunk}).downscale.predict(model=m, batch_size=1).compute()
        pipe_sync = time.perf_counter() - t0
    t0 = time.perf_counter()
    lr.chunk({"time": 1, "lat": args.chunk, "lon": args.chunk}).downscale.predict(model=m, batch_size=1).compute()
    pipe_threads = time.perf_counter() - t0
    mp = big.size / 1e6
    print(f"inference: {mp:.1f} fine megapixels; bare forward {bare:.2f} s ({mp / bare:.2f} MP/s); "
          f"predict (dask, 1 thread) {pipe_sync:.2f} s ({mp / pipe_sync:.2f} MP/s, "
          f"pipeline overhead {100 * (pipe_sync / bare - 1):.1f}%); predict (dask threads) {pipe_threads:.2f} s "
          f"({mp / pipe_threads:.2f} MP/s)")


if __name__ == "__main__":
    main()
