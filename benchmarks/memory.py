"""Peak memory of predict + Zarr write when the output is several GB.

The coarse input is itself lazy (Dask random smooth fields), so nothing is held
whole. Runs each size in a fresh subprocess and reports its peak RSS.

    python benchmarks/memory.py [--sizes 1024,1536] [--times 24] [--chunk 256]
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, tempfile, time
import dask.array as dsa, numpy as np, pandas as pd, torch, xarray as xr
import xdownscale as xds
from xdownscale.prediction import baseline
from xdownscale.models import DownscalingNet
from xdownscale.downscaler import Downscaler
n, times, chunk = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
meta = baseline("bicubic", 4).meta
net_cfg = dict(meta["network"], model="cnn", constraint="softmax", skip="bicubic", mean=20.0, std=5.0,
               width=16, n_blocks=2)
meta = dict(meta, network=net_cfg, normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
m = Downscaler(DownscalingNet(**net_cfg), meta)
field = 20 + 5 * dsa.random.RandomState(0).standard_normal((times, n, n), chunks=(1, chunk, chunk)).astype("float32")
field = abs(field)
lr = xr.DataArray(field, dims=("time", "lat", "lon"), name="tcwv",
                  coords={"time": pd.date_range("2020", periods=times, freq="h"),
                          "lat": np.linspace(70, 20, n), "lon": np.linspace(-60, 0, n)},
                  attrs={"units": "kg m-2"})
sr = lr.downscale.predict(model=m)
out = os.path.join(tempfile.mkdtemp(), "big.zarr")
t0 = time.perf_counter()
xds.write(sr, out)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"coarse": n, "times": times, "output_gb": sr.nbytes / 1e9, "chunk_mb": 16 * chunk * chunk * 4 / 1e6,
                  "peak_rss_mb": peak, "seconds": secs}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,1536")
    ap.add_argument("--times", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=256)
    args = ap.parse_args()
    for n in args.sizes.split(","):
        res = subprocess.run([sys.executable, "-c", CHILD, n, str(args.times), str(args.chunk)],
                             capture_output=True, text=True, check=True)
        print(res.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
