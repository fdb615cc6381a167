"""Frozen configuration dataclasses with a dict round trip (stored in checkpoints)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LOSSES = ("mse", "l1")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. ``patch_size`` is in fine-grid cells."""

    epochs: int = 20
    batch_size: int = 64
    patch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    loss: str = "mse"
    seed: int = 0
    val_fraction: float = 0.2
    patience: int = 5
    samples_per_epoch: int | None = None
    val_samples: int | None = None
    soft_weight: float = 1.0
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
