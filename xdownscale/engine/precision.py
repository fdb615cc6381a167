"""Mixed precision: ``precision="auto" | "fp32" | "bf16" | "fp16"`` for ``fit`` and ``predict``.

Only the network body runs in the lower precision (``torch.autocast``); the interpolation skip,
the normalisation and the constraint layer stay float32 inside
:class:`~xdownscale.models.DownscalingNet`, so conservation holds to float32 round-off whatever
the precision. Training keeps float32 master weights (autocast casts on the fly; the optimizer
updates the float32 parameters), with a gradient scaler for fp16, whose range is narrow.

``"auto"`` resolves to bf16 only where the hardware runs it natively, found from what the CPU
and the GPU report (never from a model name): a CPU with AVX512-BF16 or AMX, a CUDA device of
compute capability 8.0 or later. Elsewhere bf16 is emulated and slower than float32, so
``"auto"`` keeps float32.
"""
from __future__ import annotations

import contextlib
import functools

import torch

from ..config import PRECISIONS
from ..errors import DataError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (not emulated through float32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    if {"avx512_bf16", "amx_bf16"} & cpu_flags():
        return True
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # torch's own check, off Linux
    return bool(probe()) if probe is not None else False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``precision`` on ``device`` (``"auto"``/None: bf16 where
    it is native, else fp32)."""
    precision = "auto" if precision is None else str(precision)
    if precision not in PRECISIONS:
        raise DataError(f"precision={precision!r} is not known: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "fp16" and device.type == "cpu" and not {"avx512_fp16", "amx_fp16"} & cpu_flags():
        # allowed (autocast runs it), but most CPUs emulate it: say so rather than be silently slow
        import warnings

        warnings.warn("precision='fp16' on a CPU without native fp16 is emulated and slow; use 'bf16' or 'fp32'",
                      stacklevel=3)
    return precision


def autocast(precision: str, device: torch.device):
    """The context the network runs in: ``torch.autocast`` for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device):
    """A gradient scaler for fp16 training (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def check_precision(family, precision: str | None, model: str) -> None:
    """Refuse a lower precision for a model family that runs its networks in float32 only
    (``"auto"`` means float32 there)."""
    if precision not in (None, "fp32", "auto") and not getattr(family, "mixed_precision", False):
        raise DataError(f"precision={precision!r}: model {model!r} ({family.name} family) runs in float32 only; "
                        "use precision='fp32' (mixed precision is for the spatial models such as cnn and espcn)")
