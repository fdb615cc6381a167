"""Skill of the default ``fit`` against bicubic and an independent minimal residual net.

Cases (``--data``):

* ``wfde5`` (default): WFDE5 UK hourly 2 m air temperature (``--var Tair``, K) or precipitation
  (``--var pr``), 0.5 deg, 20 x 28 (sea cells are NaN), January 2017. Train on the first 558
  hours (75 %), test on the last 186. Scores are over the land cells of the test hours.
* ``meteonet``: MeteoNet AROME 0.025 deg, north-west France, 2018-05-01, trimmed to 224 x 312:
  ``--var msl`` (Pa) or ``--var tp`` (hourly, kg m-2). Train on hours 01-17, test on 18-24.
  ``--covariates`` gives the library fit AROME's orography and land-sea mask (the floor never
  sees them).
* ``radolan``: DWD RADOLAN RW hourly radar, 2022-10-18 (24 hours, 1 km): train on the band
  y[0:448], test on the disjoint square y[448:704] x[512:768] (as ``skill_radolan.py``), softmax.
  The floor there trains on batches of ``--floor-batch 8`` whole 448 x 896 fields.

The coarse input is ``xds.coarsen`` of the fine field by the factor.

Per run it prints and appends to ``benchmarks/results/skill_runs.jsonl``: RMSE and MAE in K,
RMSE / bicubic, optimizer updates and fit seconds (wall, with the torch threads given).

* ``default``: ``xds.fit(train, factor=f, constraint=c)`` (no ``model=``: the library's default body) plus the ``--fit`` JSON options
  (an ablation is a run with options, e.g. ``--fit '{"batch_size": 16}'``).
* ``floor``: a minimal residual net written here, independent of the library: bicubic skip,
  ``--floor-blocks`` residual blocks of ``--floor-width`` channels at coarse resolution,
  one sub-pixel upsampling, the additive constraint, Adam 1e-3 with cosine decay, batches
  of ``--floor-batch`` whole fields, ``--floor-updates`` updates, no validation.

    PYTHONPATH=. python benchmarks/skill.py --factor 4 --label default
    PYTHONPATH=. python benchmarks/skill.py --factor 4 --label b16 --fit '{"batch_size": 16}' --no-floor
    PYTHONPATH=. python benchmarks/skill.py --factor 2 --constraint add --label default
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import data_dir, meteonet_mos, meteonet_static  # noqa: E402

import xdownscale as xds  # noqa: E402
from xdownscale.io.radolan import open_radolan  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_TRAIN = 558
BICUBIC_RMSE = {4: 0.7559, 2: 0.4689}  # sea-filled bicubic on the test hours (printed by every run)


FILES = {"Tair": "air_temperature.nc", "pr": "precipitation_flux.nc"}  # WFDE5 UK, January 2017


METEONET_TRAIN = 17  # valid hours 01-17; test 18-24 (as benchmarks/mos_meteonet.py)


def field(var: str = "Tair", data: str = "wfde5", factor: int = 4) -> tuple[xr.DataArray, xr.DataArray]:
    if data == "radolan":  # train on the northern band, test on a disjoint square (as skill_radolan.py)
        rw = open_radolan(data_dir() / "radolan-rw" / "RW-20221018.tar.gz", times=slice(0, 24)).load()
        return rw.isel(y=slice(0, 448), x=slice(0, rw.sizes["x"] // factor * factor)), \
            rw.isel(y=slice(448, 704), x=slice(512, 768))
    if data == "meteonet":
        hr = meteonet_mos()[0][var].isel(latitude=slice(0, 224), longitude=slice(0, 312))
        return hr.isel(time=slice(0, METEONET_TRAIN)), hr.isel(time=slice(METEONET_TRAIN, None))
    hr = xr.open_dataset(data_dir() / "wfde5-uk" / FILES[var])[var].load()
    return hr.isel(time=slice(0, N_TRAIN)), hr.isel(time=slice(N_TRAIN, None))


def scores(pred: xr.DataArray, truth: xr.DataArray) -> dict:
    """RMSE and MAE (of the ensemble mean) over the land cells; for an ensemble also the fair CRPS."""
    y = np.asarray(truth.values, dtype="float64")
    out = {}
    if "member" in pred.dims:
        ens = np.asarray(pred.transpose("member", ...).values, dtype="float64")
        m = len(ens)
        skill = np.abs(ens - y).mean(0)
        spread = np.abs(ens[:, None] - ens[None]).sum((0, 1)) / (2 * m * (m - 1))
        crps = skill - spread
        out["crps"] = float(np.mean(crps[np.isfinite(crps)]))
        pred = pred.mean("member")
    d = np.asarray(pred.values, dtype="float64") - y
    d = d[np.isfinite(d)]
    return {"rmse": float(np.sqrt(np.mean(d**2))), "mae": float(np.mean(np.abs(d))), **out}


def filled(lr: xr.DataArray) -> xr.DataArray:
    """Sea (NaN) coarse cells filled from the nearest land cells along x then y (land values kept):
    the bicubic reference at its strongest at the coasts (the library's own paths fill missing
    coarse cells from their nearest valid neighbour, xdownscale.data.fill)."""
    for d in xds.grid.find_axes(lr).spatial[::-1]:
        lr = lr.ffill(d).bfill(d)
    return lr


# ------------------------------------------------------------------ the independent floor
class FloorNet(nn.Module):
    """Normalised coarse field in, normalised fine field out (bicubic + residual, block means kept)."""

    def __init__(self, factor: int, width: int, blocks: int):
        super().__init__()
        self.f = factor
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks))
        self.up = nn.Sequential(nn.Conv2d(width, factor * factor, 3, padding=1), nn.PixelShuffle(factor))

    def forward(self, x):
        h = self.head(x)
        r = h
        for block in self.blocks:
            r = r + block(r)
        out = F.interpolate(x, scale_factor=self.f, mode="bicubic", align_corners=False) + self.up(r + h)
        gap = x - F.avg_pool2d(out, self.f)  # the additive constraint: each block keeps its coarse mean
        return out + gap.repeat_interleave(self.f, -2).repeat_interleave(self.f, -1)


def floor(train: xr.DataArray, test: xr.DataArray, factor: int, args) -> tuple[xr.DataArray, dict]:
    torch.manual_seed(0)
    train = train.isel(time=slice(0, args.floor_hours))
    y = torch.from_numpy(np.asarray(train.values, dtype="float32"))[:, None]
    mean, std = float(np.nanmean(y)), float(np.nanstd(y))
    yn = (y - mean) / std

    def coarse(da):
        c = np.asarray(xds.coarsen(da, factor).values, dtype="float32")
        return torch.from_numpy(np.nan_to_num((c - mean) / std))[:, None]

    x, xt = coarse(train), coarse(test)
    mask = torch.isfinite(yn)
    yn = torch.nan_to_num(yn)
    net = FloorNet(factor, args.floor_width, args.floor_blocks)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.floor_updates)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.floor_updates):
        idx = torch.randint(len(x), (args.floor_batch,), generator=g)
        err = (net(x[idx]) - yn[idx]) ** 2 * mask[idx]
        loss = err.sum() / mask[idx].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        out = net(xt)[:, 0].numpy() * std + mean
    return test.copy(data=out.astype("float32")), {"updates": args.floor_updates, "fit_s": seconds}


# ------------------------------------------------------------------ the library
def library(train, test, factor: int, constraint: str, options: dict, workdir: Path, covariates=None):
    """Fit, then predict the test hours. ``liif`` is scale-free: it is fitted once without a
    factor and constraint and predicted at ``factor``."""
    if covariates is not None:
        options = {**options, "covariates": covariates}
    lr_test = xds.coarsen(test, factor)
    scale_free = options.get("model") == "liif"
    t0 = time.perf_counter()
    kw = {} if scale_free else dict(factor=factor, constraint=constraint)
    m = xds.fit(train, progress=False, checkpoint=workdir / "m.pt", **kw, **options)
    seconds = time.perf_counter() - t0
    extra = {"members": 10, "seed": 7} if xds.model_info(m.model_name).get("probabilistic") else {}
    if scale_free:
        extra["factor"] = factor
    t1 = time.perf_counter()
    if covariates is not None:
        extra["covariates"] = covariates
    sr = xds.predict(lr_test, model=m, like=test, **extra).load()
    predict_s = time.perf_counter() - t1
    hist = m.meta["training"].get("history", [])
    updates = m.meta["training"].get("updates")
    other = {}
    if scale_free:  # the same model at the other factors: RMSE over the sea-filled bicubic of that factor
        for k in (2, 4):
            lr_k = xds.coarsen(test, k)
            other[k] = (scores(xds.predict(lr_k, model=m, like=test, factor=k).load(), test)["rmse"]
                        / scores(xds.predict(filled(lr_k), model="bicubic", factor=k, like=test).load(), test)["rmse"])
    return sr, {"updates": updates, "fit_s": seconds, "predict_s": predict_s, "rounds": len(hist),
                **({"ratio_by_factor": other} if other else {}),
                "best_round": m.meta["training"].get("best_epoch"),
                "val_curve": [round(h.get("val_loss", h.get("val_crps", float("nan"))), 5) for h in hist]}


def table(path: Path) -> str:
    """The runs recorded in ``path`` as a markdown table (RMSE / sea-filled bicubic of the factor)."""
    bic = {}
    rows = [json.loads(line) for line in open(path)]
    lines = ["| field | run | options | RMSE | MAE | CRPS | RMSE / bicubic | updates | rounds (best) | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = r.get("bicubic_rmse") or BICUBIC_RMSE[r["factor"]]
        bic[r["factor"]] = base
        crps = f"{r['crps']:.4f}" if "crps" in r else ""
        rounds = f"{r['rounds']} ({r['best_round']})" if "rounds" in r else ""
        extra = ""
        if "ratio_by_factor" in r:
            extra = " (" + ", ".join(f"x{k}: {v:.3f}" for k, v in r["ratio_by_factor"].items()) + ")"
        field = ("MeteoNet " if r.get("data") == "meteonet" else "") + r.get("var", "Tair")
        lines.append(f"| {field} x{r['factor']} | {r['label'] if r['method'].startswith('fit') else r['method']} | "
                     f"`{json.dumps(r.get('options', {}))}` | {r['rmse']:.4g} | {r['mae']:.4g} | {crps} | "
                     f"{r['rmse'] / base:.3f}{extra} | {r['updates']} | {rounds} | {r['fit_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--data", default="wfde5", choices=("wfde5", "meteonet", "radolan"))
    p.add_argument("--var", default=None, help="wfde5: Tair (default) or pr; meteonet: msl (default) or tp; "
                                               "radolan: RW")
    p.add_argument("--covariates", action="store_true", help="meteonet: orography and land-sea mask for the fit")
    p.add_argument("--constraint", default=None, help="default: softmax at x4, add at x2 (pr: softmax)")
    p.add_argument("--fit", default="{}", help="JSON options for xds.fit (the ablation)")
    p.add_argument("--label", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-floor", action="store_true")
    p.add_argument("--no-default", action="store_true")
    p.add_argument("--floor-updates", type=int, default=360)
    p.add_argument("--floor-batch", type=int, default=32)
    p.add_argument("--floor-width", type=int, default=64)
    p.add_argument("--floor-blocks", type=int, default=6)
    p.add_argument("--floor-hours", type=int, default=None, help="train the floor on the first N hours only")
    p.add_argument("--out", default=str(RESULTS / "skill_runs.jsonl"))
    p.add_argument("--table", action="store_true", help="print the recorded runs as a markdown table and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table(Path(args.out)))
        return
    torch.set_num_threads(args.threads)
    f = args.factor
    args.var = args.var or {"meteonet": "msl", "radolan": "RW"}.get(args.data, "Tair")
    known = {"meteonet": ("msl", "tp"), "radolan": ("RW",)}.get(args.data, tuple(FILES))
    if args.var not in known:
        p.error(f"--var {args.var}: {args.data} has {', '.join(known)}")
    constraint = args.constraint or ("softmax" if f == 4 or args.var in ("pr", "tp", "RW") else "add")
    train, test = field(args.var, args.data, f)
    covariates = meteonet_static() if args.covariates else None
    if covariates is not None and args.data != "meteonet":
        p.error("--covariates: only the meteonet case has static fields")
    label = args.label + ("+orog,lsm" if covariates is not None else "")
    lr_test = xds.coarsen(test, f)
    bic = scores(xds.predict(filled(lr_test), model="bicubic", factor=f, like=test).load(), test)
    bic0 = scores(xds.predict(lr_test, model="bicubic", factor=f, like=test).load(), test)
    rows = [{"method": "bicubic (sea filled)", **bic, "updates": 0, "fit_s": 0.0},
            {"method": "bicubic (sea as mean)", **bic0, "updates": 0, "fit_s": 0.0}]
    if not args.no_default:
        options = json.loads(args.fit)
        with tempfile.TemporaryDirectory() as tmp:
            sr, info = library(train, test, f, constraint, options, Path(tmp), covariates)
        rows.append({"method": f"fit {label}", "options": options, **scores(sr, test), **info})
        print(f"fit {label}: RMSE {rows[-1]['rmse']:.4g} ({rows[-1]['rmse'] / bic['rmse']:.3f} x bicubic), "
              f"{info['updates']} updates, {info['fit_s']:.0f} s", flush=True)
    if not args.no_floor:
        sr, info = floor(train, test, f, args)
        hours = f" {args.floor_hours}h" if args.floor_hours else ""
        rows.append({"method": f"floor {args.floor_blocks}x{args.floor_width} b{args.floor_batch}{hours}", **scores(sr, test),
                     **info})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{args.data} {args.var} x{f} ({constraint}), train {train.sizes['time']} h, test {test.sizes['time']} h, "
          f"{args.threads} thread(s)")
    print(f"{'method':<34} {'RMSE':>7} {'MAE':>7} {'/bicubic':>8} {'updates':>8} {'fit s':>7}")
    for r in rows:
        r["ratio"] = r["rmse"] / bic["rmse"]
        print(f"{r['method']:<34} {r['rmse']:7.4f} {r['mae']:7.4f} {r['ratio']:8.3f} {str(r['updates']):>8} "
              f"{r['fit_s']:7.1f}" + (f"  CRPS {r['crps']:.4f}" if "crps" in r else ""))
        if "val_curve" in r:
            print(f"  rounds {r['rounds']}, best {r['best_round']}")
        if "ratio_by_factor" in r:
            print("  RMSE / bicubic by factor: " + ", ".join(f"x{k} {v:.3f}" for k, v in r["ratio_by_factor"].items()))
    with open(args.out, "a") as fh:
        for r in rows[2:]:
            fh.write(json.dumps({"time": stamp, "data": args.data, "var": args.var, "factor": f, "constraint": constraint,
                                 "threads": args.threads,
                                 "label": label, "bicubic_rmse": bic["rmse"], **r}) + "\n")


if __name__ == "__main__":
    main()
