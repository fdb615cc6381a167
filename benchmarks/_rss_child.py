"""One peak-RSS measurement for benchmarks/suite.py: lazy coarse field -> predict -> Zarr, in a fresh process.

    python benchmarks/_rss_child.py MODEL COARSE_SIDE TIMES CHUNK
"""
import json
import os
import resource
import sys
import tempfile

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp(prefix="xds-rss-"))
from _suite_parts import make_model, timed_zarr_write  # noqa: E402

import xdownscale  # noqa: E402,F401  (registers the .downscale accessor)

name, n, times, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = make_model(name, 8, 1)  # small network: this measures memory, not speed
noise = dsa.random.RandomState(0).standard_normal((times, n, n), chunks=(1, chunk, chunk))
field = abs(20 + 5 * noise).astype("float32")
lr = xr.DataArray(field, dims=("time", "lat", "lon"), name="tcwv",
                  coords={"time": pd.date_range("2020", periods=times, freq="h"),
                          "lat": np.linspace(70, 20, n), "lon": np.linspace(-60, 0, n)}, attrs={"units": "kg m-2"})
sr = lr.downscale.predict(model=m)
secs = timed_zarr_write(sr)
print(json.dumps({"model": name, "coarse": n, "times": times, "output_mb": sr.nbytes / 1e6,
                  "chunk_mb": 16 * chunk * chunk * 4 / 1e6,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": secs}))
