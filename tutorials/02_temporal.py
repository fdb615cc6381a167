"""Temporal models: ConvGRU over time windows, and new time steps with deep voxel flow.

1. Train ``convgru`` (a window of 3 consecutive hours per output hour) and
   ``flowconvgru`` (voxel-flow time interpolation + ConvGRU, end to end) on a
   synthetic hourly series whose features drift in time.
2. Downscale a held-out series in space (every hour in, every hour out).
3. Feed only every 3rd hour and ask for ``time_factor=3``: two new frames per
   interval, with the right time stamps and a ``synthesised`` flag; compare
   them with linear time interpolation.
4. Gaps in the time axis are split (with a warning), never bridged.

Set XDOWNSCALE_TUTORIAL_FAST=1 for a seconds-long smoke run (used by the tests).

    python tutorials/02_temporal.py [OUT_DIR]
"""
import os
import sys
import tempfile
import warnings
from pathlib import Path

import xdownscale as xds
from xdownscale.testing import synthetic_field

fast = os.environ.get("XDOWNSCALE_TUTORIAL_FAST") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xds-temporal-"))
out.mkdir(parents=True, exist_ok=True)

# 1. An hourly (time, lat, lon) series; the last 10 hours are held out.
hr = synthetic_field("tcwv", times=22 if fast else 96, ny=32 if fast else 64, nx=32 if fast else 96, drift=1.5)
train, test = hr.isel(time=slice(0, -10)), hr.isel(time=slice(-10, None))
small = dict(epochs=1 if fast else 12, batch_size=8, patch_size=16 if fast else 32, channels=8 if fast else 32,
             residual_blocks=1 if fast else 3, window=3, samples_per_epoch=16 if fast else None, seed=0,
             progress=not fast)
convgru = train.downscale.fit(model="convgru", factor=4, constraint="softmax", checkpoint=out / "convgru.pt", **small)
flow = train.downscale.fit(model="flowconvgru", factor=4, constraint="softmax", time_factor=3,
                           flow_channels=4 if fast else 16, checkpoint=out / "flowconvgru.pt", **small)

# 2. Space only: one output per input hour; every frame conserves its coarse cells exactly.
lr = test.downscale.coarsen(4)
for name, model in (("bicubic", "bicubic"), ("convgru", convgru), ("flowconvgru", flow)):
    sr = lr.downscale.predict(model=model, factor=4)
    s = xds.evaluate(sr, test, lr=lr)
    print(f"{name:12s} RMSE {float(s.rmse):.3f}  mass violation {float(s.mass_violation):.1e}")

# 3. Space and time: hours 0, 3, 6, 9 in; hours 0..9 out. New frames conserve the voxel-flow
#    interpolation of the coarse field at their time (no observed coarse field exists there).
inputs = lr.isel(time=slice(0, None, 3))
st = inputs.downscale.predict(model=flow, time_factor=3)
print(st.time.values, st.synthesised.values)
middle = st.synthesised.values
linear = inputs.downscale.predict(model="bicubic", factor=4).interp(time=st.time, method="linear")
for name, p in (("flowconvgru", st), ("bicubic + linear in time", linear)):
    err = float(((p.isel(time=middle) - test.isel(time=middle).values) ** 2).mean() ** 0.5)
    print(f"new frames, {name:26s} RMSE {err:.3f}")

# 4. A gap (hours 4-5 missing): each contiguous run is predicted on its own.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gappy = lr.isel(time=[0, 1, 2, 3, 6, 7, 8, 9]).downscale.predict(model=convgru).compute()
print([str(w.message) for w in caught if "gap" in str(w.message)])
xds.write(st, out / "tcwv_x4_time3.nc", mode="w")
print("outputs in", out)
