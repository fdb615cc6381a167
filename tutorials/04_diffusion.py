"""Diffusion ensembles: a DPDM-style denoiser over a constrained CNN (CorrDiff's residual mode).

1. train a small constrained CNN (the deterministic first guess);
2. train a diffusion model on random fine patches that learns the CNN's residual,
   conditioned on the interpolated coarse field and on orography (the static covariate);
3. draw an ensemble with DDIM in a few steps, over a domain larger than any training patch
   (overlapping tiles blended at every step), and project every member onto the coarse field;
4. sample the same checkpoint with another scheduler (DDPM) and step count;
5. score: RMSE of one member and of the ensemble mean, CRPS, spread/skill, rank histogram.

Runs on synthetic fields (no download). XDOWNSCALE_TUTORIAL_FAST=1 makes it a seconds-long
smoke run (used by the tests).

    python tutorials/04_diffusion.py [OUT_DIR]
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import xdownscale as xds
from xdownscale.metrics import rank_histogram, spread_skill
from xdownscale.testing import synthetic_field

fast = os.environ.get("XDOWNSCALE_TUTORIAL_FAST") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xds-diffusion-"))
out.mkdir(parents=True, exist_ok=True)

# 1. A fine 2 m temperature field and a static "orography" on the same grid.
ny, nx = (32, 48) if fast else (96, 128)
hr = synthetic_field("t2m", times=10 if fast else 30, ny=ny, nx=nx, seed=1)
orog = (hr.isel(time=0, drop=True) * 0 + np.hypot(*np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny))) * 800)
orog = orog.rename("orog").assign_attrs(units="m")
train, test = hr.isel(time=slice(0, -2)), hr.isel(time=slice(-2, None))

cnn = train.downscale.fit(model="cnn", factor=4, constraint="add", epochs=2 if fast else 10, width=8 if fast else 32,
                          n_blocks=1 if fast else 4, patch_size=16 if fast else 64, batch_size=8, seed=0,
                          checkpoint=out / "cnn_add.pt", progress=False)

# 2. The diffusion model: patches of 128 fine cells by default (DPDM); small here to run anywhere.
#    max_minutes bounds the training wall time on a CPU.
diff = xds.fit(train, model="diffusion", factor=4, base=cnn, covariates=orog, patch=16 if fast else 64,
               base_channels=8 if fast else 32, channel_mults=(1, 2) if fast else (1, 2, 2),
               epochs=2 if fast else 30, batch_size=8, samples_per_epoch=16 if fast else 128,
               timesteps=100 if fast else 1000, sample_steps=4 if fast else 10, max_minutes=0.5 if fast else 5,
               seed=0, checkpoint=out / "diffusion.pt", progress=not fast)
print(diff, "residual scale", round(diff.meta["network"]["residual_scale"], 4))

# 3. Ten members (batched) with DDIM, tiles of the training patch blended with raised-cosine weights;
#    every member hard-projected onto the coarse cells ("add"). Test domain = the whole field.
lr = test.downscale.coarsen(4)
timing = {}
ens = xds.predict(lr, model=diff, covariates=orog, members=4 if fast else 10, steps=4 if fast else 10, seed=0,
                  scheduler="ddim", constraint="add", timing=timing, like=test)
print(ens.dims, ens.shape, f"{timing['per_member_s']:.2f} s per member per field,",
      f"{timing['per_step_s']:.2f} s per step (all members)")

# 4. The same checkpoint, another scheduler and step count: ancestral DDPM.
ddpm = xds.predict(lr, model=out / "diffusion.pt", covariates=orog, members=2, steps=8 if fast else 50, seed=0,
                   scheduler="ddpm", constraint="add", like=test)
print("DDPM sampler:", ddpm.attrs["xdownscale_sampler"])

# 5. Scores. The ensemble mean is one call away: ens.mean("member").
bicubic = lr.downscale.predict(model="bicubic", factor=4)
rows = {"bicubic": xds.evaluate(bicubic, test), "cnn+add": xds.evaluate(cnn.predict(lr), test),
        "one member": xds.evaluate(ens.isel(member=0), test),
        f"{ens.sizes['member']}-member mean": xds.evaluate(ens, test, lr=lr, member_dim="member")}
for name, s in rows.items():
    crps = f"  CRPS {float(s.crps):.4f}" if "crps" in s else ""
    print(f"{name:16s} RMSE {float(s.rmse):.4f}  SSIM {float(s.ssim):.4f}{crps}")
print("spread/skill", round(float(spread_skill(ens, test).ratio), 3),
      "rank histogram", rank_histogram(ens, test).values)
print("largest mass violation of a member:", float(xds.evaluate(ens, test, lr=lr).mass_violation))
xds.write(ens, out / "t2m_x4_ensemble.nc", mode="w")
print("outputs in", out, f"({time.strftime('%H:%M:%S')})")
