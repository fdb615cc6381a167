"""Distillation with a short reference period: WFDE5 UK 2 m air temperature, x2, biased coarse input.

The usual bias-correction situation: the coarse model runs for a long period, the
fine reference (observations, a reanalysis) covers only part of it. Here the
reference is the first ``--reference-hours`` hourly fields of January 2017
(the last 20 % of them validate); the coarse input of the rest of the training
period (up to hour 540) has no truth; the test is hours 540-743, as in
``bias_correction.py`` (same data, same deliberate bias, same covariates, but
the climatology covariate is the reference period's mean).

Rows: the ``maunet`` teacher (one network, or the mean of ``--teacher-members``
networks), trained on the reference and fixed for all student seeds; then, per
student seed and all with the same budget (epochs, samples per epoch, batch,
learning rate): the ``maunet-light`` student trained alone on the reference; the
student distilled from the teacher on the reference plus the teacher's
downscaling of the coarse-only fields (``xds.distill(..., unlabelled=coarse_only)``);
with ``--reference-only`` also the student distilled on the reference alone;
with ``--single-teacher`` also the student distilled from the first member alone.
Baselines: bicubic, and bicubic + EQM trained on the reference. Besides the
errors against the truth, each student's RMSE against the teacher's output
("to teacher") shows how closely it imitates the teacher. Prints a Markdown table and writes
benchmarks/results/<results>.md and .json.

    # the teachers once (kept in --teachers-dir), then student seeds in parallel processes
    OMP_NUM_THREADS=1 python benchmarks/distill_wfde5.py --teacher-members 3 --teachers-dir /tmp/teachers \
        --seeds 0,1 --results distill_wfde5_a &
    OMP_NUM_THREADS=1 python benchmarks/distill_wfde5.py --teacher-members 3 --teachers-dir /tmp/teachers \
        --seeds 2,3 --results distill_wfde5_b &   # start once the teachers are saved
    wait; python benchmarks/distill_wfde5.py --merge distill_wfde5_a,distill_wfde5_b
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
from _seeded import merge_parts, seed_cell  # noqa: E402
from bias_correction import (
    FACTOR,
    N_TRAIN,
    _one_field,
    conv_flops_per_pixel,
    covariates,
    fill_nan,
    load_truth,
    make_bias,
    ms_per_field,
)

import xdownscale as xds

METRICS = ["rmse", "bias", "quantile_bias_q01", "quantile_bias_q99", "ssim"]
RESULTS = Path(__file__).resolve().parent / "results"


def make_wet_bias(lr):
    """A climate model's precipitation errors: drizzle everywhere (+0.03 mm/h), damped intensities
    (0.75 x^0.85) and a latitude-dependent amount (8 % per degree from 55 N)."""
    scale = 1.0 + 0.08 * (lr.lat - 55.0)
    biased = (0.03 + 0.75 * lr.clip(min=0) ** 0.85 * scale).clip(min=0)
    return biased.transpose(*lr.dims).astype("float32").assign_attrs(lr.attrs).rename(lr.name)


def load_case(name: str):
    """(fine truth, biased coarse input) of WFDE5 ``tair`` (K) or ``pr`` (mm/h)."""
    if name == "tair":
        hr = load_truth()
        return hr, make_bias(fill_nan(xds.coarsen(hr, FACTOR)))
    import xarray as xr
    from _data import data_dir
    pr = xr.open_dataset(data_dir() / "wfde5-uk" / "precipitation_flux.nc")["pr"].load()
    hr = (pr * 3600.0).astype("float32").assign_attrs(pr.attrs, units="mm h-1")
    return hr, make_wet_bias(fill_nan(xds.coarsen(hr, FACTOR)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="tair", choices=["tair", "pr"])
    ap.add_argument("--train-teacher", type=int, default=None, metavar="K",
                    help="only train teacher K into --teachers-dir and stop (to train members in parallel)")
    ap.add_argument("--reference-hours", type=int, default=120, help="fields with a fine truth (from hour 0)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--samples-per-epoch", type=int, default=256, help="the same for every network")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--alphas", default="0.5", help="teacher weights of the distillation runs")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--teacher-width", type=int, default=32)
    ap.add_argument("--teacher-convs", type=int, default=1)
    ap.add_argument("--teacher-dropout", type=float, default=0.0)
    ap.add_argument("--teacher-members", type=int, default=1, help="teacher = mean of this many maunets "
                    "(seeds 100, 101, ...), the same for every student seed")
    ap.add_argument("--teachers-dir", default=None, help="keep/reuse the teachers' checkpoints here")
    ap.add_argument("--hint-weights", default="", help="also distil with feature-affinity hints of these weights "
                    "(first alpha; with the coarse-only fields when there are any)")
    ap.add_argument("--no-plain", action="store_true", help="skip the output-only distillation rows")
    ap.add_argument("--single-teacher", action="store_true", help="also distil from teacher 0 alone")
    ap.add_argument("--reference-only", action="store_true", help="also distil without the coarse-only fields")
    ap.add_argument("--student-width", type=int, default=None, help="maunet-light width (default: its own)")
    ap.add_argument("--results", default="distill_wfde5")
    ap.add_argument("--merge", default=None, help="comma-separated result stems to combine into --results")
    args = ap.parse_args()
    if args.merge:
        rows, saved = merge_parts(RESULTS, args.merge)
        saved.update(results=args.results, merged_from=args.merge)
        (RESULTS / f"{args.results}.json").write_text(json.dumps({"args": saved, "rows": rows}, indent=1))
        write(rows, argparse.Namespace(**saved))
        return
    torch.set_num_threads(1)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp())
    hr, lr = load_case(args.dataset)
    land = hr.isel(time=0, drop=True).notnull()
    ref = slice(0, args.reference_hours)
    hr_ref, lr_ref = hr.isel(time=ref), lr.isel(time=ref)
    lr_only = lr.isel(time=slice(args.reference_hours, N_TRAIN))
    if lr_only.sizes["time"] == 0:  # the reference covers the whole training period
        lr_only, args.reference_only = None, True
    hr_te, lr_te = hr.isel(time=slice(N_TRAIN, None)), lr.isel(time=slice(N_TRAIN, None))
    cov = covariates(hr, hr_ref)
    truth_filled = fill_nan(hr_te)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, patch_size=28, samples_per_epoch=args.samples_per_epoch,
                  patience=args.epochs, progress=False, covariates=cov, learning_rate=1e-3)
    student_kw = {} if args.student_width is None else {"width": args.student_width}
    rows, ckpt = [], Path(tempfile.mkdtemp())
    RESULTS.mkdir(exist_ok=True)

    reference = {}

    def score(name, sr, model=None, train_s=0.0, **extra):
        s = xds.evaluate(sr.where(land), hr_te, wet_threshold=0.1 if args.dataset == "pr" else None)
        if args.dataset == "pr":
            extra["wet_frequency_bias"] = float(s["wet_day_frequency_bias"])
        if "teacher" in reference:
            extra["to_teacher"] = float(xds.evaluate(sr.where(land), reference["teacher"], quantiles=())["rmse"])
        s["ssim"] = xds.evaluate(sr.where(land, truth_filled), truth_filled, quantiles=())["ssim"]
        row = {"model": name, **extra, **{k: float(s[k]) for k in METRICS}, "train_s": round(train_s, 1)}
        if model is not None:
            net = model.module.eval()
            ex = next(iter(_one_field(model, lr_te, cov)))
            row.update(params=sum(p.numel() for p in net.parameters()), flops_per_px=conv_flops_per_pixel(net, ex),
                       ms_per_field=ms_per_field(net, ex))
        rows.append(row)
        print(json.dumps(row), flush=True)
        (RESULTS / f"{args.results}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))

    def predicted(m):
        return xds.predict(lr_te, model=m, covariates=cov, like=hr.isel(time=0)).compute()

    def timed(fn, *a, **kw):
        t0 = time.perf_counter()
        return fn(*a, **kw), time.perf_counter() - t0

    score("bicubic", xds.predict(lr_te, model="bicubic", factor=FACTOR, like=hr.isel(time=0)).compute())
    score("bicubic + EQM", xds.bias_correct(lr_te, ref=hr_ref, hist=lr_ref, method="eqm"))
    teachers, member_preds = [], []  # fixed across the student seeds: the question is what the student's training does
    tdir = Path(args.teachers_dir or ckpt)
    tdir.mkdir(parents=True, exist_ok=True)
    for k in range(args.teacher_members) if args.train_teacher is None else [args.train_teacher]:
        path = tdir / f"teacher{k}.pt"
        if path.exists():
            teachers.append(xds.load(path))
            s = 0.0
        else:
            t, s = timed(xds.fit, hr_ref, lr=lr_ref, model="maunet", seed=100 + k, checkpoint=path,
                         width=args.teacher_width, depth=2, n_convs=args.teacher_convs,
                         dropout=args.teacher_dropout, **{**common, "epochs": args.teacher_epochs,
                                                          "patience": args.teacher_epochs})
            teachers.append(t)
        if args.train_teacher is not None:
            return
        member_preds.append(predicted(teachers[-1]))
        score(f"maunet teacher {k}", member_preds[-1], teachers[-1], s, teacher_seed=100 + k)
    ens = teachers if args.teacher_members > 1 else teachers[0]
    t_pred = sum(member_preds) / len(member_preds)
    if args.teacher_members > 1:
        score(f"maunet x{args.teacher_members}, mean (teacher)", t_pred)
    reference["teacher"] = t_pred.where(land)
    for seed in [int(s) for s in args.seeds.split(",")]:
        alone, s = timed(xds.fit, hr_ref, lr=lr_ref, model="maunet-light", seed=seed,
                         checkpoint=ckpt / f"a{seed}.pt", **common, **student_kw)
        score("maunet-light, alone", predicted(alone), alone, s, seed=seed)
        for alpha in [float(a) for a in args.alphas.split(",")]:
            for extra, label in ((None, "reference only"), (lr_only, "+ teacher-labelled coarse-only fields")):
                if (extra is None and not args.reference_only) or (label[0] == "+" and lr_only is None) \
                        or args.no_plain:
                    continue
                student, s = timed(xds.distill, ens, "maunet-light", hr_ref, lr=lr_ref, alpha=alpha,
                                   unlabelled=extra, seed=seed, checkpoint=ckpt / f"d{seed}-{alpha}-{label[:3]}.pt",
                                   **common, **student_kw)
                score(f"maunet-light, distilled a={alpha:g}, {label}", predicted(student), student, s, seed=seed,
                      alpha=alpha)
        for weight in [float(h) for h in args.hint_weights.split(",") if h]:
            alpha = float(args.alphas.split(",")[0])
            student, s = timed(xds.distill, ens, "maunet-light", hr_ref, lr=lr_ref, alpha=alpha, hint_weight=weight,
                               unlabelled=lr_only, seed=seed, checkpoint=ckpt / f"d{seed}-h{weight}.pt", **common,
                               **student_kw)
            score(f"maunet-light, distilled a={alpha:g}, feature hints w={weight:g}"
                  + (", + coarse-only fields" if lr_only is not None else ""),
                  predicted(student), student, s, seed=seed, alpha=alpha, hint_weight=weight)
        if args.single_teacher and args.teacher_members > 1:
            alpha = float(args.alphas.split(",")[0])
            student, s = timed(xds.distill, teachers[0], "maunet-light", hr_ref, lr=lr_ref, alpha=alpha,
                               unlabelled=lr_only, seed=seed, checkpoint=ckpt / f"d{seed}-single.pt", **common,
                               **student_kw)
            score(f"maunet-light, distilled from teacher 0 only, a={alpha:g}"
                  + (", + coarse-only fields" if lr_only is not None else ""),
                  predicted(student), student, s, seed=seed, alpha=alpha)
    write(rows, args)


def write(rows, args) -> None:
    pr = getattr(args, "dataset", "tair") == "pr"
    unit = "mm/h" if pr else "K"
    head = ["model", "seeds", f"RMSE ({unit})", "to teacher", "bias", "wet-hour freq. bias" if pr else "q01 bias",
            "q99 bias", "SSIM", "params", "FLOPs/px", "ms/field",
            "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = sorted((r for r in rows if r["model"] == name), key=lambda r: r.get("seed", -1))

        def cell(k, fmt, rs=rs):
            return seed_cell(rs, k, fmt)

        net = "params" in rs[0]
        lines.append("| " + " | ".join([
            name, ",".join(str(r.get("seed", "-")) for r in rs), cell("rmse", ".4f"),
            cell("to_teacher", ".4f") if "to_teacher" in rs[0] else "-", cell("bias", ".3f"),
            cell("wet_frequency_bias" if pr else "quantile_bias_q01", ".3f"), cell("quantile_bias_q99", ".3f"), cell("ssim", ".4f"),
            f"{rs[0]['params']:,}" if net else "0", f"{rs[0]['flops_per_px'] / 1e3:.1f}k" if net else "-",
            f"{min(r['ms_per_field'] for r in rs):.2f}" if net else "-",
            f"{np.mean([r['train_s'] for r in rs]):.0f}"]) + " |")
    table = "\n".join(lines)
    n_val = max(1, round(args.reference_hours * 0.2))
    case = ("precipitation (mm/h), biased coarse input (make_wet_bias); wet hours: > 0.1 mm/h" if pr else
            "Tair, biased coarse input (bias_correction.make_bias)")
    note = (f"WFDE5 UK {case}, x{FACTOR} (1 deg -> 0.5 deg). Reference "
            f"(fine truth): hours 0-{args.reference_hours - 1} ({args.reference_hours - n_val} train, last {n_val} "
            f"validate); coarse-only: "
            + (f"hours {args.reference_hours}-{N_TRAIN - 1}" if args.reference_hours < N_TRAIN else "none")
            + f"; test: hours {N_TRAIN}-743. "
            f"Students: {args.epochs} epochs, teachers {args.teacher_epochs}; every network"
            f" x {args.samples_per_epoch} samples, batch {args.batch_size}, lr 1e-3 "
            f"cosine; teacher: {'the mean of ' if args.teacher_members > 1 else ''}{args.teacher_members} maunet "
            f"(seeds 100+) width {args.teacher_width}, depth 2, {args.teacher_convs} conv(s)/unit, dropout "
            f"{args.teacher_dropout}; student maunet-light width {args.student_width or 'default'}. Metrics in {unit} over "
            "land; to teacher: RMSE of the output against the teacher's (the members' mean); SSIM on fields whose "
            "sea is the same fill of the truth. Several seeds: mean (per seed). ms/field: "
            "one 10x14 coarse field, batch 1, 1 thread, best of 50 (best over seeds); train s: wall clock, 1 thread.\n")
    print(table + "\n\n" + note)
    (RESULTS / f"{args.results}.md").write_text(note + "\n" + table + "\n")


if __name__ == "__main__":
    main()
