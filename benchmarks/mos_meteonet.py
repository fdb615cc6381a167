"""Model output statistics on a real pair: ARPEGE 0.1 deg inputs -> AROME 0.025 deg msl and tp (x4).

MeteoNet NW, 2018-05-01 (see ``_data.meteonet_mos``): train on valid hours 01-17, test on 18-24.
ARPEGE sits point-nested in AROME; its fields are regridded conservatively onto AROME's
cell-nested coarse grid (the pair is trimmed to 224 x 312 fine cells), as ``fit`` does itself.
Compares, by RMSE per target on the test hours:

* bicubic of ARPEGE;
* one model per target (ARPEGE msl -> AROME msl, ARPEGE tp -> AROME tp);
* one joint model (msl, tp) from ARPEGE msl and tp only;
* the joint model from every ARPEGE field (msl, tp, t2m, d2m, r, u10, v10, pressure at 7 heights);
* the joint model trained on coarsened AROME ("perfect" inputs) applied to ARPEGE ("imperfect").

Equal time: each single-target model trains ``--minutes``, each joint model twice as long (the
time of the two single models together). ``--real-constraint`` sets what the real-input runs
conserve: ``conserve`` (default) keeps ARPEGE's own cell means (msl add, tp softmax), so the
network learns only the sub-grid part; ``none`` lets it learn ARPEGE's coarse-scale error too
(it still interpolates each target's own ARPEGE field as its skip). On this one day ``none``
learnt the bias of the training hours, which changes sign by the evening, and lost to bicubic
(results/mos_meteonet.md); ``conserve`` is results/mos_meteonet_conserve.md. The model trained
on coarsened AROME conserves (msl add, tp softmax) as it should on its own coarse fields.

``--model liif``: the arbitrary-scale model through its real-pair path (``fit(lr=arpege,
hr=arome, model="liif")`` trains at the pair's one scale, x4), the two joint rows only, each
``2 * --minutes``; liif takes its constraints at ``predict``, so each model is scored both without
one and conserving ARPEGE (msl add, tp softmax). Results go to ``results/mos_meteonet_liif.md``.

    python benchmarks/mos_meteonet.py [--minutes 1.5] [--width 32] [--real-constraint none]
    python benchmarks/mos_meteonet.py --model liif --minutes 1.25
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import xarray as xr
from _data import meteonet_mos

import xdownscale as xds
from xdownscale.data.multi import make_multi_pair

TARGETS = ["msl", "tp"]


def nested(arome: xr.Dataset, arpege: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """(truth cropped to the nested domain, every ARPEGE field on AROME's cell-nested coarse grid)."""
    pair = make_multi_pair(arome, TARGETS, lr=arpege, trim=True)
    truth = xr.Dataset({n: da for n, da in zip(pair.target_names, pair.targets)})
    inputs = xr.Dataset({n: da for n, da in zip(pair.input_names, pair.inputs)})
    return truth, inputs


def on_truth(sr: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """``sr`` (on AROME's lattice, over the cells ARPEGE covers) on the truth's cells and labels."""
    sr = sr.sel(latitude=truth.latitude, longitude=truth.longitude, method="nearest", tolerance=1e-4)
    return sr.assign_coords(latitude=truth.latitude, longitude=truth.longitude)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=1.5, help="training time of one single-target model")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--n-blocks", type=int, default=4)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=None, help="file in results/ (default mos_meteonet_conserve.md, "
                                                     "mos_meteonet_liif.md for --model liif)")
    ap.add_argument("--real-constraint", choices=("none", "conserve"), default="conserve",
                    help="the real-input runs: no constraint, or conserve ARPEGE's own field (msl add, tp softmax)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    arome, arpege = meteonet_mos()
    train = dict(time=slice(0, 17))
    test = dict(time=slice(17, 24))
    truth, test_in = nested(arome.isel(test), arpege.isel(test))
    out = Path(tempfile.mkdtemp())
    conserve = {"msl": "add", "tp": "softmax"}
    real = (lambda v: "none") if args.real_constraint == "none" else (lambda v: conserve if v is None else conserve[v])
    common = dict(model=args.model, batch_size=16, patch_size=64, width=args.width, n_blocks=args.n_blocks, seed=0,
                  progress=False, trim=True)
    rows: list[dict] = []

    def score(name: str, preds: dict, seconds: float) -> None:
        row = {"model": name, "train_s": round(seconds)}
        for v in TARGETS:
            s = xds.evaluate(preds[v].compute(), truth[v])
            row[f"{v} rmse"] = float(s["rmse"])
            row[f"{v} bias"] = float(s["bias"])
        rows.append(row)
        print(row, flush=True)

    score("bicubic of ARPEGE", {v: xds.predict(test_in[v], model="bicubic", factor=4, like=truth[v])
                                for v in TARGETS}, 0.0)
    if args.model == "liif":
        liif_rows(args, arome.isel(train), arpege.isel(train), arpege.isel(test), truth, out, score)
        write(args, rows)
        return
    singles, spent = {}, 0.0
    for v in TARGETS:
        t0 = time.perf_counter()
        m = xds.fit(lr=arpege.isel(train), hr=arome.isel(train), var=v, constraint=real(v), max_minutes=args.minutes,
                    checkpoint=out / f"single_{v}.pt", **common)
        spent += time.perf_counter() - t0
        singles[v] = xds.predict(test_in[v], model=m, like=truth[v])
    score("one model per target (ARPEGE same variable)", singles, spent)
    joint_runs = [("joint, inputs ARPEGE msl+tp", TARGETS), ("joint, every ARPEGE field", None)]
    for name, predictors in joint_runs:
        t0 = time.perf_counter()
        m = xds.fit(lr=arpege.isel(train), hr=arome.isel(train), var=TARGETS, predictors=predictors,
                    constraint=real(None), max_minutes=2 * args.minutes, checkpoint=out / "joint.pt", **common)
        seconds = time.perf_counter() - t0
        # from ARPEGE as it is: the model regrids it by its training offset onto AROME's lattice
        sr = on_truth(xds.predict(arpege.isel(test)[m.meta["predictors"]], model=m), truth)
        score(name, {v: sr[v] for v in TARGETS}, seconds)
    t0 = time.perf_counter()
    perfect = xds.fit(arome.isel(train).isel(latitude=slice(0, 224), longitude=slice(0, 312)), var=TARGETS, factor=4,
                      constraint={"msl": "add", "tp": "softmax"}, max_minutes=2 * args.minutes,
                      checkpoint=out / "perfect.pt", **common)
    seconds = time.perf_counter() - t0
    sr = xds.predict(test_in[TARGETS], model=perfect, like=truth)
    score("joint trained on coarsened AROME, applied to ARPEGE", {v: sr[v] for v in TARGETS}, seconds)
    coarse_arome = truth.downscale.coarsen(4)[TARGETS]
    sr = xds.predict(coarse_arome, model=perfect, like=truth)
    score("(same, applied to coarsened AROME: perfect input)", {v: sr[v] for v in TARGETS}, 0.0)

    write(args, rows)


def liif_rows(args, arome, arpege, arpege_test, truth, out: Path, score) -> None:
    """The joint rows for ``liif`` trained on the pair (module docstring)."""
    common = dict(model="liif", batch_size=16, width=args.width, n_blocks=args.n_blocks, seed=0, progress=False,
                  trim=True)
    for name, predictors in [("liif joint, inputs ARPEGE msl+tp", TARGETS), ("liif joint, every ARPEGE field", None)]:
        t0 = time.perf_counter()
        m = xds.fit(lr=arpege, hr=arome, var=TARGETS, predictors=predictors, max_minutes=2 * args.minutes,
                    checkpoint=out / "liif.pt", **common)
        seconds = time.perf_counter() - t0
        for label, constraint in (("no constraint", None), ("conserving ARPEGE", {"msl": "add", "tp": "softmax"})):
            sr = on_truth(xds.predict(arpege_test[m.meta["predictors"]], model=m, constraint=constraint), truth)
            score(f"{name}, {label}", {v: sr[v] for v in TARGETS}, seconds)


def write(args, rows: list[dict]) -> None:
    cols = ["model", "msl rmse", "msl bias", "tp rmse", "tp bias", "train_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    table = "\n".join(lines)
    print(table)
    runs = ("liif trained on the pair (x4)" if args.model == "liif" else
            f"single models {args.minutes} min each")
    head = (f"MeteoNet NW 2018-05-01, ARPEGE -> AROME x4, train 01-17 UTC, test 18-24 UTC; msl in Pa, tp in "
            f"kg m-2 per hour. {args.model} width {args.width}, {args.n_blocks} blocks; {runs}, joint models "
            f"{2 * args.minutes} min; torch threads {args.threads}; real-input constraint: "
            f"{'chosen at predict, both shown' if args.model == 'liif' else args.real_constraint}.\n\n")
    name = args.results or ("mos_meteonet_liif.md" if args.model == "liif" else "mos_meteonet_conserve.md")
    (Path(__file__).parent / "results" / name).write_text(head + table + "\n")


if __name__ == "__main__":
    main()
