"""Inference cost of ``liif``: seconds per output megapixel at x4 (issue #13 quoted 23.5 s/Mpx).

The weights do not change the cost, so the model is fitted for two updates on a synthetic
field with the default options, then predicts one 256 x 256 coarse step at x4 (1024 x 1024
= 1.05 Mpx). Writes ``benchmarks/results/liif_cost.md``.

    PYTHONPATH=. python benchmarks/liif_cost.py [--threads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import xdownscale as xds
from xdownscale.testing import synthetic_field


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256, help="coarse cells per side")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    torch.set_num_threads(args.threads)
    m = xds.fit(synthetic_field("t2m", times=8, ny=64, nx=64, seed=0), model="liif", max_updates=2, progress=False)
    lr = synthetic_field("t2m", times=1, ny=args.size, nx=args.size, seed=1)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = xds.predict(lr, model=m, factor=4).load()
        times.append(time.perf_counter() - t0)
    mpx = out.size / 1e6
    best = min(times)
    line = (f"liif x4, {args.size}x{args.size} -> {out.shape[-2]}x{out.shape[-1]} ({mpx:.2f} Mpx), "
            f"{args.threads} threads, load {os.getloadavg()[0]:.1f}: best of {args.repeats} {best:.2f} s = "
            f"{best / mpx:.2f} s/Mpx (all: {', '.join(f'{t:.2f}' for t in times)} s)")
    print(line)
    (Path(__file__).parent / "results" / "liif_cost.md").write_text(
        "# liif inference cost (benchmarks/liif_cost.py)\n\n" + line + "\n")


if __name__ == "__main__":
    main()
