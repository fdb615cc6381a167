"""The benchmark suite: one table per model (every registered deterministic model that
DownscalingNet wraps, e.g. cnn and espcn).

Per model: training samples/s; inference HR megapixels/s; end-to-end ``predict`` (Dask
tiles, halos, normalisation, computed to numpy) over a bare forward pass of the same
network over the same halo-padded tiles and batches (the pipeline overhead); achieved
GFLOP/s (convolution FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode``)
against a measured float32 matmul peak (``torch.mm``); peak RSS of predict + Zarr write
for two output sizes (a fresh subprocess each); Zarr write throughput. The ``precision`` part:
bare forward, predict and a training step in fp32 and bf16 (GFLOP/s against the measured matmul
peak of each dtype), one warm small-domain predict against a plain forward, and the real training
loop's time split between data preparation and the network (``_precision_parts.py``).

    python benchmarks/suite.py            # full suite (< 8 min on a quiet 2-core machine)
    python benchmarks/suite.py --quick    # smaller fields (~2 min)
    python benchmarks/suite.py --models cnn --threads 2
    python benchmarks/suite.py --models cnn,espcn --parts precision --repeats 7

Writes benchmarks/results/suite.md and suite.json (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _precision_parts as pp  # noqa: E402
from _suite_parts import (  # noqa: E402
    bare_forward,
    count_flops,
    make_model,
    matmul_peak,
    predict_seconds,
    suite_models,
    tiles_for,
    train_rate,
    zarr_write_rate,
)

SIZES = {  # coarse side, time steps, coarse tile side, time steps per tile batch
    "quick": dict(train_times=8, train_side=128, samples=64, infer_side=64, infer_times=8, chunk=32,
                  rss=((256, 4), (512, 4)), zarr_times=4, zarr_side=512, mm=1536, split_rounds=20),
    "full": dict(train_times=16, train_side=256, samples=256, infer_side=128, infer_times=8, chunk=64,
                 rss=((512, 4), (1024, 4)), zarr_times=8, zarr_side=1024, mm=2048, split_rounds=40),
}


def peak_rss(model: str, side: int, times: int, chunk: int) -> dict:
    """Peak RSS of predict + Zarr write in a fresh process (small network: memory, not speed)."""
    child = HERE / "_rss_child.py"
    res = subprocess.run([sys.executable, str(child), model, str(side), str(times), str(chunk)],
                         capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(res.stdout.strip().splitlines()[-1])


PARTS = ("train", "infer", "zarr", "rss", "precision")
NAN = float("nan")


def bench_model(name: str, size: dict, width: int, n_blocks: int, batch: int, peak: dict, parts) -> dict:
    row: dict = {"model": name, "width": width, "n_blocks": n_blocks, "train_samples_per_s": NAN,
                 "zarr_mb_per_s": NAN, "rss": []}
    row.update({k: NAN for k in ("hr_megapixels", "bare_s", "predict_s", "bare_mp_per_s", "predict_mp_per_s",
                                 "predict_sync_s", "pipeline_ratio", "threaded_ratio", "gflop", "bare_gflops",
                                 "predict_gflops", "peak_fraction")})
    if "train" in parts:
        row["train_samples_per_s"] = train_rate(name, size, width, n_blocks)
    if "infer" in parts:
        row.update(bench_inference(name, size, width, n_blocks, batch, peak))
    if "zarr" in parts:
        row["zarr_mb_per_s"] = zarr_write_rate(size["zarr_times"], size["zarr_side"])
    if "rss" in parts:
        row["rss"] = [peak_rss(name, side, times, 64) for side, times in size["rss"]]
    return row


def bench_inference(name: str, size: dict, width: int, n_blocks: int, batch: int, peak: dict) -> dict:
    from xdownscale.testing import synthetic_field

    m = make_model(name, width, n_blocks)
    hr = synthetic_field("tcwv", times=size["infer_times"], ny=size["infer_side"] * 4, nx=size["infer_side"] * 4,
                         seed=1)
    lr = hr.downscale.coarsen(4).compute()
    halo = m.module.receptive_radius
    tiles = tiles_for(m, lr, size["chunk"], halo, batch)
    bare = bare_forward(m, tiles)
    flops = count_flops(m, tiles)
    pipe = predict_seconds(m, lr, size["chunk"], batch)
    sync = predict_seconds(m, lr, size["chunk"], batch, scheduler="sync")
    mp = hr.size / 1e6
    return dict(hr_megapixels=mp, bare_s=bare, predict_s=pipe, bare_mp_per_s=mp / bare, predict_mp_per_s=mp / pipe,
                predict_sync_s=sync, pipeline_ratio=sync / bare, threaded_ratio=pipe / bare, gflop=flops / 1e9,
                bare_gflops=flops / bare / 1e9,
                predict_gflops=flops / pipe / 1e9, peak_fraction=flops / bare / 1e9 / peak["torch_threads"],
                predict_peak_fraction=flops / pipe / 1e9 / peak["all_cores"])


def bench_precision(name: str, size: dict, width: int, n_blocks: int, batch: int, repeats: int) -> dict:
    from xdownscale.testing import synthetic_field

    m = make_model(name, width, n_blocks)
    hr = synthetic_field("tcwv", times=size["infer_times"], ny=size["infer_side"] * 4, nx=size["infer_side"] * 4,
                         seed=1)
    lr = hr.downscale.coarsen(4).compute()
    tiles = tiles_for(m, lr, size["chunk"], m.module.receptive_radius, batch)
    row = {"model": name, **pp.forward_and_predict(m, lr, tiles, count_flops(m, tiles), size["chunk"], batch, repeats)}
    row.update(pp.train_step_rates(name, width, n_blocks, repeats))
    row["latency"] = pp.small_latency(m, repeats)
    row["split"] = [dict(pp.training_split(name, width, n_blocks, size["split_rounds"], p), model=name)
                    for p in pp.PRECISIONS]
    return row


def table(row: dict, peak: dict, threads: int) -> str:
    lines = [f"### {row['model']} (width {row['width']}, {row['n_blocks']} blocks, x4, {threads} torch threads)", "",
             "| measure | value |", "|---|---|",
             f"| training | {row['train_samples_per_s']:.1f} samples/s (64x64 fine patches, batch 16) |",
             f"| inference, end-to-end predict | {row['predict_mp_per_s']:.3f} HR MP/s "
             f"({row['hr_megapixels']:.2f} MP in {row['predict_s']:.2f} s) |",
             f"| inference, bare forward (same tiles) | {row['bare_mp_per_s']:.3f} HR MP/s ({row['bare_s']:.2f} s) |",
             f"| predict on 1 thread (sync scheduler) | {row['hr_megapixels'] / row['predict_sync_s']:.3f} HR MP/s "
             f"({row['predict_sync_s']:.2f} s) |",
             f"| pipeline overhead: predict (1 thread) / bare forward (same threads) | {row['pipeline_ratio']:.3f} "
             f"({100 * (row['pipeline_ratio'] - 1):+.1f}%); threaded predict / bare {row['threaded_ratio']:.3f} |",
             f"| achieved (bare / predict) | {row['bare_gflops']:.1f} / {row['predict_gflops']:.1f} GFLOP/s "
             f"({row['gflop']:.1f} GFLOP counted) |",
             f"| share of the float32 matmul peak | bare forward {100 * row['peak_fraction']:.0f}% (of "
             f"{peak['torch_threads']:.1f} GFLOP/s, same threads), predict "
             f"{100 * row.get('predict_peak_fraction', NAN):.0f}% (of {peak['all_cores']:.1f} GFLOP/s, all cores) |",
             f"| Zarr write | {row['zarr_mb_per_s']:.0f} MB/s |"]
    for r in row["rss"]:
        lines.append(f"| peak RSS, predict + Zarr write of {r['output_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB "
                     f"({r['seconds']:.1f} s) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller fields (about 2 minutes)")
    ap.add_argument("--models", help="comma-separated models (default: every registered deterministic model)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"what to measure: {','.join(PARTS)}")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each fp32/bf16 timing")
    ap.add_argument("--out", default=str(HERE / "results" / "suite"), help="output path without suffix")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp(prefix="xds-bench-"))
    size = SIZES["quick" if args.quick else "full"]
    models = args.models.split(",") if args.models else suite_models()
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # bare forward runs on torch's threads; predict runs Dask tasks on every core, each with torch's threads
    cores = os.cpu_count() or 1
    peak = {"torch_threads": matmul_peak(size["mm"]), "all_cores": matmul_peak(size["mm"], cores)}
    head = (f"## xdownscale benchmark suite ({'quick' if args.quick else 'full'})\n\n"
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{threads} torch threads; load average at start {os.getloadavg()[0]:.1f}\n"
            f"float32 matmul peak: {peak['torch_threads']:.1f} GFLOP/s on {threads} thread(s), "
            f"{peak['all_cores']:.1f} GFLOP/s on {cores} cores\n"
            f"command: `python benchmarks/suite.py {' '.join(sys.argv[1:])}`\n")
    print(head, flush=True)
    rows, texts = [], []
    parts = args.parts.split(",")
    if set(parts) - {"precision"}:
        for name in models:
            row = bench_model(name, size, args.width, args.n_blocks, args.batch_size, peak, parts)
            rows.append(row)
            texts.append(table(row, peak, threads))
            print(texts[-1] + "\n", flush=True)
    prec_rows: list = []
    if "precision" in parts:
        peaks = pp.matmul_peaks(size["mm"], args.repeats)
        prec_rows = [bench_precision(name, size, args.width, args.n_blocks, args.batch_size, args.repeats)
                     for name in models]
        texts.append(pp.precision_tables(prec_rows, peaks, [s for r in prec_rows for s in r["split"]], threads))
        print(texts[-1] + "\n", flush=True)
    tail = f"\nsuite took {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()[0]:.1f}\n"
    print(tail)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(head + "\n" + "\n\n".join(texts) + "\n" + tail)
    out.with_suffix(".json").write_text(json.dumps({"matmul_peak_gflops": peak, "threads": threads, "cores": cores,
                                                    "rows": rows, "precision_rows": prec_rows}, indent=1,
                                                   default=float))


if __name__ == "__main__":
    main()
