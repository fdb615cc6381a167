"""Options of the diffusion family."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import DataError
from ...models.diffusion.schedulers import PREDICTIONS, SAMPLERS, SCHEDULES

DPDM_PATCH = 128  # the training patch side of DPDM; fit's patch_size= or patch= overrides it


@dataclass(frozen=True)
class DiffusionOptions:
    """``fit(model="diffusion", ...)`` options."""

    base: Any = field(default=None, metadata={"help": "a trained deterministic model (or checkpoint): diffuse "
                                                      "its residual, as CorrDiff"})
    patch: int | None = field(default=None, metadata={"help": "training patch side (fine cells); default "
                                                               "fit's patch_size"})
    base_channels: int = field(default=32, metadata={"help": "U-Net channels at full resolution"})
    channel_mults: tuple[int, ...] = field(default=(1, 2, 2), metadata={"help": "channel multiplier per U-Net level"})
    blocks: int = field(default=1, metadata={"help": "residual blocks per level"})
    timesteps: int = field(default=1000, metadata={"help": "diffusion steps of the noise schedule"})
    beta_schedule: str = field(default="cosine", metadata={"help": f"one of {', '.join(SCHEDULES)}"})
    prediction: str = field(default="v", metadata={"help": f"network target: one of {', '.join(PREDICTIONS)}"})
    sampler: str = field(default="ddim", metadata={"help": f"default sampler: one of {', '.join(SAMPLERS)}"})
    sample_steps: int = field(default=20, metadata={"help": "default sampling steps"})
    eta: float = field(default=0.0, metadata={"help": "default DDIM noise (0: deterministic, 1: DDPM-like)"})
    clip: float | None = field(default=None, metadata={"help": "clip the predicted clean residual"})
    overlap: int | None = field(default=None, metadata={"help": "tile overlap when sampling (fine cells)"})
    ema: float = field(default=0.999, metadata={"help": "decay of the weights' moving average"})
    residual_samples: int = field(default=64, metadata={"help": "patches that measure the base model's residual"})

    def __post_init__(self) -> None:
        for name, allowed in (("beta_schedule", SCHEDULES), ("prediction", PREDICTIONS), ("sampler", SAMPLERS)):
            if getattr(self, name) not in allowed:
                raise DataError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class DiffusionPredictOptions:
    """``predict`` options of ``diffusion``."""

    members: int = field(default=1, metadata={"help": "samples per field"})
    steps: int | None = field(default=None, metadata={"help": "sampling steps (default: the checkpoint's)"})
    seed: int = field(default=0, metadata={"help": "sampling seed (field n uses (seed, n))"})
    scheduler: str | None = field(default=None, metadata={"help": "'ddim' or 'ddpm' (default: the checkpoint's)"})
    eta: float | None = field(default=None, metadata={"help": "DDIM noise"})
    tile: int | None = field(default=None, metadata={"help": "tile side, fine cells (default: training patch)"})
    overlap: int | None = field(default=None, metadata={"help": "tile overlap, fine cells"})
    progress: bool = field(default=False, metadata={"help": "show a progress bar"})
    timing: dict[str, Any] | None = field(default=None, metadata={"help": "a dict filled with wall and CPU seconds"})

    def __post_init__(self) -> None:
        if int(self.members) < 1:
            raise DataError(f"members must be >= 1, got {self.members}")
