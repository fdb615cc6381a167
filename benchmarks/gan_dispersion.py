"""Is the gan ensemble under-dispersed on hours it trained on too, or only on later test hours?

One ``fit(train, model="gan", factor=4, constraint="add", **--fit)`` on the skill split of
``skill.py`` (WFDE5 Tair, train 558 h, test 186 h), then 10 members (seed 7) on the last 72
training hours and on the test hours. Prints spread / skill (ensemble standard deviation over the
RMSE of the ensemble mean, times sqrt((M + 1) / M); 1 is calibrated), the mean bias of the ensemble
mean and the CRPS (plain ensemble estimator), over the land cells.

    PYTHONPATH=. python benchmarks/gan_dispersion.py [--threads 1] [--fit '{"adv_weight": 0.0}']
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

MEMBERS = 10


def dispersion(model, fine) -> str:
    lr = xds.coarsen(fine, 4)
    ens = xds.predict(lr, model=model, like=fine, members=MEMBERS, seed=7).values  # (member, time, y, x)
    truth = fine.values
    land = np.isfinite(truth)
    mean = ens.mean(0)
    rmse = np.sqrt(np.mean(((mean - truth) ** 2)[land]))
    spread = np.sqrt(np.mean(ens.var(0, ddof=1)[land]))
    bias = np.mean((mean - truth)[land])
    skill_term = np.mean(np.abs(ens - truth[None]), axis=0)
    spread_term = np.mean(np.abs(ens[:, None] - ens[None]), axis=(0, 1))
    crps = np.mean((skill_term - 0.5 * spread_term)[land])
    ratio = spread / rmse * np.sqrt((MEMBERS + 1) / MEMBERS)
    return f"spread/skill {ratio:.3f} (spread {spread:.3f} K, RMSE of the mean {rmse:.3f} K, bias {bias:+.3f} K), CRPS {crps:.4f} K"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fit", default="{}", help="JSON options for the gan fit")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, test = skill.field("Tair", "wfde5", 4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = xds.fit(train, model="gan", factor=4, constraint="add", progress=False, checkpoint=Path(tmp) / "g.pt",
                    **json.loads(args.fit))
        print(f"gan {args.fit}: best round {m.meta['training'].get('best_epoch')}, {time.perf_counter() - t0:.0f} s",
              flush=True)
        print("last 72 training hours: " + dispersion(m, train.isel(time=slice(-72, None))), flush=True)
        print("test hours:             " + dispersion(m, test), flush=True)


if __name__ == "__main__":
    main()
