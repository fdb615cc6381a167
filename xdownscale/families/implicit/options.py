"""Options of the implicit (arbitrary-scale) family."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import DataError

DEGRADATIONS = ("none", "high-order")


@dataclass(frozen=True)
class LiifOptions:
    """``fit(model="liif", ...)`` options."""

    width: int = field(default=32, metadata={"help": "encoder channels"})
    n_blocks: int = field(default=4, metadata={"help": "encoder residual blocks"})
    hidden: int = field(default=32, metadata={"help": "decoder width"})
    scales: tuple[float, float] = field(default=(1.5, 8.0), metadata={"help": "(smallest, largest) training scale"})
    degradation: str = field(default="none", metadata={"help": "'none' or 'high-order' (blur, resize, noise)"})
    integer_share: float | None = field(default=None, metadata={
        "help": "share of training batches at the whole factors within scales (2, 3, 4, ...), the rest at any "
                "scale; default 1.0, or 0.5 for a target that stops at zero (rain)"})
    lr_patch: int = field(default=16, metadata={"help": "coarse cells per training window side"})
    queries: int = field(default=512, metadata={"help": "fine cells queried per window"})
    query_batch: int = field(default=32768, metadata={"help": "queries per decoder call at prediction"})

    def __post_init__(self) -> None:
        if self.degradation not in DEGRADATIONS:
            raise DataError(f"degradation={self.degradation!r}: use one of {', '.join(DEGRADATIONS)}")
        if self.integer_share is not None and not 0.0 <= float(self.integer_share) <= 1.0:
            raise DataError(f"integer_share={self.integer_share!r}: give a fraction in [0, 1]")
        lo, hi = (float(s) for s in self.scales)
        if not 1.0 <= lo <= hi:
            raise DataError(f"scales={self.scales!r}: give (smallest, largest) with 1 <= smallest <= largest")


@dataclass(frozen=True)
class ImplicitPredictOptions:
    """``predict`` options of ``liif`` (besides ``factor=``, which may be any real scale)."""

    target: Any = field(default=None, metadata={"help": "a grid (Dataset/DataArray with lat/lon) to predict onto"})
    points: Any = field(default=None, metadata={"help": "scattered points (lat/lon along a station dim)"})
    point_cell: float | None = field(default=None, metadata={"help": "cell size assumed at points"})
