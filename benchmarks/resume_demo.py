"""Kill-and-resume demonstration of ``xdownscale predict --resume`` (prints a small report).

Runs the CLI on a synthetic coarse field, kills it with SIGKILL once a number of regions are
marked done, reruns the same command, and compares the product with an uninterrupted run.

    python benchmarks/resume_demo.py [--side 192] [--times 8] [--kill-after 20]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "xdownscale.cli", "predict", *map(str, args), "-q"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=192, help="coarse grid side")
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--kill-after", type=int, default=20, help="regions done before the kill")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp(prefix="xds-demo-"))
    from _suite_parts import make_model

    from xdownscale.io.resumable import progress_path, store_status
    from xdownscale.testing import synthetic_field

    tmp = Path(tempfile.mkdtemp(prefix="xds-resume-"))
    m = make_model("cnn", 16, 2)
    coarse = synthetic_field("tcwv", times=args.times, ny=args.side * 4, nx=args.side * 4, seed=3).downscale.coarsen(4)
    coarse.to_netcdf(tmp / "coarse.nc")
    out, markers = tmp / "out.zarr", progress_path(tmp / "out.zarr")
    cmd = cli(tmp / "coarse.nc", "--model", m.checkpoint, "--out", out, "--chunks", 32, "--resume")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not (markers.is_dir() and len(list(markers.glob("*.done"))) >= args.kill_after):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - t0
    done = {p.name: p.stat().st_mtime_ns for p in markers.glob("*.done")}
    print(f"$ {' '.join(map(str, cmd))}")
    print(f"SIGKILL after {killed_at:.1f} s: {len(done)} regions marked done; final name exists: {out.exists()}; "
          f"status: {store_status(out)}")
    t0 = time.perf_counter()
    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(f"rerun ({time.perf_counter() - t0:.1f} s): {rerun.stdout.strip()}")
    t0 = time.perf_counter()
    subprocess.run(cli(tmp / "coarse.nc", "--model", m.checkpoint, "--out", tmp / "full.zarr", "--chunks", 32),
                   capture_output=True, text=True, check=True)
    print(f"uninterrupted run without --resume: {time.perf_counter() - t0:.1f} s")
    a, b = xr.open_zarr(out)["tcwv"].values, xr.open_zarr(tmp / "full.zarr")["tcwv"].values
    print(f"resumed product equals the uninterrupted one: {np.array_equal(a, b)} (max |diff| "
          f"{float(np.nanmax(np.abs(a - b))):.3g}); xdownscale_complete = "
          f"{xr.open_zarr(out).attrs['xdownscale_complete']}")


if __name__ == "__main__":
    main()
