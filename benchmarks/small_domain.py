"""One warm ``predict`` on many small in-memory fields: the in-memory path against the Dask path.

168 fields of 8 x 12 coarse cells at x4 (the case of issue 17), cnn and espcn of width 64 with 4
blocks. Timed interleaved in one process (medians): ``dask path`` emulates the path every input
took before (the field chunked into Dask, 16 frames per network pass, the runner rebuilt per
call); ``in memory`` is today's default, in fp32 and in bf16.

    PYTHONPATH=. python benchmarks/small_domain.py --threads 2 --repeats 7
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _precision_parts import interleaved  # noqa: E402
from _suite_parts import make_model  # noqa: E402


def measure(name: str, repeats: int, n_blocks: int = 4) -> dict:
    from xdownscale.engine import field_predict, infer
    from xdownscale.testing import synthetic_field

    m = make_model(name, 64, n_blocks)
    lr = synthetic_field("tcwv", times=168, ny=32, nx=48, seed=0).downscale.coarsen(4).compute()

    def dask_path():
        saved = field_predict.PASS_CELLS
        field_predict.PASS_CELLS = 0  # batches of batch_size=16 frames, as before
        infer._RUNNERS.clear()  # the channels-last copy made per call, as before
        try:
            return lr.chunk().downscale.predict(model=m).values
        finally:
            field_predict.PASS_CELLS = saved

    fns = {"dask path fp32": dask_path, "in memory fp32": lambda: lr.downscale.predict(model=m).values,
           "in memory bf16": lambda: lr.downscale.predict(model=m, precision="bf16").values}
    np.testing.assert_allclose(fns["dask path fp32"](), fns["in memory fp32"](), rtol=1e-5, atol=1e-4)
    return interleaved(fns, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--models", default="cnn,espcn", help="comma-separated bodies (width 64)")
    ap.add_argument("--n-blocks", type=int, default=4, help="residual blocks (fit's default body: espcn with 6)")
    ap.add_argument("--out", default=str(HERE / "results" / "small_domain.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("XDOWNSCALE_HOME", tempfile.mkdtemp(prefix="xds-small-"))
    load = os.getloadavg()[0]
    lines = [f"168 fields of 8x12 coarse cells, x4; {args.threads} torch threads; medians of {args.repeats} "
             f"interleaved calls; load average at start {load:.1f}",
             f"command: `python benchmarks/small_domain.py {' '.join(sys.argv[1:])}`", "",
             "| model | Dask path fp32 (s) | in memory fp32 (s) | in memory bf16 (s) |", "|---|---|---|---|"]
    for name in args.models.split(","):
        r = measure(name, args.repeats, args.n_blocks)
        lines.append(f"| {name} ({args.n_blocks} blocks) | {r['dask path fp32']:.3f} | {r['in memory fp32']:.3f} | {r['in memory bf16']:.3f} |")
        print(lines[-1], flush=True)
    lines.append(f"\nload average at end {os.getloadavg()[0]:.1f}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
