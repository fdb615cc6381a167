"""Bias correction and downscaling in one step: quantile mapping vs MAUNet, distillation, export.

A coarse "model" field that is too warm, has too much variance and a latitude-
dependent error is downscaled x2 onto a fine reference grid. We compare
bicubic interpolation, bicubic + quantile delta mapping (statistical), a MAUNet
teacher (the mean of two MAUNets) and a MAUNet-Light student distilled from it
(deep), with the bias metrics of ``evaluate``; then export the student to ONNX
for operational use. As often in practice, the fine reference covers only part
of the period the coarse source covers: the teacher also downscales the
coarse-only fields, and the student learns from those outputs too.

Synthetic data (no download). XDOWNSCALE_TUTORIAL_FAST=1 gives a seconds-long
smoke run (used by the tests). For the real-data version of this comparison
(WFDE5 UK), see benchmarks/bias_correction.py.

    python tutorials/05_bias_correction.py [OUT_DIR]
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

# 1. A fine reference and a biased coarse source on the nested 2x coarser grid.
hr = synthetic_field("t2m", times=24 if fast else 96, ny=32 if fast else 64, nx=32 if fast else 96, seed=0)
lr = xds.coarsen(hr, 2)
biased = (lr + 1.0 + 0.3 * (lr - 285.0) + 0.1 * (lr.lat - 45.0)).transpose(*lr.dims)
biased = biased.rename(lr.name).assign_attrs(lr.attrs)
n_train = int(0.75 * hr.sizes["time"])
hr_train, hr_test = hr.isel(time=slice(0, n_train)), hr.isel(time=slice(n_train, None))
lr_train, lr_test = biased.isel(time=slice(0, n_train)), biased.isel(time=slice(n_train, None))
# the reference (truth) covers the first half of the training period, the coarse source all of it
n_ref = n_train // 2
hr_ref, lr_ref, lr_only = hr_train.isel(time=slice(0, n_ref)), lr_train.isel(time=slice(0, n_ref)), \
    lr_train.isel(time=slice(n_ref, None))

# 2. Statistical baseline: bicubic interpolation, then quantile delta mapping per fine cell.
qdm = xds.bias_correct(lr_test, ref=hr_ref, hist=lr_ref, method="qdm", n_quantiles=20)
bicubic = xds.predict(lr_test, model="bicubic", factor=2, like=hr_test)

# 3. Deep: two MAUNets trained on the real pair (lr=biased source, hr=reference), whose mean is the teacher ...
opts = dict(epochs=2 if fast else 30, batch_size=8, patch_size=32, progress=not fast,
            samples_per_epoch=48 if fast else 256, learning_rate=3e-3 if fast else 1e-3)
teachers = [xds.fit(hr_ref, lr=lr_ref, model="maunet", width=16 if fast else 24, depth=2, seed=seed,
                    checkpoint=out / f"maunet{seed}.pt", **opts) for seed in (0, 1)]
# ... and a MAUNet-Light student trained on the truth and the teacher's outputs (alpha: the teacher's weight),
# plus the teacher's downscaling of the coarse fields that have no truth (unlabelled=).
student = xds.distill(teachers, "maunet-light", hr_ref, lr=lr_ref, alpha=0.5, unlabelled=lr_only, seed=0,
                      width=8 if fast else 16, checkpoint=out / "maunet_light.pt", **opts)

# 4. Side by side: mean bias, quantile biases at 1/50/99 %, RMSE.
preds = {"bicubic": bicubic, "bicubic + QDM": qdm,
         "maunet (mean of 2)": sum(xds.predict(lr_test, model=t, like=hr_test) for t in teachers) / 2,
         "maunet-light (distilled)": xds.predict(lr_test, model=student, like=hr_test)}
lines = []
for name, pred in preds.items():
    s = xds.evaluate(pred, hr_test)
    lines.append(f"{name:26s} RMSE {float(s.rmse):.3f}  bias {float(s.bias):+.3f}"
                 f"  q01 {float(s.quantile_bias_q01):+.3f}  q50 {float(s.quantile_bias_q50):+.3f}"
                 f"  q99 {float(s.quantile_bias_q99):+.3f} K")
print("\n".join(lines))
(out / "scores.txt").write_text("\n".join(lines) + "\n")
params = {n: sum(p.numel() for p in m.module.parameters()) for n, m in (("maunet", teachers[0]), ("light", student))}
print(f"parameters: one teacher network {params['maunet']:,}, student {params['light']:,} "
      f"({100 * params['light'] / params['maunet']:.0f}%)")

# 5. Export the student (constraint layer included) for ONNX Runtime or TorchScript.
try:
    path = xds.export(student, out / "maunet_light.onnx", tile=(16, 16))
except ImportError as err:  # onnx is optional: pip install 'xdownscale[export]'
    path = xds.export(student, out / "maunet_light.ts", tile=(16, 16))
    print(f"ONNX unavailable ({err}); wrote TorchScript instead")
print("exported", path)
