"""One run of predict under a memory budget, in a fresh process: prints peak RSS over the baseline.

    python benchmarks/_budget_child.py PATH FRAMES COARSE_SIDE MAX_MEMORY [THREADS] [WIDTH]

PATH: ``api`` (an in-memory field -> predict -> Zarr), ``dask`` (the same field as one Dask
chunk) or ``cli`` (a NetCDF file -> ``xdownscale predict --max-memory`` -> Zarr). MAX_MEMORY:
``none`` for the default. The baseline is the peak after importing xdownscale, building the
input and loading the model (a cnn at x4), before anything is predicted.
"""
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import xarray as xr

os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp(prefix="xds-budget-"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

path, frames, n, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 0
width = int(sys.argv[6]) if len(sys.argv) > 6 else 64
budget = None if budget == "none" else budget
if threads:
    import dask

    dask.config.set(num_workers=threads)

from _suite_parts import make_model  # noqa: E402

import xdownscale as xds  # noqa: E402
from xdownscale.downscaler import Downscaler  # noqa: E402

work = tempfile.mkdtemp(prefix="xds-budget-run-")
rng = np.random.default_rng(0)
field = (20 + 5 * np.abs(rng.standard_normal((frames, n, n)))).astype("float32")
lr = xr.DataArray(field, dims=("time", "lat", "lon"), name="tcwv",
                  coords={"time": pd.date_range("2020", periods=frames, freq="h"),
                          "lat": np.linspace(60, 40, n), "lon": np.linspace(-10, 10, n)}, attrs={"units": "kg m-2"})
make_model("cnn", width, 4)
ckpt = os.path.join(os.environ["XDOWNSCALE_HOME"], f"bench-cnn-{width}-4.pt")
if path == "cli":
    src = os.path.join(work, "coarse.nc")
    lr.to_netcdf(src)
    del lr, field
model = Downscaler.load(ckpt)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = os.path.join(work, "fine.zarr")
t0 = time.perf_counter()
if path == "cli":
    from xdownscale.cli import main

    argv = ["predict", src, "--model", ckpt, "--out", out] + ([] if budget is None else ["--max-memory", budget])
    rc = main(argv)
    assert rc in (0, None), rc
else:
    if path == "dask":
        lr = lr.chunk({"time": -1, "lat": -1, "lon": -1})
    kwargs = {} if budget is None else {"max_memory": budget}  # so the same script measures older versions
    xds.write(xds.predict(lr, model=model, **kwargs), out)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"path": path, "frames": frames, "coarse": n, "max_memory": budget, "threads": threads,
                  "baseline_mb": baseline / 1e6, "peak_mb": peak / 1e6, "over_baseline_mb": (peak - baseline) / 1e6,
                  "output_mb": frames * (4 * n) ** 2 * 4 / 1e6, "seconds": secs}))
