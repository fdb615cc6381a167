"""evaluate(suite="climate") on real WFDE5 UK Tair and precipitation at x4: which method wins which scores?

Methods: bicubic interpolation, bicubic + empirical quantile mapping (EQM, trained
on the training period), ``cnn`` and ``gan`` (10 members), trained on days 1-21 of
January 2017 (504 h) and scored on days 22-31 (240 h) against the true fine field
(0.5 deg, 20 x 28, land only) from its exact x4 coarsening (5 x 7). The table groups
the scores by family: image (RMSE, SSIM), distribution (Perkins, Wasserstein, KS,
log-histogram, tail quantile biases), structure (log spectral distance, lag-1
autocorrelation bias, climatological-mean correlation) and the xclim index biases.

    python benchmarks/climate_suite_wfde5.py --dataset tair     # results/climate_suite_tair.{md,json}
    python benchmarks/climate_suite_wfde5.py --dataset pr --report   # + an HTML report of the gan

Model sizes and training follow benchmarks/gan_probabilistic.py (width 32, 2 blocks,
20-cell patches, 1024 samples per epoch, --epochs 6 by default).
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from _data import data_dir

import xdownscale as xds

warnings.simplefilter("ignore")
RESULTS = Path(__file__).resolve().parent / "results"
OPTS = dict(batch_size=32, patch_size=20, learning_rate=1e-3, width=32, n_blocks=2, samples_per_epoch=1024,
            progress=False, seed=0)
GAN = dict(content="crps", adv_weight=0.05)
FAMILIES = {
    "image": ["rmse", "mae", "pearson_r", "crps"],
    "distribution": ["perkins_skill_score", "wasserstein", "ks_statistic", "log_histogram_distance",
                     "quantile_bias_q01", "quantile_bias_q99", "quantile_bias_q99.9"],
    "structure": ["log_spectral_distance", "lag1_autocorrelation_bias", "climatological_mean_correlation"],
}
# how "better" reads for each score: "low", "high", or "abs" (closest to 0)
SENSE = {"rmse": "low", "mae": "low", "pearson_r": "high", "crps": "low", "perkins_skill_score": "high", "wasserstein": "low",
         "ks_statistic": "low", "log_histogram_distance": "low", "log_spectral_distance": "low",
         "climatological_mean_correlation": "high"}


def load(name: str):
    if name == "tair":
        hr = xr.open_dataset(data_dir() / "wfde5-uk" / "air_temperature.nc")["Tair"].load()
        return hr, "add", "+"
    pr = xr.open_dataset(data_dir() / "wfde5-uk" / "precipitation_flux.nc")["pr"].load()
    pr = (pr * 3600.0).assign_attrs(units="mm h-1", standard_name="lwe_precipitation_rate",
                                    long_name="precipitation rate")  # readable numbers, same field
    return pr, "softmax", "*"


def filled(lr):
    """Coarse gaps (all-sea cells) filled from the nearest cells: the interpolators need complete fields."""
    for d in xds.grid.find_axes(lr).spatial[::-1]:
        lr = lr.ffill(d).bfill(d)
    return lr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["tair", "pr"], default="tair")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--methods", default="bicubic,qm,cnn,gan")
    ap.add_argument("--report", action="store_true", help="also write results/climate_report_<dataset>.html (gan)")
    args = ap.parse_args()
    hr, constraint, kind = load(args.dataset)
    train, test = hr.isel(time=slice(0, 504)), hr.isel(time=slice(504, None))
    lr_train, lr_test = xds.coarsen(train, 4), xds.coarsen(test, 4)
    mask = test.notnull()
    preds, timing = {}, {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        if method == "bicubic":
            p = xds.predict(filled(lr_test), model="bicubic", factor=4, like=test).compute()
        elif method == "qm":
            p = xds.bias_correct(filled(lr_test), ref=train, hist=filled(lr_train), method="eqm", kind=kind,
                                 like=test)
        else:
            kw = dict(OPTS, **(GAN if method == "gan" else {}))
            m = xds.fit(train, model=method, factor=4, constraint=constraint, epochs=args.epochs, **kw)
            extra = {"members": args.members, "seed": 7} if method == "gan" else {}
            p = xds.predict(lr_test, model=m, like=test, **extra).compute()
        timing[method] = time.perf_counter() - t0
        preds[method] = p.where(mask).assign_attrs(test.attrs)
        print(f"{method}: {timing[method]:.1f} s", flush=True)
    rows = {}
    for method, p in preds.items():
        t0 = time.perf_counter()
        ev = xds.evaluate(p, test, lr=lr_test, suite="climate")
        rows[method] = {k: float(v) for k, v in ev.data_vars.items() if v.ndim == 0}
        rows[method].setdefault("crps", rows[method]["mae"])  # the CRPS of a single value is its MAE
        rows[method]["evaluate_s"] = time.perf_counter() - t0
        rows[method]["fit_predict_s"] = timing[method]
    index_names = [k for k in rows[next(iter(rows))] if k.endswith("_bias") and k.split("_bias")[0] in
                   xds.metrics.indices.INDICES]
    families = dict(FAMILIES, indices=index_names)
    methods = list(rows)
    units = {k: str(v.attrs.get("units", "")) for k, v in ev.data_vars.items()}
    lines = [f"# Climate suite on WFDE5 UK {args.dataset}, x4 (test days 22-31 of January 2017)", "",
             f"`python benchmarks/climate_suite_wfde5.py --dataset {args.dataset} --epochs {args.epochs}` "
             f"({args.members}-member gan, scored on its ensemble mean for the image scores and on its pooled members for "
             "the distribution scores; CRPS of a deterministic method = its MAE; SSIM is left out: no 11x11 window "
             "of this land-only 20x28 grid is free of sea cells; bold: best of the row)", "",
             "| family | score | units | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    wins = {f: {m: 0 for m in methods} for f in families}
    for fam, names in families.items():
        for n in names:
            vals = [rows[m].get(n, float("nan")) for m in methods]
            sense = SENSE.get(n, "abs")
            key = [(-v if sense == "high" else (abs(v) if sense == "abs" else v)) for v in vals]
            finite = [k for k in key if np.isfinite(k)]
            best = min(finite) if len(finite) > 1 else None
            cells = []
            for m, v, k in zip(methods, vals, key):
                won = best is not None and np.isclose(k, best, rtol=1e-9, atol=0)
                wins[fam][m] += int(won)
                cells.append(f"**{v:.4g}**" if won else f"{v:.4g}")
            lines.append(f"| {fam} | {n} | {units.get(n, '')} | " + " | ".join(cells) + " |")
    lines += ["", "Wins per family (scores where the method is best):", "",
              "| family | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for fam in families:
        lines.append(f"| {fam} | " + " | ".join(str(wins[fam][m]) for m in methods) + " |")
    lines += ["", "| seconds | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods),
              "| fit + predict | " + " | ".join(f"{rows[m]['fit_predict_s']:.1f}" for m in methods) + " |",
              "| evaluate(suite='climate') | " + " | ".join(f"{rows[m]['evaluate_s']:.1f}" for m in methods) + " |"]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"climate_suite_{args.dataset}.md").write_text(text)
    (RESULTS / f"climate_suite_{args.dataset}.json").write_text(json.dumps(rows, indent=1))
    if args.report and "gan" in preds:
        lr_show = lr_test.assign_attrs(history="xds.coarsen(truth, 4): the exact area-weighted coarsening")
        sr = preds["gan"].assign_attrs(history=f"xds.fit(train days 1-21, model='gan', factor=4, epochs="
                                               f"{args.epochs}); xds.predict(lr, members={args.members}, seed=7)")
        path = xds.report(sr, test, lr=lr_show, path=RESULTS / f"climate_report_{args.dataset}.html",
                          title=f"WFDE5 UK {args.dataset} x4: gan ({args.members} members) vs truth")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
