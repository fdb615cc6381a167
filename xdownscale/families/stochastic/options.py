"""Options of the stochastic models: the generator's, then the adversarial training's."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ...ensemble import MEMBER_DIM
from ...errors import DataError
from .adversarial import ADVERSARIAL_OPTIONS, AdversarialConfig


@dataclass(frozen=True)
class GanOptions(AdversarialConfig):
    """``fit(model="gan", ...)``: generator options plus :class:`AdversarialConfig`'s."""

    body: str = field(default="auto", metadata={"help": "generator body: 'cnn', 'espcn' or 'auto'"})
    width: int = field(default=64, metadata={"help": "generator channels"})
    n_blocks: int = field(default=4, metadata={"help": "generator residual blocks"})
    noise_channels: int = field(default=8, metadata={"help": "noise channels on the coarse grid"})


@dataclass(frozen=True)
class RnnganOptions(AdversarialConfig):
    """``fit(model="rnngan", ...)``: recurrent generator options plus :class:`AdversarialConfig`'s.

    The defaults were measured on WFDE5 Tair x2, where the former ones (32 channels, 2 blocks, 4
    noise channels, 8-step windows, adversarial weight 0.05) gave a 10-member CRPS of 0.246 K, worse
    than the deterministic default's MAE of 0.171 K: the ensemble mean was 0.92x bicubic. 64
    channels, 4 blocks, 8 noise channels, 4-step windows (half the cost of 8) and gan's weight 0.01
    give 0.154 K (2 blocks: 0.171 K); benchmarks/results/skill_wfde5.md."""

    # recorded in every checkpoint: models saved before these defaults left the generator's own (32, 2)
    recorded: ClassVar[tuple[str, ...]] = ("noise_channels", "window", "width", "n_blocks")
    width: int = field(default=64, metadata={"help": "generator channels"})
    n_blocks: int = field(default=4, metadata={"help": "generator residual blocks"})
    noise_channels: int = field(default=8, metadata={"help": "noise channels per frame"})
    window: int = field(default=4, metadata={"help": "training sequence length (>= 2)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.window) < 2:
            raise DataError(f"rnngan trains on sequences: window must be >= 2, got {self.window}")


def split(options: AdversarialConfig, given: dict[str, Any]) -> tuple[dict[str, Any], AdversarialConfig]:
    """(network options, AdversarialConfig): the network keeps what the user set, plus the
    noise channels (and window) it always records."""
    network_fields = [f.name for f in fields(options) if f.name not in ADVERSARIAL_OPTIONS]
    net = {k: given[k] for k in network_fields if k in given}
    for always in getattr(options, "recorded", ("noise_channels", "window")):
        if always in network_fields:
            net.setdefault(always, getattr(options, always))
    adv = AdversarialConfig(**{k: getattr(options, k) for k in ADVERSARIAL_OPTIONS})
    return net, adv


@dataclass(frozen=True)
class EnsembleOptions:
    """``predict`` options of the stochastic models."""

    members: int = field(default=10, metadata={"help": "ensemble size"})
    seed: int = field(default=0, metadata={"help": "noise seed (member k of seed s is reproducible alone)"})
    member_dim: str = field(default=MEMBER_DIM, metadata={"help": "name of the ensemble dimension"})
    window: int | None = field(default=None, metadata={"help": "rnngan: steps each output is generated from"})

    def __post_init__(self) -> None:
        if int(self.members) < 1:
            raise DataError(f"members must be >= 1, got {self.members}")
