"""fp32/bf16 measurements of benchmarks/suite.py: forward, predict, training step, small-domain
latency and where training time goes. Every A/B pair is timed interleaved in the same process
(ABAB...), and the median is reported, because the machine is shared."""
from __future__ import annotations

import statistics
import time

import torch

PRECISIONS = ("fp32", "bf16")


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed in turn ``repeats`` times after one warm-up each."""
    for f in fns.values():
        f()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peaks(n: int, repeats: int) -> dict:
    """GFLOP/s of an n x n matrix product per dtype (median, interleaved): the practical peak."""
    mats = {p: (torch.randn(n, n, dtype=d), torch.randn(n, n, dtype=d))
            for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    secs = interleaved({p: (lambda a=a, b=b: torch.mm(a, b)) for p, (a, b) in mats.items()}, repeats)
    return {p: 2 * n**3 / s / 1e9 for p, s in secs.items()}


def _ctx(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def forward_and_predict(m, lr, tiles, flops: float, chunk: int, batch: int, repeats: int) -> dict:
    """Bare forward over the pipeline's tiles and end-to-end ``predict`` (Dask tiles), per precision."""
    from xdownscale.engine.infer import runner_for

    net = runner_for(m, "cpu", "fp32").module  # the channels-last copy predict runs
    tiles = [(xb.contiguous(memory_format=torch.channels_last), wb, cb) for xb, wb, cb in tiles]

    def bare(p):
        def run():
            with torch.inference_mode(), _ctx(p):
                for xb, wb, cb in tiles:
                    net(xb, wb, cb)
        return run

    lazy = lr.chunk({"time": batch, "lat": chunk, "lon": chunk})

    def pred(p):
        return lambda: lazy.downscale.predict(model=m, batch_size=batch, precision=p).values

    fns = {f"bare_{p}": bare(p) for p in PRECISIONS}
    fns.update({f"predict_{p}": pred(p) for p in PRECISIONS})
    secs = interleaved(fns, repeats)
    out = {f"{k}_s": v for k, v in secs.items()}
    for p in PRECISIONS:
        out[f"bare_gflops_{p}"] = flops / secs[f"bare_{p}"] / 1e9
    return out


def train_step_rates(name: str, width: int, n_blocks: int, repeats: int, batch: int = 16, patch: int = 64) -> dict:
    """Optimizer updates/s of one training step (forward, backward, Adam) on a fixed batch of
    ``patch`` x ``patch`` fine patches, per precision; and the GFLOP/s it achieves."""
    from torch.utils.flop_counter import FlopCounterMode

    import xdownscale as xds

    torch.manual_seed(0)
    nets = {p: xds.models.DownscalingNet(name, 4, constraint="add", mean=20.0, std=5.0, width=width,
                                         n_blocks=n_blocks) for p in PRECISIONS}
    nets["bf16"].load_state_dict(nets["fp32"].state_dict())
    x = torch.randn(batch, 1, patch // 4, patch // 4)
    c = x * 5 + 20
    y = torch.nn.functional.interpolate(c, scale_factor=4) + torch.randn(batch, 1, patch, patch)
    w = torch.ones(1, 1, patch, 1)
    opts = {p: torch.optim.Adam(n.parameters(), lr=1e-4) for p, n in nets.items()}

    def step(p):
        def run():
            with _ctx(p):
                pred = nets[p](x, w, c)
            loss = ((pred - y) ** 2).mean()
            opts[p].zero_grad(set_to_none=True)
            loss.backward()
            opts[p].step()
        return run

    with FlopCounterMode(display=False) as counter:
        pred = nets["fp32"](x, w, c)
        ((pred - y) ** 2).mean().backward()
    flops = float(counter.get_total_flops())
    secs = interleaved({p: step(p) for p in PRECISIONS}, repeats)
    out = {}
    for p in PRECISIONS:
        out[f"train_updates_per_s_{p}"] = 1 / secs[p]
        out[f"train_gflops_{p}"] = flops / secs[p] / 1e9
    return out


def training_split(name: str, width: int, n_blocks: int, rounds: int, precision: str) -> dict:
    """Where the time of the real training loop goes: the batches drawn from the patch stream
    (random windows, coarsening, normalisation, collation: data preparation) against the
    optimizer steps, timed around each part of ``rounds`` batches of 16 64x64 patches."""
    from xdownscale.config import TrainConfig
    from xdownscale.engine.precision import autocast
    from xdownscale.engine.setup import prepare
    from xdownscale.engine.trainer import make_loader, masked_loss
    from xdownscale.models import DownscalingNet
    from xdownscale.testing import synthetic_field

    hr = synthetic_field("tcwv", times=24, ny=256, nx=256, seed=0)
    cfg = TrainConfig(batch_size=16, patch_size=64, samples_per_epoch=16 * rounds, precision=precision,
                      progress=False)
    setup = prepare(hr, model=name, factor=4, constraint="softmax", cfg=cfg, model_kwargs=dict(width=width,
                    n_blocks=n_blocks), checkpoint="/dev/null")
    torch.manual_seed(0)
    net = DownscalingNet(**setup.network)
    train_ds, _ = setup.datasets()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    device = torch.device("cpu")
    data_s = net_s = 0.0
    n = 0
    for epoch in range(2):  # the first pass warms up (allocations, oneDNN kernels)
        train_ds.set_epoch(epoch)
        it = iter(make_loader(train_ds, cfg, device))
        data_s = net_s = 0.0
        n = 0
        while True:
            t0 = time.perf_counter()
            try:
                x, y, w, c = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            with autocast(precision, device):
                pred = net(x, w, c)
            loss = masked_loss(pred, y, net.std, "mse")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            data_s += t1 - t0
            net_s += t2 - t1
            n += 1
    return {"precision": precision, "batches": n, "data_s": data_s, "net_s": net_s,
            "updates_per_s": n / (data_s + net_s), "data_share": data_s / (data_s + net_s)}


def small_latency(m, repeats: int, times: int = 168, ny: int = 8, nx: int = 12) -> dict:
    """One warm ``predict(...).values`` call on ``times`` in-memory fields of ny x nx coarse cells,
    per precision, against a plain forward of the same module on the same frames in one batch (the
    module as the user holds it, and its channels-last copy that predict runs)."""
    from xdownscale.engine.infer import runner_for
    from xdownscale.testing import synthetic_field

    f = m.factor
    lr = synthetic_field("tcwv", times=times, ny=ny * f, nx=nx * f, seed=0).downscale.coarsen(f).compute()
    stats = m.meta["normalization"]["target"]
    x = torch.from_numpy(((lr.values - stats["mean"]) / stats["std"]).astype("float32")[:, None])
    c = torch.from_numpy(lr.values.astype("float32")[:, None])
    w = torch.ones(1, 1, ny * f, 1)
    cl = runner_for(m, "cpu", "fp32").module
    xcl = x.contiguous(memory_format=torch.channels_last)

    def plain(net, xx, p):
        def run():
            with torch.inference_mode(), _ctx(p):
                net(xx, w, c)
        return run

    fns = {}
    for p in PRECISIONS:
        fns[f"predict_{p}"] = (lambda p=p: lr.downscale.predict(model=m, precision=p).values)
        fns[f"plain_{p}"] = plain(m.module, x, p)
        fns[f"plain_cl_{p}"] = plain(cl, xcl, p)
    secs = interleaved(fns, repeats)
    return {"fields": times, "coarse": [ny, nx], "fine_mpx": times * ny * nx * f * f / 1e6,
            **{f"{k}_s": v for k, v in secs.items()}}


def precision_tables(rows: list[dict], peaks: dict, split: list[dict], threads: int) -> str:
    """Markdown tables of the fp32/bf16 measurements."""
    lines = ["### fp32 / bf16 (medians of interleaved runs)", "",
             f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s ({threads} threads)", "",
             "| model | bare forward fp32 / bf16 (s) | speed-up | GFLOP/s fp32 (% of peak) | GFLOP/s bf16 (% of peak) | "
             "predict fp32 / bf16 (s) | speed-up | train updates/s fp32 / bf16 | train GFLOP/s fp32 / bf16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['bare_fp32_s']:.3f} / {r['bare_bf16_s']:.3f} | "
            f"{r['bare_fp32_s'] / r['bare_bf16_s']:.2f}x | {r['bare_gflops_fp32']:.0f} "
            f"({100 * r['bare_gflops_fp32'] / peaks['fp32']:.0f}%) | {r['bare_gflops_bf16']:.0f} "
            f"({100 * r['bare_gflops_bf16'] / peaks['bf16']:.0f}%) | {r['predict_fp32_s']:.3f} / "
            f"{r['predict_bf16_s']:.3f} | {r['predict_fp32_s'] / r['predict_bf16_s']:.2f}x | "
            f"{r['train_updates_per_s_fp32']:.1f} / {r['train_updates_per_s_bf16']:.1f} | "
            f"{r['train_gflops_fp32']:.0f} / {r['train_gflops_bf16']:.0f} |")
    lines += ["", "Small-domain latency: one warm `predict(...).values` call, in-memory input",
              "", "| model | fields x coarse cells | predict fp32 / bf16 (s) | plain forward fp32 / bf16 (s) | "
              "plain channels-last fp32 / bf16 (s) | predict / plain (fp32, bf16) |", "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["latency"]
        lines.append(
            f"| {r['model']} | {s['fields']} x {s['coarse'][0]}x{s['coarse'][1]} | {s['predict_fp32_s']:.3f} / "
            f"{s['predict_bf16_s']:.3f} | {s['plain_fp32_s']:.3f} / {s['plain_bf16_s']:.3f} | "
            f"{s['plain_cl_fp32_s']:.3f} / {s['plain_cl_bf16_s']:.3f} | "
            f"{s['predict_fp32_s'] / s['plain_fp32_s']:.2f}, {s['predict_bf16_s'] / s['plain_bf16_s']:.2f} |")
    lines += ["", "Training throughput of the real loop (patch stream + optimizer step), batch 16 of 64x64:", "",
              "| model | precision | updates/s | data preparation | network step | data share |",
              "|---|---|---|---|---|---|"]
    for s in split:
        lines.append(f"| {s['model']} | {s['precision']} | {s['updates_per_s']:.1f} | {s['data_s']:.2f} s | "
                     f"{s['net_s']:.2f} s | {100 * s['data_share']:.0f}% |")
    return "\n".join(lines)
