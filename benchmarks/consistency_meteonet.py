"""Cross-variable consistency on real fields: how often a joint model breaks each rule, and what
the consistency layers cost in skill.

MeteoNet NW ARPEGE 0.1 deg, 2018-05-01, 25 hourly steps on 58 x 80: targets t2m, d2m, r (2 m)
and u10, v10, ws (10 m), each coarsened x2 (perfect-model setting) as its own input and
conserved with ``add``. Train on the first ``--train-hours`` steps, test on the rest.
Runs, each the same network and update budget:

* ``none``: no consistency rules;
* ``post-hoc``: the ``none`` model's test output put through the rules afterwards (not trained with them);
* ``components``: trained with ``0<=r<=100``, ``d2m<=t2m``, ``ws=hypot(u10,v10)`` (u, v kept);
* ``speed``: the same with ``hypot(u10,v10)=ws`` (ws kept, u and v rescaled to it).

Reports per run the fraction of fine test cells breaking each rule (r outside [0, 100],
d2m > t2m, |ws - hypot(u10, v10)| > ``--ws-tol``), the RMSE per target and the largest
conservation error max|coarsen(pred) - coarse| per target; with ``--seeds N`` the mean over N
training seeds and, for the RMSE, the spread (max - min) over them.

    python benchmarks/consistency_meteonet.py [--updates 600] [--threads 1] [--out benchmarks/results/consistency_meteonet.md]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from _data import data_dir, open_grib

import xdownscale as xds
from xdownscale.nn.consistency import Consistency

TARGETS = ["t2m", "d2m", "r", "u10", "v10", "ws"]
RULES = {"components": ["0<=r<=100", "d2m<=t2m", "ws=hypot(u10,v10)"],
         "speed": ["0<=r<=100", "d2m<=t2m", "hypot(u10,v10)=ws"]}
FACTOR = 2


def load() -> xr.Dataset:
    d = data_dir() / "meteonet-nw"
    parts = [open_grib(d / "arpege_2m_NW_20180501000000.grib"), open_grib(d / "arpege_10m_NW_20180501000000.grib")]
    ds = xr.merge([p[[v for v in TARGETS if v in p]] for p in parts], compat="override")
    keep = ("time", "latitude", "longitude")
    return ds.drop_vars([c for c in ds.coords if c not in keep]).load()


def gaps(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """How far each fine cell is from satisfying each rule (0 where it does)."""
    r = ds["r"].values
    return {"r outside [0,100]": np.maximum(np.maximum(r - 100, -r), 0),
            "d2m > t2m": np.maximum(ds["d2m"].values - ds["t2m"].values, 0),
            "ws != hypot(u,v)": np.abs(ds["ws"].values - np.hypot(ds["u10"].values, ds["v10"].values))}


def violations(ds: xr.Dataset, ws_tol: float) -> dict[str, float]:
    """The fraction of fine cells breaking each rule (the wind beyond ``ws_tol``)."""
    return {k: float((g > (ws_tol if k.startswith("ws") else 0)).mean()) for k, g in gaps(ds).items()}


def worst(ds: xr.Dataset) -> dict[str, float]:
    return {k: float(g.max()) for k, g in gaps(ds).items()}


def post_hoc(sr: xr.Dataset, rules: list[str]) -> xr.Dataset:
    """The rules applied to an unconstrained model's output (area weights of the fine rows)."""
    layer = Consistency(rules, TARGETS, FACTOR)
    y = torch.from_numpy(np.stack([sr[v].values for v in TARGETS], axis=1).astype("float64"))
    w = torch.from_numpy(np.cos(np.deg2rad(sr["latitude"].values))).view(1, 1, -1, 1)
    out = layer(y, w).numpy()
    return sr.copy(data={v: out[:, k].astype("float32") for k, v in enumerate(TARGETS)})


def score(sr: xr.Dataset, truth: xr.Dataset, lr: xr.Dataset, ws_tol: float) -> dict:
    rmse = {v: float(np.sqrt(((sr[v] - truth[v]) ** 2).mean())) for v in TARGETS}
    back = sr.downscale.coarsen(FACTOR)
    cons = {v: float(np.abs(back[v].values - lr[v].values).max()) for v in TARGETS}
    return {"violations": violations(sr, ws_tol), "worst": worst(sr), "rmse": rmse, "conservation": cons}


def combine(runs: list[dict]) -> dict:
    """One run's scores over seeds: mean violations and RMSE, RMSE spread, worst conservation error."""
    def over(key, fn):
        return {k: fn([r[key][k] for r in runs]) for k in runs[0][key]}

    return {"violations": over("violations", np.mean), "worst": over("worst", np.max), "rmse": over("rmse", np.mean),
            "spread": over("rmse", np.ptp), "conservation": over("conservation", np.max), "n": len(runs)}


def pct(x: float, n: int) -> str:
    return f"{x:.3%} ({x * n:.0f})"


def markdown(results: dict, truth_v: dict, truth_w: dict, command: str, seconds: dict, n_cells: int,
             ws_tol: float) -> str:
    rules = list(next(iter(results.values()))["violations"])
    lines = ["# Consistency layers on MeteoNet NW ARPEGE (x2, perfect model)", "", f"Command: `{command}`", "",
             f"Fraction (and count, mean over seeds) of the {n_cells} fine test cells breaking each rule (the wind "
             f"beyond {ws_tol:g} m/s; truth: ARPEGE's own fields):",
             "",
             "| run | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules),
             "| truth | " + " | ".join(pct(truth_v[k], n_cells) for k in rules) + " |"]
    lines += [f"| {name} | " + " | ".join(pct(r['violations'][k], n_cells) for k in rules) + " |"
              for name, r in results.items()]
    lines += ["", "Largest violation over seeds (r in %, K, m/s):", "", "| run | " + " | ".join(rules) + " |",
              "|---|" + "---|" * len(rules), "| truth | " + " | ".join(f"{truth_w[k]:.3g}" for k in rules) + " |"]
    lines += [f"| {name} | " + " | ".join(f"{r['worst'][k]:.3g}" for k in rules) + " |" for name, r in results.items()]
    lines += ["", "RMSE per target on the test hours (t2m, d2m in K; r in %; winds in m/s; +- half the spread over "
              "seeds):", "",
              "| run | " + " | ".join(TARGETS) + " | train s |", "|---|" + "---|" * (len(TARGETS) + 1)]
    lines += [f"| {name} | " + " | ".join(f"{r['rmse'][v]:.4f} +- {r['spread'][v] / 2:.4f}" for v in TARGETS)
              + f" | {seconds.get(name, float('nan')):.0f} |" for name, r in results.items()]
    lines += ["", "Largest conservation error max|coarsen(pred) - coarse input| per target:", "",
              "| run | " + " | ".join(TARGETS) + " |", "|---|" + "---|" * len(TARGETS)]
    lines += [f"| {name} | " + " | ".join(f"{r['conservation'][v]:.2g}" for v in TARGETS) + " |"
              for name, r in results.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=600, help="optimizer updates per trained run")
    ap.add_argument("--train-hours", type=int, default=18)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--n-blocks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per run (0 .. N-1)")
    ap.add_argument("--ws-tol", type=float, default=0.05, help="m/s; ARPEGE's own ws and hypot(u10, v10) differ by < 0.01")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "consistency_meteonet.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load()
    train, test = ds.isel(time=slice(0, args.train_hours)), ds.isel(time=slice(args.train_hours, None))
    lr = test.downscale.coarsen(FACTOR)
    lr = lr.drop_vars([v for v in lr.data_vars if str(v).endswith("_bnds")])
    opts = dict(model=args.model, factor=FACTOR, var=TARGETS, constraint="add", max_updates=args.updates,
                batch_size=8, patch_size=32, progress=False, width=args.width,
                n_blocks=args.n_blocks)
    runs: dict[str, list] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, rules in [("none", None), *RULES.items()]:
                t0 = time.perf_counter()
                m = xds.fit(train, checkpoint=Path(tmp) / f"{name}.pt", consistency=rules, seed=seed, **opts)
                seconds[name] = seconds.get(name, 0.0) + (time.perf_counter() - t0) / args.seeds
                sr = xds.predict(lr, model=m)[TARGETS]
                runs.setdefault(name, []).append(score(sr, test, lr, args.ws_tol))
                if name == "none":
                    for kind, post_rules in RULES.items():
                        runs.setdefault(f"post-hoc ({kind})", []).append(
                            score(post_hoc(sr, post_rules), test, lr, args.ws_tol))
                print(seed, name, runs[name][-1], flush=True)
    results = {name: combine(r) for name, r in runs.items()}
    command = "python benchmarks/consistency_meteonet.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
    text = markdown(results, violations(test, args.ws_tol), worst(test), command, seconds, int(test["r"].size),
                    args.ws_tol)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
