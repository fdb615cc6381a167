"""One arbitrary-scale ``liif`` against bicubic and per-factor fixed models, on real data.

* MeteoNet AROME msl (0.025 deg, 224 x 312): train hours 0-17, test hours 18-24.
* ERA5 t2m (0.25 deg): train on the Europe field (GRIB), test on the CONUS field (NetCDF):
  a different region, so this also tests transfer.

Per factor 2, 2.5, 3, 4, 5.5, 6, 8 the coarse test input is the exact area-weighted
coarsening of the truth (non-integer factors: :func:`xdownscale.families.implicit.fit.resample_area`
on a truth cropped to a whole number of coarse cells); bicubic is torch's bicubic onto the
truth grid; fixed models are ``cnn`` (x2, x4, x8) and ``espcn`` (x3, x6), one trained per
factor; ``liif`` is ONE model trained over scales 1.5-8. Also: the hard ``add`` constraint
on liif at integer factors, a target grid offset from the source, scattered points vs
bilinear interpolation, high-order degradation, and seconds per output megapixel.

    python benchmarks/liif_scales.py [--epochs-liif 30] [--epochs-fixed 15] [--quick]

Writes benchmarks/results/liif_scales.md (and .json).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from _data import data_dir, meteonet_msl, open_grib

import xdownscale as xds
from xdownscale.families.implicit.fit import degrade, resample_area
from xdownscale.grid.cf import find_axes, latitude_weights
from xdownscale.metrics import psnr, rmse, ssim

FACTORS = [2, 2.5, 3, 4, 5.5, 6, 8]
FIXED = {2: "cnn", 3: "espcn", 4: "cnn", 6: "espcn", 8: "cnn"}
NUMERATOR = {1.5: 3, 2.5: 5, 5.5: 11}


def era5() -> tuple[xr.DataArray, xr.DataArray]:
    d = data_dir() / "era5-samples"
    eu = open_grib(d / "era5-single-level-scalar-time.grib")["t2m"].load()
    us = xr.open_dataset(d / "era5_1995-07-14T12.nc")["t2m"].load()

    def one_time(da):
        da = da.drop_vars([c for c in da.coords if c not in da.dims]).astype("float32")
        for c in ("latitude", "longitude"):
            da = da.assign_coords({c: da[c].values.astype("float64")})
        da.attrs = {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"}
        return da.expand_dims(time=[np.datetime64("2000-01-01", "ns")])

    return one_time(eu), one_time(us)


def coarse_of(truth: xr.DataArray, f: float) -> tuple[xr.DataArray, xr.DataArray]:
    """(cropped truth, its exact area-weighted coarsening by f) with CF coordinates."""
    ax = find_axes(truth)
    step = NUMERATOR.get(f, int(f))
    ny, nx = (truth.sizes[ax.y] // step) * step, (truth.sizes[ax.x] // step) * step
    truth = truth.isel({ax.y: slice(0, ny), ax.x: slice(0, nx)})
    if f == int(f):
        return truth, truth.downscale.coarsen(int(f))
    h, w = int(round(ny / f)), int(round(nx / f))
    yv, xv = truth[ax.y].values, truth[ax.x].values
    dy, dx = yv[1] - yv[0], xv[1] - xv[0]
    ey = np.linspace(yv[0] - dy / 2, yv[-1] + dy / 2, h + 1)
    ex = np.linspace(xv[0] - dx / 2, xv[-1] + dx / 2, w + 1)
    vals = resample_area(truth.transpose("time", ax.y, ax.x).values.astype("float64"), (h, w), latitude_weights(yv))
    lr = xr.DataArray(vals.astype("float32"), dims=("time", ax.y, ax.x),
                      coords={"time": truth.time, ax.y: 0.5 * (ey[1:] + ey[:-1]), ax.x: 0.5 * (ex[1:] + ex[:-1])},
                      name=truth.name, attrs=truth.attrs)
    for d in (ax.y, ax.x):
        lr[d].attrs = truth[d].attrs
    return truth, lr


def bicubic_onto(lr: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    x = torch.from_numpy(lr.transpose("time", *find_axes(lr).spatial).values.astype("float32"))[:, None]
    ax = find_axes(truth)
    y = F.interpolate(x, size=(truth.sizes[ax.y], truth.sizes[ax.x]), mode="bicubic", align_corners=False)[:, 0]
    return truth.copy(data=y.numpy().astype(truth.dtype))


def scores(pred: xr.DataArray, truth: xr.DataArray) -> dict:
    pred = truth.copy(data=np.asarray(pred.transpose(*truth.dims).values, dtype=truth.dtype))
    return {"psnr": float(psnr(pred, truth)), "rmse": float(rmse(pred, truth)), "ssim": float(ssim(pred, truth))}


def fit_fixed(train, f, args, out):
    model = FIXED[f]
    return xds.fit(train, model=model, factor=f, epochs=args.epochs_fixed, batch_size=16, patch_size=min(64, 8 * f),
                   samples_per_epoch=args.samples, width=args.width, n_blocks=4, seed=0, patience=50, trim=True,
                   checkpoint=out / f"{model}_x{f}.pt", progress=False)


def fit_liif(train, args, out, degradation="none"):
    return xds.fit(train, model="liif", epochs=args.epochs_liif, batch_size=16, samples_per_epoch=args.samples,
                   width=args.width, n_blocks=4, hidden=32, scales=(1.5, 8.0), lr_patch=16, queries=512,
                   degradation=degradation, seed=0, patience=50, checkpoint=out / f"liif_{degradation}.pt",
                   progress=False)


def per_factor(name, train, test, args, out, rows, extra):
    t0 = time.perf_counter()
    liif = None if args.fixed_only else fit_liif(train, args, out)
    extra[f"{name}_liif_train_s"] = time.perf_counter() - t0
    for f in FACTORS:
        truth, lr = coarse_of(test, f)
        row = {"data": name, "factor": f, "bicubic": scores(bicubic_onto(lr, truth), truth)}
        if f in FIXED:
            t0 = time.perf_counter()
            m = fit_fixed(train, f, args, out / name)
            row["fixed_train_s"] = time.perf_counter() - t0
            row["fixed_model"] = FIXED[f]
            row["fixed"] = scores(lr.downscale.predict(model=m).compute(), truth)
        if liif is None:
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        row["liif"] = scores(lr.downscale.predict(model=liif, target=truth).compute(), truth)
        if f in FIXED:
            add = lr.downscale.predict(model=liif, factor=f, constraint="add").compute()
            row["liif+add"] = scores(add, truth)
            back = xds.coarsen(add, f)
            row["liif+add"]["mass_violation"] = float(np.abs(back.values - lr.values).max())
            plain = lr.downscale.predict(model=liif, factor=f).compute()
            row["liif"]["mass_violation"] = float(np.abs(xds.coarsen(plain, f).values - lr.values).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return liif


def offset_and_points(liif, test, f, rng):
    """Coarse grid shifted by a fraction of a coarse cell from the truth grid; stations at fine cells."""
    ax = find_axes(test)
    ny, nx = test.sizes[ax.y], test.sizes[ax.x]
    sub = test.isel({ax.y: slice(1, 1 + ((ny - 1) // f) * f), ax.x: slice(2, 2 + ((nx - 2) // f) * f)})
    lr = sub.downscale.coarsen(f)
    truth = test.isel({ax.y: slice(f, ny - 2 * f), ax.x: slice(f, nx - 2 * f)})
    res = {"offset_factor": f, "offset_rows": "truth grid offset 1/4 and 2/4 coarse cell from the coarse grid"}
    res["offset_liif"] = scores(lr.downscale.predict(model=liif, target=truth).compute(), truth)
    interp = lr.interp({ax.y: truth[ax.y], ax.x: truth[ax.x]}, method="cubic")
    res["offset_cubic_spline"] = scores(interp, truth)
    iy = rng.integers(0, truth.sizes[ax.y], 500)
    ix = rng.integers(0, truth.sizes[ax.x], 500)
    stations = xr.Dataset({"lat": ("station", truth[ax.y].values[iy]), "lon": ("station", truth[ax.x].values[ix])})
    true_pts = truth.values[:, iy, ix]
    pts = lr.downscale.predict(model=liif, points=stations)
    bil = lr.interp({ax.y: xr.DataArray(stations["lat"].values, dims="station"),
                     ax.x: xr.DataArray(stations["lon"].values, dims="station")}, method="linear")
    res["points_n"] = 500
    res["points_liif_rmse"] = float(np.sqrt(np.nanmean((pts.values - true_pts) ** 2)))
    res["points_bilinear_rmse"] = float(np.sqrt(np.nanmean((bil.transpose("time", "station").values - true_pts) ** 2)))
    return res


def speed(liif, fixed, test):
    lr = test.downscale.coarsen(4)
    out = {}
    for name, call in (("bicubic", lambda: lr.downscale.predict(model="bicubic", factor=4)),
                       ("cnn x4", lambda: lr.downscale.predict(model=fixed)),
                       ("liif x4", lambda: lr.downscale.predict(model=liif, factor=4)),
                       ("liif x4 +add", lambda: lr.downscale.predict(model=liif, factor=4, constraint="add"))):
        t0 = time.perf_counter()
        v = call().compute()
        out[name] = (time.perf_counter() - t0) / (v.size / 1e6)
    return out


def degradation_check(train, test, liif, args, out):
    """Clean liif vs a high-order-degradation liif on clean and on blurred+noisy coarse inputs (x4)."""
    deg = fit_liif(train, args, out, degradation="high-order")
    truth, lr = coarse_of(test, 4)
    rng = np.random.default_rng(7)
    std = float(train.std())
    vals = lr.values.astype("float64")
    noisy = np.stack([degrade((v - v.mean())[None] / std, rng)[0] * std + v.mean() for v in vals])
    lr_real = lr.copy(data=noisy.astype(lr.dtype))
    res = {}
    for tag, m in (("liif", liif), ("liif+high-order", deg)):
        for inp, x in (("clean", lr), ("degraded", lr_real)):
            res[f"{tag} on {inp}"] = scores(x.downscale.predict(model=m, target=truth).compute(), truth)
    for inp, x in (("clean", lr), ("degraded", lr_real)):
        res[f"bicubic on {inp}"] = scores(bicubic_onto(x, truth), truth)
    return res


def table(rows) -> str:
    lines = ["| data | factor | bicubic PSNR / RMSE / SSIM | fixed model (per factor) | liif (one model) | "
             "liif / bicubic RMSE | liif+add RMSE (max mass err) |", "|---|---|---|---|---|---|---|"]
    fmt = lambda s: f"{s['psnr']:.2f} / {s['rmse']:.3f} / {s['ssim']:.4f}"  # noqa: E731
    for r in rows:
        if "liif" not in r:
            r = {**r, "liif": {"psnr": np.nan, "rmse": np.nan, "ssim": np.nan}}
        fixed = f"{r['fixed_model']}: {fmt(r['fixed'])}" if "fixed" in r else "n/a (no integer model)"
        add = f"{r['liif+add']['rmse']:.3f} ({r['liif+add']['mass_violation']:.1e})" if "liif+add" in r else "n/a"
        lines.append(f"| {r['data']} | {r['factor']} | {fmt(r['bicubic'])} | {fixed} | {fmt(r['liif'])} | "
                     f"{r['liif']['rmse'] / r['bicubic']['rmse']:.3f} | {add} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs-liif", type=int, default=30)
    ap.add_argument("--epochs-fixed", type=int, default=10)
    ap.add_argument("--samples", type=int, default=256, help="training windows per epoch")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--datasets", default="meteonet,era5")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 32 samples")
    ap.add_argument("--fixed-only", action="store_true", help="only bicubic and the per-factor models (e.g. with "
                    "--epochs-fixed 40 for a training budget equal to liif's)")
    args = ap.parse_args()
    if args.quick:
        args.epochs_liif = args.epochs_fixed = 1
        args.samples = 32
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    out = Path(tempfile.mkdtemp())
    rows, extra = [], {}
    if "meteonet" in args.datasets:
        msl = meteonet_msl()
        train, test = msl.isel(time=slice(0, 18)), msl.isel(time=slice(18, 25))
        liif = per_factor("MeteoNet msl (Pa)", train, test, args, out, rows, extra)
    if "meteonet" in args.datasets and not args.fixed_only:
        extra["meteonet_offset_points_x4"] = offset_and_points(liif, test, 4, np.random.default_rng(0))
        fixed = xds.load(out / "MeteoNet msl (Pa)" / "cnn_x4.pt")
        extra["speed_s_per_output_megapixel"] = speed(liif, fixed, test)
        extra["meteonet_degradation_x4"] = degradation_check(train, test, liif, args, out)
        print(json.dumps(extra), flush=True)
    if "era5" in args.datasets:
        eu, us = era5()
        liif = per_factor("ERA5 t2m (K), train Europe, test CONUS", eu, us, args, out, rows, extra)
        if liif is not None:
            extra["era5_offset_points_x4"] = offset_and_points(liif, us, 4, np.random.default_rng(0))
    text = (f"epochs liif={args.epochs_liif}, fixed={args.epochs_fixed}, samples/epoch={args.samples}, "
            f"width={args.width}, 2-core CPU shared with other jobs\n\n{table(rows)}\n\n```json\n"
            f"{json.dumps(extra, indent=1)}\n```\n")
    print(text)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    suffix = (("_quick" if args.quick else "") + ("" if args.datasets == "meteonet,era5" else "_" + args.datasets)
              + (f"_fixed{args.epochs_fixed}" if args.fixed_only else ""))
    (res / f"liif_scales{suffix}.md").write_text(text)
    (res / f"liif_scales{suffix}.json").write_text(json.dumps({"rows": rows, "extra": extra}, indent=1))


if __name__ == "__main__":
    main()
