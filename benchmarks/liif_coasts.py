"""liif on WFDE5 at x2 and x4, by prediction constraint, split into wholly-land and coastal blocks.

One ``fit(train, model="liif", **--fit)`` on the skill split of ``skill.py`` (train 558 h, test
186 h; ``--var Tair`` or ``pr``), then ``predict(factor=k, constraint=c)`` for c in none, add,
mult, softmax. RMSE over the sea-filled bicubic of each factor, on all land cells, on the land
cells of blocks that are wholly land ("interior") and on the rest ("coast"), and the share of
land cells below zero.

    PYTHONPATH=. python benchmarks/liif_coasts.py [--var pr] [--threads 2] [--fit '{"integer_share": 1.0}']
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import skill  # noqa: E402

import xdownscale as xds  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--var", default="Tair", choices=tuple(skill.FILES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fit", default="{}", help="JSON options for the liif fit")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, test = skill.field(args.var, "wfde5", 4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = xds.fit(train, model="liif", progress=False, checkpoint=Path(tmp) / "m.pt", **json.loads(args.fit))
        print(f"liif {args.var} {args.fit}: {m.meta['training'].get('updates')} updates, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        truth = test.values
        land = np.isfinite(truth)
        for k in (2, 4):
            lr = xds.coarsen(test, k)
            t, h, w = truth.shape
            whole = land.reshape(t, h // k, k, w // k, k).all(axis=(2, 4))
            interior = np.repeat(np.repeat(whole, k, 1), k, 2) & land
            bic = xds.predict(skill.filled(lr), model="bicubic", factor=k, like=test).values
            for c in ("none", "add", "mult", "softmax"):
                kw = {} if c == "none" else {"constraint": c}
                out = xds.predict(lr, model=m, like=test, factor=k, **kw).values

                def ratio(cells):
                    return np.sqrt(np.mean((out - truth)[cells] ** 2)) / np.sqrt(np.mean((bic - truth)[cells] ** 2))

                print(f"x{k} {c:<8} all {ratio(land):.3f}  interior {ratio(interior):.3f}  "
                      f"coast {ratio(land & ~interior):.3f}  below zero {np.mean(out[land] < 0):.3f}  "
                      f"(interior share {interior.sum() / land.sum():.2f})", flush=True)


if __name__ == "__main__":
    main()
