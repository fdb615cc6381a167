"""Does drawing half of liif's training batches at whole factors cost the scales in between?

MeteoNet AROME msl (224 x 312, 0.025 deg): train on hours 0-17, test on 18-24. One default
``liif`` per ``integer_share`` (the share of training batches drawn at a whole factor within
the training scales; the rest uniform), everything else the library default. Per factor (whole
and not) the coarse test input is the exact area-weighted coarsening of the truth
(``liif_scales.coarse_of``); the score is the liif RMSE over torch's bicubic onto the truth grid.

    PYTHONPATH=. python benchmarks/liif_integer_share.py [--shares 0,0.5] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from _data import meteonet_msl
from liif_scales import bicubic_onto, coarse_of, scores

import xdownscale as xds

FACTORS = [1.5, 2, 2.5, 3, 4, 5.5, 6, 8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shares", default="0,0.5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fit", default="{}", help="further JSON options for every fit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    msl = meteonet_msl()
    train, test = msl.isel(time=slice(0, 18)), msl.isel(time=slice(18, 25))
    cases = [(f, *coarse_of(test, f)) for f in FACTORS]
    base = {f: scores(bicubic_onto(lr, truth), truth)["rmse"] for f, truth, lr in cases}
    out = Path(tempfile.mkdtemp())
    for share in (float(s) for s in args.shares.split(",")):
        t0 = time.perf_counter()
        m = xds.fit(train, model="liif", integer_share=share, seed=0, progress=False, checkpoint=out / f"l{share}.pt",
                    **json.loads(args.fit))
        seconds = time.perf_counter() - t0
        ratios = {f: round(scores(lr.downscale.predict(model=m, target=truth).compute(), truth)["rmse"] / base[f], 4)
                  for f, truth, lr in cases}
        print(json.dumps({"integer_share": share, "fit_s": round(seconds, 1),
                          "updates": m.meta["training"].get("updates"), "rmse_over_bicubic": ratios}), flush=True)


if __name__ == "__main__":
    main()
