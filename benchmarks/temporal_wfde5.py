"""Temporal models on real series: WFDE5 UK hourly (x4) and RADOLAN radar hours (x8).

Space: bicubic, ``cnn``, ``convgru``, ``flowconvgru`` (constraint none and
softmax) on the held-out period: RMSE, MAE, SSIM, mass violation, training and
inference time. Time: ``flowconvgru`` with ``time_factor=3`` fed every 3rd
held-out hour; its synthesised middle frames are scored against the true
frames, next to linear time interpolation between the bicubic-downscaled inputs
(a practical baseline) and between the *true* fine inputs (an oracle).

    python benchmarks/temporal_wfde5.py --dataset tair      # WFDE5 Tair, train days 1-21, test days 22-31
    python benchmarks/temporal_wfde5.py --dataset pr        # WFDE5 precipitation flux
    python benchmarks/temporal_wfde5.py --dataset radolan   # RADOLAN RW, 16 h, train/test on disjoint 256 km crops

Writes benchmarks/results/temporal_<dataset>.md (table) and .json (numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from _data import data_dir

import xdownscale as xds
from xdownscale.io.radolan import open_radolan

METRICS = ["rmse", "mae", "ssim", "mass_violation"]


def laplace_fill(da: xr.DataArray, iterations: int = 300) -> xr.DataArray:
    """Fill the sea (NaN) cells of WFDE5 (a land-only product, 55% NaN here) by harmonic
    extension of the land values, frame by frame, so every model sees the same complete field."""
    v = np.asarray(da.values, dtype="float64").copy()
    miss = np.isnan(v)
    v = np.where(miss, np.nanmean(v, axis=(-2, -1), keepdims=True), v)
    for _ in range(iterations):
        p = np.pad(v, ((0, 0), (1, 1), (1, 1)), mode="edge")
        nb = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4
        v = np.where(miss, nb, v)
    return da.copy(data=v.astype(da.dtype))


def load(name: str):
    """(train, test, factor, description)."""
    if name in ("tair", "pr"):
        file = "air_temperature.nc" if name == "tair" else "precipitation_flux.nc"
        da = xr.open_dataset(data_dir() / "wfde5-uk" / file)[{"tair": "Tair", "pr": "pr"}[name]].load()
        if name == "pr":  # kg m-2 s-1 -> mm/h keeps the numbers readable (same field)
            da = (da * 3600.0).assign_attrs(da.attrs, units="mm h-1")
        da = laplace_fill(da)
        n_train = 21 * 24
        return da.isel(time=slice(0, n_train)), da.isel(time=slice(n_train, None)), 4, \
            f"WFDE5 UK {name}, 0.5 deg 20x28 (sea cells filled by harmonic extension of land) -> coarse 5x7 (x4); train 2017-01-01..21 (504 h), test 22..31 (240 h)"
    rw = open_radolan(data_dir() / "radolan-rw" / "RW-20221018.tar.gz", times=slice(0, 16))
    # rain ends around hour 13 everywhere, so a split in time leaves a dry test period: split in space
    # instead. Two disjoint 256 x 256 km regions without missing values, hours 0-15 each.
    train = rw.isel(y=slice(192, 448), x=slice(320, 576))
    test = rw.isel(y=slice(448, 704), x=slice(512, 768))
    return train, test, 8, ("RADOLAN RW 2022-10-18 hours 00:50-15:50 (16 h); train region y[192:448] x[320:576], "
                            "test region y[448:704] x[512:768] (disjoint 256x256 km crops at 1 km) -> coarse 32x32 (x8)")


def score(sr, truth, lr):
    s = xds.evaluate(sr, truth, lr=lr)
    return {k: float(s[k]) for k in METRICS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["tair", "pr", "radolan"], default="tair")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--channels", type=int, default=24)
    ap.add_argument("--samples-per-epoch", type=int, default=None)
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--constraints", default="none,softmax")
    ap.add_argument("--models", default="cnn,convgru,flowconvgru")
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="last fraction of the training hours that validates (0: validate on the training data)")
    ap.add_argument("--tag", default="", help="suffix of the results file names")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    train, test, f, desc = load(args.dataset)
    spe = args.samples_per_epoch or (400 if args.dataset != "radolan" else 256)
    lr = test.downscale.coarsen(f)
    out = Path(tempfile.mkdtemp())
    rows, models = [], {}
    for constraint in args.constraints.split(","):
        t0 = time.perf_counter()
        sr = lr.downscale.predict(model="bicubic", factor=f, constraint=constraint).compute()
        rows.append({"model": "bicubic", "constraint": constraint, **score(sr, test, lr), "train_s": 0.0,
                     "predict_s": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    common = dict(factor=f, epochs=args.epochs, batch_size=16, patch_size=args.patch_size, samples_per_epoch=spe,
                  seed=0, patience=args.epochs, progress=False, val_fraction=args.val_fraction)
    for model in args.models.split(","):
        for constraint in args.constraints.split(","):
            opts = (dict(width=args.channels, n_blocks=3) if model == "cnn"
                    else dict(channels=args.channels, residual_blocks=3, window=3))
            if model == "flowconvgru":
                opts.update(flow_channels=12, time_factor=3)
            t0 = time.perf_counter()
            m = xds.fit(train, model=model, constraint=constraint, checkpoint=out / f"{model}-{constraint}.pt",
                        **common, **opts)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sr = lr.downscale.predict(model=m).compute()
            predict_s = time.perf_counter() - t0
            models[(model, constraint)] = m
            rows.append({"model": model, "constraint": constraint, **score(sr, test, lr), "train_s": train_s,
                         "predict_s": predict_s})
            print(rows[-1], flush=True)
    time_rows = time_interpolation(test, f, models, args.constraints.split(","))
    write(args, desc, rows, time_rows, len(test.time))


def time_interpolation(test, f, models, constraints):
    """Every 3rd held-out hour in; score the frames in between."""
    n = (len(test.time) - 1) // 3 * 3 + 1  # end on an input time
    truth = test.isel(time=slice(0, n))
    lr_in = truth.isel(time=slice(0, n, 3)).downscale.coarsen(f)
    middle = np.ones(n, dtype=bool)
    middle[::3] = False
    truth_mid = truth.isel(time=middle)
    lr_mid = truth_mid.downscale.coarsen(f)
    rows = []

    def linear(frames):
        return frames.interp(time=truth.time, method="linear").isel(time=middle)

    bic = lr_in.downscale.predict(model="bicubic", factor=f).compute()
    rows.append({"method": "bicubic inputs + linear time interpolation",
                 **score(linear(bic).assign_coords(truth_mid.coords), truth_mid, lr_mid)})
    rows.append({"method": "true fine inputs + linear time interpolation (oracle)",
                 **score(linear(truth.isel(time=slice(0, n, 3))), truth_mid, lr_mid)})
    for constraint in constraints:
        m = models.get(("flowconvgru", constraint))
        if m is None:
            continue
        t0 = time.perf_counter()
        sr = lr_in.downscale.predict(model=m, time_factor=3).compute()
        seconds = time.perf_counter() - t0
        assert np.array_equal(sr.time.values, truth.time.values), "time_factor=3 output times are wrong"
        mid = sr.isel(time=sr.synthesised.values)
        rows.append({"method": f"flowconvgru {constraint}, time_factor=3", **score(mid, truth_mid, lr_mid),
                     "predict_s": seconds})
        print(rows[-1], flush=True)
    return rows


def write(args, desc, rows, time_rows, n_test):
    bic = {r["constraint"]: r["rmse"] for r in rows if r["model"] == "bicubic"}
    lines = [f"{desc}. epochs={args.epochs}, channels/width={args.channels}, 3 residual blocks, window 3, "
             f"patch {args.patch_size}, batch 16, val_fraction {args.val_fraction}. CPU timings with other jobs running on the 2 cores.", "",
             "| model | constraint | RMSE | RMSE / bicubic | MAE | SSIM | mass violation | train s | predict s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['constraint']} | {r['rmse']:.4g} | {r['rmse'] / bic[r['constraint']]:.3f} | "
                     f"{r['mae']:.4g} | {r['ssim']:.4f} | {r['mass_violation']:.2e} | {r['train_s']:.0f} | "
                     f"{r['predict_s']:.2f} ({n_test} frames) |")
    lines += ["", "Synthesised middle frames (inputs every 3rd held-out hour; scores on the 2 frames in between; "
              "mass violation against the true coarse field at those hours):", "",
              "| method | RMSE | MAE | SSIM | mass violation vs true coarse |", "|---|---|---|---|---|"]
    for r in time_rows:
        lines.append(f"| {r['method']} | {r['rmse']:.4g} | {r['mae']:.4g} | {r['ssim']:.4f} | "
                     f"{r['mass_violation']:.3g} |")
    table = "\n".join(lines)
    print(table)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / f"temporal_{args.dataset}{args.tag}.md").write_text(table + "\n")
    (res / f"temporal_{args.dataset}{args.tag}.json").write_text(json.dumps({"space": rows, "time": time_rows}, indent=1))


if __name__ == "__main__":
    main()
