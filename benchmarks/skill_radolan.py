"""The default ``fit`` on DWD RADOLAN hourly radar (softmax), next to bicubic.

Train and test on disjoint parts of the 900 x 900 km grid (1 km): the test square is
y[448:704] x[512:768]; the training area is the square y[192:448] x[320:576] (``--area
small``) or the whole band y[0:448] (``--area band``, x cropped to a multiple of the factor).
The coarse input is the fine field coarsened by the factor. Prints the fit seconds, the
updates and RMSE / bicubic; appends a row to ``results/skill_radolan.jsonl``.

    PYTHONPATH=. python benchmarks/skill_radolan.py --factor 4 --area band
    PYTHONPATH=. python benchmarks/skill_radolan.py --factor 8 --area band --fit '{"patch_size": 128}'
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import data_dir

import xdownscale as xds
from xdownscale.io.radolan import open_radolan

RESULTS = Path(__file__).resolve().parent / "results" / "skill_radolan.jsonl"


def rmse(a, b) -> float:
    d = np.asarray(a.values, "float64") - np.asarray(b.values, "float64")
    return float(np.sqrt(np.nanmean(d**2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--area", choices=["small", "band"], default="band")
    p.add_argument("--fit", default="{}", help="JSON options for xds.fit")
    args = p.parse_args()
    f, options = args.factor, json.loads(args.fit)
    rw = open_radolan(data_dir() / "radolan-rw" / "RW-20221018.tar.gz", times=slice(0, args.hours)).load()
    if args.area == "small":
        train = rw.isel(y=slice(192, 448), x=slice(320, 576))
    else:
        train = rw.isel(y=slice(0, 448), x=slice(0, rw.sizes["x"] // f * f))
    test = rw.isel(y=slice(448, 704), x=slice(512, 768))
    lr = xds.coarsen(test, f)
    bicubic = rmse(xds.predict(lr, model="bicubic", factor=f, like=test), test)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = xds.fit(train, factor=f, constraint="softmax", progress=False, checkpoint=Path(tmp) / "m.pt", **options)
        fit_s = time.perf_counter() - t0
        score = rmse(xds.predict(lr, model=m, like=test), test)
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "factor": f, "hours": rw.sizes["time"],
           "area": args.area, "options": options, "model": m.model_name, "fit_s": round(fit_s, 1),
           "updates": m.meta["training"]["updates"], "rmse": score, "bicubic_rmse": bicubic,
           "ratio": score / bicubic}
    print(f"RADOLAN {row['hours']} h x{f}, train area {args.area}: {m.model_name} {fit_s:.0f} s, "
          f"{row['updates']} updates; RMSE {score:.4f} mm/h vs bicubic {bicubic:.4f}: {row['ratio']:.3f}x")
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
