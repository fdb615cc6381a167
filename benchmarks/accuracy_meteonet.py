"""Accuracy on real data: MeteoNet AROME mean-sea-level pressure, factor 4.

Train on the first 18 hourly fields (the last 20% of them validate), test on the
last 7. Compares bicubic with the CNN under every constraint, and one CNN with
orography + land-sea mask covariates. Prints a Markdown table and writes
benchmarks/results/accuracy_meteonet.md.

    python benchmarks/accuracy_meteonet.py [--epochs 40] [--width 64]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _data import meteonet_msl, meteonet_static

import xdownscale as xds

METRICS = ["rmse", "mae", "ssim", "mass_violation", "relative_mass_violation"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=4)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--constraints", default="none,soft,add,mult,softmax,scadd")
    ap.add_argument("--covariate-constraint", default="softmax", help="constraint of the run with orography + lsm")
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples-per-epoch", type=int, default=None)
    ap.add_argument("--results", default="accuracy_meteonet.md", help="file name under results/")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    msl = meteonet_msl()
    train, test = msl.isel(time=slice(0, 18)), msl.isel(time=slice(18, 25))
    lr = test.downscale.coarsen(4)
    rows = []

    def score(name, sr, seconds=0.0):
        s = xds.evaluate(sr, test, lr=lr)
        rows.append({"model": name, **{k: float(s[k]) for k in METRICS}, "train_s": seconds})
        print(rows[-1], flush=True)

    score("bicubic", lr.downscale.predict(model="bicubic", factor=4).compute())
    out = Path(tempfile.mkdtemp())
    runs = [(c, None) for c in args.constraints.split(",")] + [(args.covariate_constraint, "covariates")]
    for constraint, extra in runs:
        t0 = time.perf_counter()
        cov = meteonet_static() if extra else None
        m = xds.fit(train, model=args.model, factor=4, constraint=constraint, epochs=args.epochs, batch_size=args.batch_size,
                    patch_size=args.patch_size, samples_per_epoch=args.samples_per_epoch, width=args.width, n_blocks=args.n_blocks, seed=0, patience=10,
                    covariates=cov, checkpoint=out / f"{constraint}.pt", progress=False)
        seconds = time.perf_counter() - t0
        name = f"{args.model}+{constraint}" + (" +orog,lsm" if extra else "")
        score(name, lr.downscale.predict(model=m, covariates=cov).compute(), seconds)
    base = rows[0]["rmse"]
    lines = ["| model | RMSE (Pa) | RMSE / bicubic | MAE (Pa) | SSIM | mass violation (Pa) | relative | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['rmse']:.2f} | {r['rmse'] / base:.3f} | {r['mae']:.2f} | {r['ssim']:.5f} | "
                     f"{r['mass_violation']:.2e} | {r['relative_mass_violation']:.1e} | {r['train_s']:.0f} |")
    table = "\n".join(lines)
    print(table)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / args.results).write_text(
        f"MeteoNet AROME msl, x4, train hours 0-17, test hours 18-24; epochs={args.epochs}, width={args.width}, "
        f"n_blocks={args.n_blocks}, patch={args.patch_size}, batch={args.batch_size}, "
        f"samples/epoch={args.samples_per_epoch or 'auto'}\n\n{table}\n")


if __name__ == "__main__":
    main()
