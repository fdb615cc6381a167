"""Wall time of the default ``fit`` on a small archive: hourly fields of 32 x 48 fine cells at x4
(the shape of a 0.25-degree regional reanalysis case), synthetic 2 m temperature.

    PYTHONPATH=. python benchmarks/default_fit_time.py --times 576
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from xdownscale.testing import synthetic_field


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--times", type=int, default=576)
    p.add_argument("--factor", type=int, default=4)
    args = p.parse_args()
    hr = synthetic_field("t2m", times=args.times, ny=32, nx=48, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = hr.downscale.fit(factor=args.factor, constraint="softmax", progress=False, checkpoint=Path(tmp) / "m.pt")
        seconds = time.perf_counter() - t0
    tr = m.meta["training"]
    print(f"default fit ({m.model_name}, {m.meta['network'].get('n_blocks')} blocks, batch "
          f"{tr['config']['batch_size']}) on {args.times} fields of 32x48 at x{args.factor}: {seconds:.1f} s, "
          f"{tr['updates']} updates, {len(tr['history'])} validations")


if __name__ == "__main__":
    main()
