"""Quick start: coarsen, train a constrained CNN, predict, score, write and map.

Runs on the synthetic TCWV field shipped with xdownscale (no download). Set
XDOWNSCALE_TUTORIAL_FAST=1 for a seconds-long smoke run (used by the tests).

    python tutorials/01_quickstart.py [OUT_DIR]
"""
import os
import sys
import tempfile
from pathlib import Path

import xdownscale as xds
from xdownscale.testing import synthetic_field

fast = os.environ.get("XDOWNSCALE_TUTORIAL_FAST") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xds-tutorial-"))
out.mkdir(parents=True, exist_ok=True)

# 1. A fine field: (time, lat, lon), CF attributes, descending latitude like ERA5.
hr = synthetic_field("tcwv", times=12 if fast else 48, ny=64 if fast else 128, nx=96 if fast else 192)
train, test = hr.isel(time=slice(0, -4)), hr.isel(time=slice(-4, None))

# 2. Exact area-weighted coarsening: the coarse cells are the cos(lat)-weighted block means.
lr = test.downscale.coarsen(factor=4)
print(lr.dims, lr.shape, lr.attrs["cell_methods"])

# 3. Train a CNN whose softmax layer conserves every coarse cell's mass exactly.
model = train.downscale.fit(model="cnn", factor=4, constraint="softmax",
                            epochs=2 if fast else 15, batch_size=16, patch_size=32 if fast else 64,
                            width=16 if fast else 32, n_blocks=2 if fast else 4, seed=0,
                            checkpoint=out / "cnn_softmax.pt", progress=not fast)
print(model)

# 4. Predict lazily (Dask), compare with bicubic interpolation.
sr = lr.downscale.predict(model=model)
bicubic = lr.downscale.predict(model="bicubic", factor=4)
scores = {name: xds.evaluate(p, test, lr=lr) for name, p in (("cnn+softmax", sr), ("bicubic", bicubic))}
for name, s in scores.items():
    print(f"{name:12s} RMSE {float(s.rmse):.3f}  SSIM {float(s.ssim):.4f}  "
          f"mass violation {float(s.mass_violation):.1e}")

# 5. Write CF-compliant NetCDF and Zarr (atomically), and draw a map.
xds.write(sr, out / "tcwv_x4.nc", mode="w")
xds.write(sr, out / "tcwv_x4.zarr", mode="w")
xds.plot.compare(lr, sr, test, path=out / "map.png")
print("outputs in", out)
