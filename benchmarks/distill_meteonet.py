"""Distillation on real data: MeteoNet AROME mean-sea-level pressure, factor 4.

Does a ``maunet-light`` student distilled from a ``maunet`` teacher
(``xds.distill``) get closer to the teacher than the same student trained alone
with the same budget (epochs, patches, batch, learning rate, seed)?

Data: 25 hourly AROME msl fields (224 x 312, 0.025 deg, north-west France);
train on hours 0-17 (the last 20 % of them validate), test on hours 18-24; the
coarse input is the exact 4x4 block mean. Every network uses orography and the
land-sea mask as covariates and the additive constraint. Rows: bicubic, teacher,
student alone, student distilled with each alpha; with several seeds each
network is trained once per seed (the distilled students of seed s learn from
the teacher of seed s). Prints a Markdown table and writes
benchmarks/results/<results>.md and .json.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 XDOWNSCALE_HOME=/tmp/distill-store \\
        python benchmarks/distill_meteonet.py --epochs 15 --teacher-epochs 25 --alphas 0.3,0.5,0.7 --seeds 0,1

Seeds can run as parallel processes and be merged afterwards:

    python benchmarks/distill_meteonet.py --seeds 0 --results distill_meteonet_seed0 &
    python benchmarks/distill_meteonet.py --seeds 1 --results distill_meteonet_seed1 &
    wait; python benchmarks/distill_meteonet.py --merge distill_meteonet_seed0,distill_meteonet_seed1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import meteonet_msl, meteonet_static  # noqa: E402
from _seeded import merge_parts, seed_cell  # noqa: E402
from bias_correction import ms_per_field  # noqa: E402

import xdownscale as xds  # noqa: E402

FACTOR = 4
METRICS = ["rmse", "mae", "ssim", "mass_violation"]


def one_field(model, lr_field, cov, fine_lat):
    """The network inputs (x, weights, coarse) of one coarse field, as the predictor builds them."""
    from xdownscale.data.covariates import fold_covariates
    from xdownscale.grid.cf import latitude_weights

    norm = model.meta["normalization"]
    field = lr_field.values.astype("float64")
    x = np.nan_to_num((field - norm["target"]["mean"]) / norm["target"]["std"])[None]
    folded = fold_covariates(cov, norm["covariates"], (field.shape[0] * FACTOR, field.shape[1] * FACTOR), FACTOR)
    if folded is not None:
        x = np.concatenate([x, folded])
    w = torch.from_numpy(latitude_weights(fine_lat).astype("float32")).view(1, 1, -1, 1)
    coarse = torch.from_numpy(np.nan_to_num(field, nan=norm["target"]["mean"]).astype("float32"))[None, None]
    return torch.from_numpy(x.astype("float32"))[None], w, coarse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the students (alone and distilled: same budget)")
    ap.add_argument("--teacher-epochs", type=int, default=25, help="epochs of the teacher")
    ap.add_argument("--alphas", default="0.3,0.5,0.7", help="teacher weights of the distillation runs")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each network is trained once per seed")
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples-per-epoch", type=int, default=None, help="default: about one pass over the fields")
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--teacher", metavar="CKPT", help="reuse this trained maunet teacher instead of training one")
    ap.add_argument("--student-width", type=int, default=None, help="maunet-light width (default: its own)")
    ap.add_argument("--student-depth", type=int, default=None, help="maunet-light depth (default: its own)")
    ap.add_argument("--teacher-width", type=int, default=32)
    ap.add_argument("--teacher-depth", type=int, default=3)
    ap.add_argument("--teacher-convs", type=int, default=2, help="convolutions per MAUNet unit")
    ap.add_argument("--teacher-dropout", type=float, default=0.0)
    ap.add_argument("--constraint", default="add")
    ap.add_argument("--teacher-on", default="observed", choices=["observed", "all"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--results", default="distill_meteonet", help="file stem under benchmarks/results/")
    ap.add_argument("--merge", default=None, help="comma-separated result stems (e.g. runs of one seed each, in "
                    "parallel) to combine into --results; trains nothing")
    args = ap.parse_args()
    res = Path(__file__).resolve().parent / "results"
    if args.merge:
        rows, saved = merge_parts(res, args.merge)
        saved.update(results=args.results, seeds=",".join(str(r["seed"]) for r in rows if r["model"] == "maunet (teacher)"),
                     merged_from=args.merge)
        margs = argparse.Namespace(**saved)
        (res / f"{args.results}.json").write_text(json.dumps({"args": saved, "rows": rows}, indent=1))
        write(rows, margs, res)
        return
    torch.set_num_threads(args.threads)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    alphas = [float(a) for a in args.alphas.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",") if s]

    msl = meteonet_msl()
    cov = meteonet_static()
    train, test = msl.isel(time=slice(0, 18)), msl.isel(time=slice(18, 25))
    lr = test.downscale.coarsen(FACTOR)
    fine_lat = test.latitude.values
    common = dict(epochs=args.epochs, batch_size=args.batch_size, patch_size=args.patch_size,
                  samples_per_epoch=args.samples_per_epoch, learning_rate=args.learning_rate, patience=args.epochs,
                  constraint=args.constraint, covariates=cov, progress=False)
    teacher_kw = dict(width=args.teacher_width, depth=args.teacher_depth, n_convs=args.teacher_convs,
                      dropout=args.teacher_dropout)
    student_kw = {k: v for k, v in (("width", args.student_width), ("depth", args.student_depth)) if v is not None}
    ckpt = Path(tempfile.mkdtemp())
    rows: list[dict] = []
    res.mkdir(exist_ok=True)

    def score(name, sr, model=None, train_s=0.0, **extra):
        s = xds.evaluate(sr, test, lr=lr)
        row = {"model": name, **extra, **{k: float(s[k]) for k in METRICS}, "train_s": round(train_s, 1)}
        if model is not None:
            net = model.module.eval()
            row.update(params=int(sum(p.numel() for p in net.parameters())),
                       ms_per_field=ms_per_field(net, one_field(model, lr.isel(time=0), cov, fine_lat), repeats=10))
        rows.append(row)
        print(json.dumps(row), flush=True)
        (res / f"{args.results}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))

    def predicted(m):
        return lr.downscale.predict(model=m, covariates=cov).compute()

    score("bicubic", lr.downscale.predict(model="bicubic", factor=FACTOR).compute())
    for seed in seeds:
        t0 = time.perf_counter()
        if args.teacher:
            teacher = xds.load(args.teacher)
        else:
            teacher = xds.fit(train, model="maunet", factor=FACTOR, seed=seed, checkpoint=ckpt / f"teacher{seed}.pt",
                              **{**common, "epochs": args.teacher_epochs, "patience": args.teacher_epochs}, **teacher_kw)
        score("maunet (teacher)", predicted(teacher), teacher, time.perf_counter() - t0, seed=seed)
        t0 = time.perf_counter()
        alone = xds.fit(train, model="maunet-light", factor=FACTOR, seed=seed, checkpoint=ckpt / f"alone{seed}.pt",
                        **common, **student_kw)
        score("maunet-light, alone", predicted(alone), alone, time.perf_counter() - t0, seed=seed)
        for alpha in alphas:
            t0 = time.perf_counter()
            student = xds.distill(teacher, "maunet-light", train, alpha=alpha, teacher_on=args.teacher_on, seed=seed,
                                  checkpoint=ckpt / f"student{seed}-{alpha}.pt", **common, **student_kw)
            score(f"maunet-light, distilled a={alpha:g}", predicted(student), student, time.perf_counter() - t0,
                  seed=seed, alpha=alpha)
    write(rows, args, res)


def write(rows, args, res: Path) -> None:
    names = list(dict.fromkeys(r["model"] for r in rows))
    head = ["model", "seeds", "RMSE (Pa)", "MAE (Pa)", "SSIM", "mass violation (Pa)", "params", "ms/field",
            "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        rs = [r for r in rows if r["model"] == name]

        def cell(k, fmt, rs=rs):
            return seed_cell(rs, k, fmt)

        lines.append("| " + " | ".join([
            name, ",".join(str(r.get("seed", "-")) for r in rs), cell("rmse", ".3f"), cell("mae", ".3f"),
            cell("ssim", ".5f"), cell("mass_violation", ".1e"),
            f"{rs[0]['params']:,}" if "params" in rs[0] else "0",
            f"{np.mean([r['ms_per_field'] for r in rs]):.0f}" if "params" in rs[0] else "-",
            f"{np.mean([r['train_s'] for r in rs]):.0f}"]) + " |")
    table = "\n".join(lines)
    print(table)
    note = (f"MeteoNet AROME msl, x4 (56x78 -> 224x312), train hours 0-17 (last 20 % validate), test hours 18-24; "
            f"orography + land-sea mask covariates, constraint={args.constraint}; student epochs={args.epochs}, "
            f"teacher epochs={args.teacher_epochs}, "
            f"patch={args.patch_size}, batch={args.batch_size}, lr={args.learning_rate}, "
            f"samples/epoch={args.samples_per_epoch or 'auto'}; teacher maunet width={args.teacher_width} "
            f"depth={args.teacher_depth} n_convs={args.teacher_convs} dropout={args.teacher_dropout}; student "
            f"maunet-light defaults; distillation teacher_on={args.teacher_on}. With several seeds: mean (per seed). "
            f"ms/field: one whole coarse field, batch 1, {args.threads} thread(s), best of 10, shared machine; "
            f"train s: wall clock on a shared 2-core machine.\n")
    (res / f"{args.results}.md").write_text(f"{note}\n{table}\n")


if __name__ == "__main__":
    main()
