"""Frozen configuration dataclasses with a dict round trip (stored in checkpoints)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LOSSES = ("mse", "l1")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # see xdownscale.engine.precision
# float32 unless asked: "auto" (bf16 here) predicted ~2x faster at <= 0.02 % RMSE change (WFDE5 Tair, MeteoNet msl),
# but the same checkpoint would then give other bits on other hardware (benchmarks/results/precision_skill.md)
DEFAULT_PRECISION = "fp32"
DEFAULT_UPDATES = 1000
# What fit() trains when no model is named: a residual body at the coarse resolution with one
# sub-pixel upsampling. With the default recipe on WFDE5 Tair (benchmarks/skill.py) it beats
# Harder's `cnn` at x4 (0.702 vs 0.727 of bicubic, in half the time: cnn's transposed
# convolutions run at the fine resolution) and trails it by 2% at x2 (0.524 vs 0.512).
# Those are raw weights; with the weight average (TrainConfig.ema) the default gives 0.668 / 0.514.
DEFAULT_MODEL = "espcn"
DEFAULT_MODEL_OPTIONS = {"n_blocks": 6}


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. ``patch_size`` is in fine-grid cells.

    The budget (shared trainer, :func:`xdownscale.engine.trainer.train`): ``max_updates``
    optimizer steps and/or ``max_minutes`` of training, whichever ends first; ``epochs``
    (passes of ``samples_per_epoch`` patches) is still accepted and counts as
    ``epochs x batches per epoch`` updates (``max_updates``, when given, wins). With none of
    the three the budget is :data:`DEFAULT_UPDATES` updates, the same on any archive size. The learning rate rises
    linearly over the first ``warmup`` fraction of the budget, then follows a cosine to 1% of
    ``learning_rate`` at its end; the run is validated ``evals`` times (every epoch when
    ``epochs`` sets the budget), the weights with the lowest validation loss are kept, and early
    stopping (``patience`` validations without improvement) cannot end a run before
    ``min_fraction`` of the budget is spent. ``precision``: the network body's arithmetic
    (:mod:`xdownscale.engine.precision`; float32 master weights in every case). ``ema``: the decay
    of an exponential moving average of the weights. Once it holds 1 / (1 - ema) updates, each
    validation scores both it and the raw weights and keeps the better (0: raw weights only). On
    short archives it removes most of the seed-to-seed spread
    (benchmarks/results/skill_wfde5.md).
    """

    epochs: int | None = None
    max_updates: int | None = None
    max_minutes: float | None = None
    batch_size: int = 32
    patch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    loss: str = "mse"
    seed: int = 0
    val_fraction: float = 0.2
    patience: int = 5
    warmup: float = 0.05
    evals: int = 20
    min_fraction: float = 0.5
    samples_per_epoch: int | None = None
    val_samples: int | None = None
    soft_weight: float = 1.0
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True
    precision: str = DEFAULT_PRECISION
    ema: float = 0.99

    def __post_init__(self):
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("batch_size", "patch_size", "evals"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "max_updates"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {getattr(self, name)}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 (or None), got {self.max_minutes}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction of the budget in [0, 1), got {self.warmup}")
        if not 0 <= self.min_fraction <= 1:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be a decay in [0, 1) (0: no averaging), got {self.ema}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
