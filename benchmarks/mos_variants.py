"""Variants of the joint MOS model of ``mos_meteonet.py``, from every ARPEGE field (same split).

Each variant is a name and a JSON dict of ``xds.fit`` options that override the benchmark's
(cnn width 32, 4 blocks, batch 16, patch 64, 2-minute budget, seed 0). Prints RMSE by target on
the test hours and the fit seconds, e.g.

    python benchmarks/mos_variants.py '{"tp soft": {"constraint": {"msl": "add", "tp": "soft"}, "soft_weight": 10}}'
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from _data import meteonet_mos
from mos_meteonet import TARGETS, nested, on_truth

import xdownscale as xds


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    variants = json.loads(sys.argv[1])
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    arome, arpege = meteonet_mos()
    train, test = dict(time=slice(0, 17)), dict(time=slice(17, 24))
    truth, _ = nested(arome.isel(test), arpege.isel(test))
    out = Path(tempfile.mkdtemp())
    for name, options in variants.items():
        kw = dict(model="cnn", batch_size=16, patch_size=64, width=32, n_blocks=4, seed=0, progress=False, trim=True,
                  max_minutes=2, constraint={"msl": "add", "tp": "softmax"})
        kw.update(options)
        t0 = time.perf_counter()
        m = xds.fit(lr=arpege.isel(train), hr=arome.isel(train), var=TARGETS, checkpoint=out / "joint.pt", **kw)
        seconds = time.perf_counter() - t0
        sr = on_truth(xds.predict(arpege.isel(test)[m.meta["predictors"]], model=m), truth)
        scores = {v: round(float(xds.evaluate(sr[v].compute(), truth[v])["rmse"]), 5) for v in TARGETS}
        print(f"{name}: {scores}, {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
