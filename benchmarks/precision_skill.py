"""What bf16 does to accuracy and conservation: the same trained model predicted in fp32 and bf16.

Per field and model: one model is trained (``--train-precision``, default fp32) and the held-out
hours are predicted in fp32 and in bf16. Printed: RMSE against the truth for both, the relative
change of RMSE, the largest difference between the two predictions, and the conservation
violation (largest |area-weighted block mean - coarse cell| / mean |coarse|) of each. Fields:

* ``tair``: WFDE5 UK hourly 2 m air temperature (K), 0.5 deg, 20 x 28 (sea NaN), January 2017;
  first 558 hours train, last 186 test (as ``benchmarks/skill.py``);
* ``msl``: MeteoNet AROME mean sea-level pressure (Pa), 0.025 deg, 224 x 312, 25 hours; first
  19 train, last 6 test.

    PYTHONPATH=. python benchmarks/precision_skill.py --fields tair,msl --models cnn,espcn
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import data_dir, meteonet_msl  # noqa: E402

import xdownscale as xds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def field(name: str) -> tuple[xr.DataArray, xr.DataArray]:
    if name == "tair":
        hr = xr.open_dataset(data_dir() / "wfde5-uk" / "air_temperature.nc")["Tair"].load()
        return hr.isel(time=slice(0, 558)), hr.isel(time=slice(558, None))
    hr = meteonet_msl()
    return hr.isel(time=slice(0, 19)), hr.isel(time=slice(19, None))


def rmse(pred: xr.DataArray, truth: xr.DataArray) -> float:
    d = np.asarray(pred.values, "float64") - np.asarray(truth.values, "float64")
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2)))


def violation(pred: xr.DataArray, lr: xr.DataArray, factor: int) -> float:
    """Largest |coarsened prediction - coarse input| over valid cells, relative to mean |coarse|."""
    back = np.asarray(xds.coarsen(pred, factor).values, "float64")
    c = np.asarray(lr.values, "float64")
    d = np.abs(back - c)
    return float(np.nanmax(d) / np.nanmean(np.abs(c)))


def run(name: str, model: str, factor: int, updates: int, train_precision: str, work: Path) -> dict:
    train, test = field(name)
    t0 = time.perf_counter()
    m = xds.fit(train, model=model, factor=factor, constraint="add", max_updates=updates, batch_size=16,
                patch_size=min(64, *train.shape[-2:]), precision=train_precision, progress=False,
                checkpoint=work / f"{name}-{model}.pt")
    fit_s = time.perf_counter() - t0
    lr = xds.coarsen(test, factor)
    out = {"field": name, "model": model, "factor": factor, "updates": updates, "train_precision": train_precision,
           "fit_s": round(fit_s, 1)}
    preds = {}
    for p in ("fp32", "bf16"):
        preds[p] = xds.predict(lr, model=m, like=test, precision=p).load()
        out[f"rmse_{p}"] = rmse(preds[p], test)
        out[f"violation_{p}"] = violation(preds[p], lr, factor)
    bic = xds.predict(lr, model="bicubic", factor=factor, like=test).load()
    out["rmse_bicubic"] = rmse(bic, test)
    out["rmse_change"] = out["rmse_bf16"] / out["rmse_fp32"] - 1
    diff = np.abs(preds["bf16"].values - preds["fp32"].values)
    out["max_abs_diff"] = float(np.nanmax(diff))
    out["field_std"] = float(np.nanstd(test.values))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", default="tair,msl")
    ap.add_argument("--models", default="cnn,espcn")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--train-precision", default="fp32")
    ap.add_argument("--out", default=str(RESULTS / "precision_skill"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xds-prec-"))
    rows = []
    head = ("| field | model | trained in | RMSE fp32 | RMSE bf16 | change | max abs(bf16 - fp32) | field std | "
            "violation fp32 | violation bf16 | RMSE bicubic |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print(head, flush=True)
    lines = []
    for name in args.fields.split(","):
        for model in args.models.split(","):
            r = run(name, model, args.factor, args.updates, args.train_precision, work)
            rows.append(r)
            lines.append(f"| {name} | {model} | {r['train_precision']} | {r['rmse_fp32']:.5g} | {r['rmse_bf16']:.5g} | "
                         f"{100 * r['rmse_change']:+.3f}% | {r['max_abs_diff']:.3g} | {r['field_std']:.4g} | "
                         f"{r['violation_fp32']:.2e} | {r['violation_bf16']:.2e} | {r['rmse_bicubic']:.5g} |")
            print(lines[-1], flush=True)
    cmd = "python benchmarks/precision_skill.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    out.with_suffix(".md").write_text(f"x{args.factor}, {args.updates} updates, command: `{cmd}`\n\n{head}\n"
                                      + "\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
