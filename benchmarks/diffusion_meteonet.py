"""Diffusion downscaling on real data: MeteoNet AROME msl or hourly precipitation, factor 4.

Train on the first 18 hourly fields (precipitation: valid 01-17 UTC, the
accumulation differenced to hourly amounts), test on the last 7. Compares
bicubic, a constrained CNN (also the base of the residual diffusion), one
diffusion member and the 10- and 30-member ensemble means (members 0..9 and
0..29 of one 30-member draw), the same ensemble hard-projected onto the coarse
field, and an ablation without the static covariates (orography, land-sea
mask). Prints a Markdown table, writes benchmarks/results/diffusion_meteonet_<var>.md
and a .json with rank histograms and power spectra.

    python benchmarks/diffusion_meteonet.py --var msl [--minutes 6] [--members 30] [--steps 8]
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
from _data import data_dir, meteonet_msl, meteonet_static, open_grib

import xdownscale as xds
from xdownscale.families.diffusion.predict import conserve
from xdownscale.metrics import power_spectrum, rank_histogram, spread_skill

SETTINGS = {"msl": {"constraint": "add", "units": "Pa"}, "tp": {"constraint": "softmax", "units": "kg m-2"}}


def meteonet_tp() -> xr.DataArray:
    """Hourly AROME precipitation (kg m-2): the accumulation since 00 UTC differenced, trimmed to 224 x 312."""
    ds = open_grib(data_dir() / "meteonet-nw" / "arome_PRECIP_NW_20180501000000.grib")
    acc = ds["tp"].load().isel(latitude=slice(0, 224), longitude=slice(0, 312))
    hourly = acc.diff("time", label="upper")
    hourly = xr.concat([acc.isel(time=[0]), hourly], "time").clip(min=0)
    hourly.attrs = {"units": "kg m-2", "long_name": "hourly precipitation", "standard_name": "precipitation_amount"}
    return hourly.rename("tp")


def fine_power_ratio(sr: xr.DataArray, truth: xr.DataArray) -> float:
    """Mean power of ``sr`` over truth at wavelengths of 2-8 fine cells (scales the coarse grid lacks)."""
    ps, pt = power_spectrum(sr), power_spectrum(truth)
    band = (ps.wavenumber >= 1 / 8)
    return float((ps.where(band) / pt.where(band)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--var", choices=list(SETTINGS), default="msl")
    ap.add_argument("--minutes", type=float, default=6.0, help="wall-time bound of each diffusion training")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--cnn-epochs", type=int, default=15)
    ap.add_argument("--members", type=int, default=30)
    ap.add_argument("--ablation-members", type=int, default=10)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--base-channels", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples-per-epoch", type=int, default=64)
    ap.add_argument("--test-times", type=int, default=7)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-updates", type=int, default=None, help="bound the diffusion training by updates")
    ap.add_argument("--cnn", default=None, help="reuse this trained CNN checkpoint instead of training one")
    ap.add_argument("--runs", default="covariates,ablation", help="which diffusion runs: covariates, ablation")
    args = ap.parse_args()
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    st = SETTINGS[args.var]
    field = meteonet_msl() if args.var == "msl" else meteonet_tp()
    n_train = len(field.time) - 7
    train, test = field.isel(time=slice(0, n_train)), field.isel(time=slice(n_train, n_train + args.test_times))
    static = meteonet_static()
    lr = test.downscale.coarsen(4)
    out = Path(tempfile.mkdtemp())
    rows, extra = [], {"rank_histograms": {}, "spectra": {}, "timing": {}}
    t_truth = power_spectrum(test)
    extra["spectra"]["truth"] = {"wavenumber": t_truth.wavenumber.values.tolist(), "power": t_truth.values.tolist()}

    def score(name, sr, seconds=0.0, ens=None):
        s = xds.evaluate(sr, test, lr=lr, member_dim="member")
        row = {"model": name, "rmse": float(s.rmse), "ssim": float(s.ssim), "mass": float(s.mass_violation),
               "crps": float(s.crps) if "crps" in s else float(s.mae), "spread_skill": np.nan,
               "fine_power": fine_power_ratio(sr.mean("member") if "member" in sr.dims else sr, test),
               "seconds": seconds}
        if "member" in sr.dims and sr.sizes["member"] > 1:
            row["spread_skill"] = float(spread_skill(sr, test).ratio)
            rh = rank_histogram(sr, test)
            extra["rank_histograms"][name] = rh.values.tolist()
        single = sr.isel(member=0) if "member" in sr.dims else sr
        p = power_spectrum(single)
        extra["spectra"][name] = p.values.tolist()
        rows.append(row)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    score("bicubic", lr.downscale.predict(model="bicubic", factor=4).compute())
    t0 = time.perf_counter()
    if args.cnn:
        cnn = xds.load(args.cnn)
    else:
        cnn = xds.fit(train, model="cnn", factor=4, constraint=st["constraint"], epochs=args.cnn_epochs,
                      batch_size=16, patch_size=64, width=32, n_blocks=4, seed=0, patience=20,
                      checkpoint=out / "cnn.pt", progress=False)
    score(f"cnn+{st['constraint']}", lr.downscale.predict(model=cnn).compute(), time.perf_counter() - t0)

    runs = [("diffusion (residual of cnn) +orog,lsm", static, args.members),
            ("diffusion (residual of cnn) no covariates", None, args.ablation_members)]
    wanted = args.runs.split(",")
    runs = [r for r, key in zip(runs, ("covariates", "ablation")) if key in wanted]
    for name, cov, members in runs:
        t0 = time.perf_counter()
        m = xds.fit(train, model="diffusion", factor=4, base=cnn, covariates=cov, epochs=args.epochs,
                    batch_size=args.batch_size, samples_per_epoch=args.samples_per_epoch, val_samples=16,
                    base_channels=args.base_channels, max_minutes=args.minutes, max_updates=args.max_updates, sample_steps=args.steps,
                    learning_rate=args.lr, seed=0, patience=100, checkpoint=out / f"diff{len(extra['timing'])}.pt",
                    progress=False)
        train_s = time.perf_counter() - t0
        timing = {}
        ens = xds.predict(lr, model=m, covariates=cov, members=members, steps=args.steps, seed=0, scheduler="ddim",
                          timing=timing, batch_size=16)
        timing.update(train_s=train_s, updates=m.meta["training"]["updates"],
                      per_member_step_s=timing["seconds"] / (timing["fields"] * members * args.steps))
        extra["timing"][name] = timing
        print(name, timing, flush=True)
        tag = "" if cov is not None else " no-cov"
        score(f"diffusion single member{tag}", ens.isel(member=0), train_s)
        score(f"diffusion 10-member mean{tag}", ens.isel(member=slice(0, 10)), train_s)
        if members >= 30:
            score(f"diffusion {members}-member mean{tag}", ens, train_s)
        score(f"diffusion {min(members, 30)}-member +{st['constraint']} projection{tag}",
              conserve(ens.isel(member=slice(0, 30)), lr, st["constraint"]), train_s)
    base = rows[0]["rmse"]
    u = st["units"]
    lines = [f"| model | RMSE ({u}) | RMSE / bicubic | SSIM | CRPS ({u}) | spread/skill | fine-scale power / truth "
             f"| mass violation ({u}) | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['rmse']:.4g} | {r['rmse'] / base:.3f} | {r['ssim']:.4f} | {r['crps']:.4g} | "
                     f"{r['spread_skill']:.2f} | {r['fine_power']:.2f} | {r['mass']:.1e} | {r['seconds']:.0f} |")
    table = "\n".join(lines)
    timing_lines = ["| run | sampling s (7 fields) | per member per field s | per step s (all members) | "
                    "per member-step s | train s | updates |", "|---|---|---|---|---|---|---|"]
    for name, t in extra["timing"].items():
        timing_lines.append(f"| {name} ({t['members']} members, DDIM {t['steps']} steps) | {t['seconds']:.0f} | "
                            f"{t['per_member_s']:.2f} | {t['per_step_s']:.2f} | {t['per_member_step_s']:.3f} | "
                            f"{t['train_s']:.0f} | {t['updates']} |")
    text = (f"MeteoNet AROME {args.var}, x4 (224x312 fine, 56x78 coarse), train {n_train} hourly fields, test "
            f"{len(test.time)}; diffusion: base_channels={args.base_channels}, patch 128, batch {args.batch_size}, "
            f"<= {args.minutes} min training, DDIM {args.steps} steps, seed 0. CRPS of deterministic rows = MAE. "
            f"Measured on a shared 2-core CPU with other jobs running.\n\n{table}\n\n" + "\n".join(timing_lines) + "\n")
    print(text)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    suffix = "" if len(runs) == 2 else "_" + "_".join(wanted)
    (res / f"diffusion_meteonet_{args.var}{suffix}.md").write_text(text)
    (res / f"diffusion_meteonet_{args.var}{suffix}.json").write_text(json.dumps({"rows": rows, **extra}, indent=1))


if __name__ == "__main__":
    main()
