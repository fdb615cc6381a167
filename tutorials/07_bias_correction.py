"""Bias correction and downscaling in one step: quantile mapping vs MAUNet, distillation, export.

A coarse "model" field that is too warm, has too much variance and a latitude-
dependent error is downscaled x2 onto a fine reference grid. We compare
bicubic interpolation, bicubic + quantile delta mapping (statistical), a MAUNet
teacher and a MAUNet-Light student distilled from it (deep), with the bias
metrics of ``evaluate``; then export the student to ONNX for operational use.

Synthetic data (no download). XDOWNSCALE_TUTORIAL_FAST=1 gives a seconds-long
smoke run (used by the tests). For the real-data version of this comparison
(WFDE5 UK), see benchmarks/bias_correction.py.

    python tutorials/07_bias_correction.py [OUT_DIR]
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

# 2. Statistical baseline: bicubic interpolation, then quantile delta mapping per fine cell.
qdm = xds.bias_correct(lr_test, ref=hr_train, hist=lr_train, method="qdm", n_quantiles=20)
bicubic = xds.predict(lr_test, model="bicubic", factor=2, like=hr_test)

# 3. Deep: a MAUNet teacher trained on the real pair (lr=biased source, hr=reference) ...
opts = dict(epochs=2 if fast else 15, batch_size=8, patch_size=32, seed=0, progress=not fast,
            samples_per_epoch=48 if fast else None, learning_rate=3e-3 if fast else 1e-3)
teacher = xds.fit(hr_train, lr=lr_train, model="maunet", width=16 if fast else 24, depth=2,
                  checkpoint=out / "maunet.pt", **opts)
# ... and a MAUNet-Light student trained on the teacher's outputs and the truth (alpha: teacher weight).
student = xds.distill(teacher, "maunet-light", hr_train, lr=lr_train, alpha=0.5, width=8 if fast else 16,
                      checkpoint=out / "maunet_light.pt", **opts)

# 4. Side by side: mean bias, quantile biases at 1/50/99 %, RMSE.
preds = {"bicubic": bicubic, "bicubic + QDM": qdm,
         "maunet": xds.predict(lr_test, model=teacher, like=hr_test),
         "maunet-light (distilled)": xds.predict(lr_test, model=student, like=hr_test)}
lines = []
for name, pred in preds.items():
    s = xds.evaluate(pred, hr_test)
    lines.append(f"{name:26s} RMSE {float(s.rmse):.3f}  bias {float(s.bias):+.3f}"
                 f"  q01 {float(s.quantile_bias_q01):+.3f}  q50 {float(s.quantile_bias_q50):+.3f}"
                 f"  q99 {float(s.quantile_bias_q99):+.3f} K")
print("\n".join(lines))
(out / "scores.txt").write_text("\n".join(lines) + "\n")
params = {n: sum(p.numel() for p in m.module.parameters()) for n, m in (("maunet", teacher), ("light", student))}
print(f"parameters: teacher {params['maunet']:,}, student {params['light']:,} "
      f"({100 * params['light'] / params['maunet']:.0f}%)")

# 5. Export the student (constraint layer included) for ONNX Runtime or TorchScript.
try:
    path = xds.export(student, out / "maunet_light.onnx", tile=(16, 16))
except ImportError as err:  # onnx is optional: pip install 'xdownscale[export]'
    path = xds.export(student, out / "maunet_light.ts", tile=(16, 16))
    print(f"ONNX unavailable ({err}); wrote TorchScript instead")
print("exported", path)
