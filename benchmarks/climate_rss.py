"""Peak memory of evaluate(suite="climate") on Dask-chunked input, each case in a fresh process.

Cases:
* ``wfde5``: a month of hourly WFDE5 UK Tair (744 x 20 x 28) as the truth, opened
  with ``chunks={"time": 24}``; the prediction is its exact x4 coarsening
  interpolated back (bicubic) plus lazily generated noise, with the coarse field
  as ``lr``. Inputs are 1.7 MB each: this measures the suite's fixed cost.
* ``synthetic``: a lazily generated hourly field (``--hours`` x 96 x 120, float32;
  a year is 0.4 GB per array, truth and prediction never held whole) to show that
  the peak does not follow the input size. ``--layout time`` chunks it by day (24 h
  x the whole grid, as files are stored), ``--layout space`` in whole-time tiles
  (hours x 24 x 30).

    python benchmarks/climate_rss.py                 # both cases, writes results/climate_rss.md
    python benchmarks/climate_rss.py --case wfde5
    python benchmarks/climate_rss.py --case synthetic --hours 2190 --layout time --tag after
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(case: str, hours: int = 8760, layout: str = "space") -> dict:
    warnings.simplefilter("ignore")
    import dask
    import dask.array as dsa
    import numpy as np
    import pandas as pd
    import xarray as xr

    import xdownscale as xds

    dask.config.set(scheduler="threads", num_workers=2)
    if case == "wfde5":
        from _data import data_dir

        truth = xr.open_dataset(data_dir() / "wfde5-uk" / "air_temperature.nc", chunks={"time": 24})["Tair"]
        lr = xds.coarsen(truth, 4)
        noise = xr.DataArray(dsa.random.default_rng(0).normal(0, 0.5, truth.shape, chunks=(24, 20, 28)),
                             dims=truth.dims, coords=truth.coords)
        base = truth.coarsen(lat=4, lon=4).mean().interp_like(truth, method="linear").chunk({"time": 24})
        pred = (base.fillna(truth) + noise).astype("float32").assign_attrs(truth.attrs)
        desc = "WFDE5 UK Tair, 744 h x 20 x 28, chunks of 24 h"
    else:
        nt, ny, nx = hours, 96, 120
        rng = dsa.random.default_rng(1)
        coords = {"time": pd.date_range("2001-01-01", periods=nt, freq="h"),
                  "lat": ("lat", np.linspace(40, 60, ny), {"units": "degrees_north"}),
                  "lon": ("lon", np.linspace(-10, 10, nx), {"units": "degrees_east"})}
        seasonal = xr.DataArray(280 + 8 * np.sin(2 * np.pi * np.arange(nt) / nt), dims="time")
        chunks = (nt, 24, 30) if layout == "space" else (24, ny, nx)
        truth = (seasonal + xr.DataArray(rng.normal(0, 2, (nt, ny, nx), chunks=chunks).astype("float32"),
                                         dims=("time", "lat", "lon"), coords=coords))
        truth = truth.astype("float32").assign_attrs(units="K", standard_name="air_temperature").rename("tas")
        pred = (truth + xr.DataArray(rng.normal(0.3, 1, (nt, ny, nx), chunks=chunks).astype("float32"),
                                     dims=truth.dims, coords=coords)).assign_attrs(truth.attrs)
        lr = None
        desc = (f"synthetic hourly, {nt} h x {ny} x {nx} float32 ({truth.nbytes / 1e9:.2f} GB per array), "
                f"chunks {chunks}")
    before = rss_mb()
    t0 = time.perf_counter()
    ev = xds.evaluate(pred, truth, lr=lr, suite="climate")
    took = time.perf_counter() - t0
    return {"case": case, "what": desc, "input_mb_per_array": truth.nbytes / 1e6, "rss_before_mb": before,
            "peak_rss_mb": rss_mb(), "seconds": took, "scores": len(ev.data_vars),
            "txx_bias": float(ev.txx_bias), "wasserstein": float(ev.wasserstein),
            "values": {k: ev[k].values.tolist() for k in ev.data_vars if ev[k].size == 1}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["wfde5", "synthetic", "both"], default="both")
    ap.add_argument("--hours", type=int, default=8760, help="synthetic case: hours (default a year)")
    ap.add_argument("--layout", choices=["space", "time"], default="space", help="synthetic case: chunking")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.hours, args.layout)), flush=True)
        return
    rows = []
    for case in (["wfde5", "synthetic"] if args.case == "both" else [args.case]):
        res = subprocess.run([sys.executable, __file__, "--child", case, "--hours", str(args.hours),
                              "--layout", args.layout], capture_output=True, text=True, cwd=Path(__file__).parent)
        line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            raise SystemExit(res.stderr[-3000:])
        rows.append(json.loads(line[0][7:]))
        print(rows[-1], flush=True)
    lines = ["# Peak RSS of evaluate(suite='climate') on Dask-chunked input (fresh process per case)", "",
             f"`python benchmarks/climate_rss.py {' '.join(sys.argv[1:])}`", "",
             "| case | input MB per array | RSS after imports MB | peak RSS MB | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['input_mb_per_array']:.1f} | {r['rss_before_mb']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = ("climate_rss" if args.case == "both" else f"climate_rss_{args.case}") + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
