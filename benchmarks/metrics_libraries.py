"""Hand-written scores against maintained libraries: agreement and speed.

1. CRPS, rank histogram and area-weighted RMSE of ``xdownscale.metrics`` against
   ``xskillscore`` (issue 16: should the project use xskillscore instead?);
2. the vectorised per-cell Wasserstein-1 and KS statistic of
   ``xdownscale.metrics.distribution`` against ``scipy.stats`` called cell by cell.

Data: real WFDE5 UK hourly Tair and precipitation (January 2017, 744 x 20 x 28,
55 % sea cells are NaN) with a 10-member ensemble made by perturbing the truth
(additive noise for Tair; multiplicative noise for pr, so dry hours stay exactly 0
and the rank histogram must break ties), and a larger gap-free synthetic case.

    python benchmarks/metrics_libraries.py            # writes results/metrics_libraries.{md,json}
    python benchmarks/metrics_libraries.py --quick    # smaller, for a smoke run
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

warnings.simplefilter("ignore")
RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def cases(quick: bool):
    rng = np.random.default_rng(0)
    folder = data_dir() / "wfde5-uk"
    nt = 168 if quick else 744
    tair = xr.open_dataset(folder / "air_temperature.nc")["Tair"].isel(time=slice(0, nt)).load().astype("float64")
    pr = xr.open_dataset(folder / "precipitation_flux.nc")["pr"].isel(time=slice(0, nt)).load().astype("float64")
    m = 10
    sig = 0.5 + xr.DataArray(rng.uniform(0, 1.5, tair.shape[1:]), dims=("lat", "lon"))
    ens_t = tair + sig * xr.DataArray(rng.normal(size=(m,) + tair.shape), dims=("member",) + tair.dims)
    ens_p = pr * xr.DataArray(rng.lognormal(0, 0.6, size=(m,) + pr.shape), dims=("member",) + pr.dims)
    shape = f"{m} x {nt} x 20 x 28"
    yield f"WFDE5 Tair ({shape}, sea NaN)", ens_t.transpose("member", ...), tair
    yield f"WFDE5 pr ({shape}, sea NaN, dry hours tied at 0)", ens_p.transpose("member", ...), pr
    n, ny = (24, 64) if quick else (96, 128)
    lat = np.linspace(30, 70, ny)
    truth = xr.DataArray(rng.normal(size=(n, ny, ny)), dims=("time", "lat", "lon"),
                         coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                                 "lon": ("lon", np.linspace(0, 40, ny), {"units": "degrees_east"})})
    ens = truth + xr.DataArray(rng.normal(size=(m, n, ny, ny)), dims=("member", "time", "lat", "lon"))
    yield f"synthetic ({m} x {n} x {ny} x {ny}, no NaN)", ens.transpose("member", ...), truth


def compare_xskillscore(name, ens, truth):
    import xskillscore as xs

    from xdownscale.grid.cf import area_weights
    from xdownscale.metrics import crps_ensemble, rank_histogram, rmse

    rows = []
    ok = truth.notnull()
    t_ours, c_ours = best_of(lambda: crps_ensemble(ens, truth).values)
    t_xs, c_xs = best_of(lambda: xs.crps_ensemble(truth, ens, dim=[]).values)
    valid = ok.values
    rows.append({"case": name, "score": "CRPS per point", "ours_s": t_ours, "xskillscore_s": t_xs,
                 "max_abs_diff": float(np.nanmax(np.abs(c_ours[valid] - c_xs[valid]))),
                 "same_nan": bool(np.array_equal(np.isnan(c_ours), np.isnan(c_xs)))})
    # one member missing at 1 % of the valid points: both score the other members there
    arr = ens.transpose("member", *truth.dims).values.copy()
    arr[0][(np.random.default_rng(1).random(truth.shape) < 0.01) & valid] = np.nan
    holes = xr.DataArray(arr, dims=("member",) + truth.dims, coords=truth.coords)
    a, b = crps_ensemble(holes, truth).values, xs.crps_ensemble(truth, holes, dim=[]).values
    rows.append({"case": name, "score": "CRPS, member 0 missing at 1 % of points", "ours_s": float("nan"),
                 "xskillscore_s": float("nan"), "nan_points_ours": int(np.isnan(a[valid]).sum()),
                 "nan_points_xskillscore": int(np.isnan(b[valid]).sum()),
                 "max_abs_diff": float(np.nanmax(np.abs(a[valid] - b[valid])))})

    t_ours, h_ours = best_of(lambda: rank_histogram(ens, truth, seed=0).values)
    t_xs, h_xs = best_of(lambda: xs.rank_histogram(truth.where(ok, drop=False), ens, dim=list(truth.dims)).values)
    n_ours, n_xs = h_ours.sum(), h_xs.sum()
    rows.append({"case": name, "score": "rank histogram", "ours_s": t_ours, "xskillscore_s": t_xs,
                 "points_counted": [int(n_ours), int(n_xs)],
                 "max_abs_diff_of_frequencies": float(np.abs(h_ours / n_ours - h_xs / max(n_xs, 1)).max())})

    pred = ens.mean("member")
    w = area_weights(truth)
    t_ours, r_ours = best_of(lambda: float(rmse(pred, truth, weighted=True)))
    wfull = w.broadcast_like(truth).where(ok)
    t_xs, r_xs = best_of(lambda: float(xs.rmse(pred, truth, dim=list(truth.dims), weights=wfull, skipna=True)))
    rows.append({"case": name, "score": "cos-lat weighted RMSE", "ours_s": t_ours, "xskillscore_s": t_xs,
                 "values": [r_ours, r_xs], "max_abs_diff": abs(r_ours - r_xs)})
    # weights not masked where the truth is NaN: xskillscore masks them itself (same value)
    r_naive = float(xs.rmse(pred, truth, dim=list(truth.dims), weights=w.broadcast_like(truth), skipna=True))
    rows.append({"case": name, "score": "weighted RMSE, xskillscore with unmasked weights", "ours_s": float("nan"),
                 "xskillscore_s": float("nan"), "values": [r_ours, r_naive], "max_abs_diff": abs(r_ours - r_naive)})
    return rows


def compare_scipy(name, ens, truth, max_cells: int):
    import scipy.stats

    from xdownscale.metrics import distribution_scores

    pred = ens.isel(member=0)
    t_ours, ds = best_of(lambda: distribution_scores(pred, truth).compute(), repeat=2)
    cells = int(np.prod([truth.sizes[d] for d in truth.dims if d != "time"]))
    p = pred.transpose("time", ...).values.reshape(truth.sizes["time"], -1)
    t = truth.transpose("time", ...).values.reshape(truth.sizes["time"], -1)
    idx = np.flatnonzero(~np.isnan(t).all(axis=0))[:max_cells]

    def loop():
        return np.array([[scipy.stats.wasserstein_distance(p[:, i][~np.isnan(p[:, i])], t[:, i][~np.isnan(t[:, i])]),
                          scipy.stats.ks_2samp(p[:, i], t[:, i], nan_policy="omit").statistic] for i in idx])

    t_loop, ref = best_of(loop, repeat=1)
    w1 = ds.wasserstein.values.reshape(-1)[idx]
    ks = ds.ks_statistic.values.reshape(-1)[idx]
    return {"case": name, "score": "W1 + KS per cell", "cells": cells, "cells_checked_with_scipy": int(idx.size),
            "ours_s_all_cells_all_4_scores": t_ours, "scipy_s_checked_cells": t_loop,
            "scipy_s_per_cell": t_loop / max(idx.size, 1), "ours_s_per_cell": t_ours / cells,
            "max_abs_diff_w1": float(np.abs(w1 - ref[:, 0]).max()), "max_abs_diff_ks": float(np.abs(ks - ref[:, 1]).max())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows, dist = [], []
    for name, ens, truth in cases(args.quick):
        print(f"== {name}", flush=True)
        rows += compare_xskillscore(name, ens, truth)
        dist.append(compare_scipy(name, ens, truth, max_cells=200 if args.quick else 2000))
    lines = ["# Hand-written scores against xskillscore and scipy", "",
             "`python benchmarks/metrics_libraries.py" + (" --quick" if args.quick else "") + "` (best of 3, "
             "seconds, on a shared 2-core machine)", "",
             "| case | score | xdownscale s | xskillscore s | agreement |", "|---|---|---|---|---|"]
    for r in rows:
        agree = {k: v for k, v in r.items() if k not in ("case", "score", "ours_s", "xskillscore_s")}
        lines.append(f"| {r['case']} | {r['score']} | {r['ours_s']:.4f} | {r['xskillscore_s']:.4f} | "
                     f"{json.dumps(agree)} |")
    lines += ["", "| case | cells | xdownscale s (all cells, 4 scores) | scipy s per cell (W1 + KS) | "
              "xdownscale s per cell | max abs diff W1 | max abs diff KS |", "|---|---|---|---|---|---|---|"]
    for d in dist:
        lines.append(f"| {d['case']} | {d['cells']} | {d['ours_s_all_cells_all_4_scores']:.3f} | "
                     f"{d['scipy_s_per_cell']:.2e} | {d['ours_s_per_cell']:.2e} | {d['max_abs_diff_w1']:.1e} | "
                     f"{d['max_abs_diff_ks']:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    stem = "metrics_libraries_quick" if args.quick else "metrics_libraries"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"xskillscore": rows, "scipy": dist}, indent=1))


if __name__ == "__main__":
    main()
