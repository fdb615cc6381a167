"""Speed and peak memory of predict under several memory budgets, each in a fresh process.

    python benchmarks/budget.py [--budgets 200MB,400MB,1GB,4GB] [--frames 32] [--coarse 64]
                                [--path api|cli|dask] [--threads N] [--repeat 1]

Prints one JSON line per run (benchmarks/_budget_child.py): seconds of predict + Zarr write,
the baseline (imports, input, model) and the peak RSS over it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="200MB,400MB,1GB,4GB")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--coarse", type=int, default=64)
    ap.add_argument("--path", default="api")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(args.repeat):
        for budget in args.budgets.split(","):
            cmd = [sys.executable, os.path.join(HERE, "_budget_child.py"), args.path, str(args.frames),
                   str(args.coarse), budget, str(args.threads), str(args.width)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            print(res.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
