"""Options of the temporal models."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError

GAPS = ("split", "error")


@dataclass(frozen=True)
class ConvGRUOptions:
    """``fit(model="convgru", ...)`` options."""

    channels: int = field(default=32, metadata={"help": "ConvGRU hidden channels"})
    residual_blocks: int = field(default=3, metadata={"help": "residual blocks after the recurrence"})
    window: int = field(default=3, metadata={"help": "time steps the network sees per output"})
    gaps: str = field(default="split", metadata={"help": "'split' the series at gaps (a warning) or 'error'"})

    def __post_init__(self) -> None:
        if int(self.window) < 1:
            raise DataError(f"window must be >= 1, got {self.window}")
        if self.gaps not in GAPS:
            raise DataError(f"gaps={self.gaps!r} is not one of {', '.join(GAPS)}")

    def body(self) -> dict[str, Any]:
        return {"channels": int(self.channels), "residual_blocks": int(self.residual_blocks),
                "window": int(self.window)}

    def flow(self) -> dict[str, Any]:
        return {}

    @property
    def training_time_factor(self) -> int:
        return 1


@dataclass(frozen=True)
class FlowConvGRUOptions(ConvGRUOptions):
    """``fit(model="flowconvgru", ...)`` options."""

    time_factor: int = field(default=3, metadata={"help": "inputs every k-th step in training; the steps between "
                                                           "are synthesised"})
    flow_channels: int = field(default=16, metadata={"help": "channels of the voxel-flow network"})
    max_flow: float = field(default=2.0, metadata={"help": "largest displacement, in coarse cells"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.time_factor) < 1:
            raise DataError(f"time_factor must be >= 1, got {self.time_factor}")

    def flow(self) -> dict[str, Any]:
        return {"flow_channels": int(self.flow_channels), "max_flow": float(self.max_flow)}

    @property
    def training_time_factor(self) -> int:
        return int(self.time_factor)


@dataclass(frozen=True)
class TemporalPredictOptions:
    """``predict`` options of the temporal models."""

    time_factor: int = field(default=1, metadata={"help": "flowconvgru: k - 1 synthesised frames between inputs"})
    gaps: str = field(default="split", metadata={"help": "'split' the series at gaps (a warning) or 'error'"})

    def __post_init__(self) -> None:
        if not isinstance(self.time_factor, (int, np.integer)) or isinstance(self.time_factor, bool) \
                or self.time_factor < 1:
            raise DataError(f"time_factor must be a positive integer, got {self.time_factor!r}")
