"""The typed, versioned description of a model that a checkpoint stores next to its weights.

``ModelRecord`` is the one schema: :func:`xdownscale.engine.setup.prepare`, the baselines and
the families build it, :mod:`xdownscale.engine.checkpoint` writes and reads it, and
:func:`migrate` lifts every older layout to the current one, so a checkpoint written by an
earlier release still loads. In memory a :class:`~xdownscale.engine.downscaler.Downscaler`
exposes it as the plain ``meta`` dict (``record.to_meta()``), which is what user code reads.

Format history:

* version 1: the record's fields flat at the top level of the payload, family sections
  (``temporal``, ``base``, ``distillation``, ...) beside them;
* version 2: the record under ``"record"``, family sections under ``record["sections"]``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError

RECORD_VERSION = 2
_IDENTITY = {"mean": 0.0, "std": 1.0}
NETWORK_KEYS = ("model", "factor", "in_channels", "constraint")
MULTI_TARGET_SECTION = "multi_target"  # the section of a model with several targets (engine.multi_setup)


def _default_normalization() -> dict[str, Any]:
    return {"target": dict(_IDENTITY), "predictors": [], "covariates": {}}


@dataclass
class ModelRecord:
    """Everything but the weights: enough to rebuild the network and use it correctly.

    ``network``: the keyword configuration of the registered wrapper (``model``, ``factor``,
    ``in_channels``, ``constraint``, normalisation constants and the body's options);
    ``variable``/``attrs``: the target's name and CF attributes; ``predictors`` and
    ``covariates``: the further inputs, by name; ``normalization``: their statistics;
    ``grid``: the training grid's axes and shape; ``training``: configuration and history;
    ``sections``: what a family adds (e.g. ``temporal``: window and time factor).
    """

    network: dict
    variable: str | None = None
    attrs: dict = field(default_factory=dict)
    predictors: list = field(default_factory=list)
    covariates: list = field(default_factory=list)
    normalization: dict = field(default_factory=_default_normalization)
    grid: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    created: str = ""
    sections: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [k for k in NETWORK_KEYS if k not in self.network]
        if missing:
            raise CheckpointError(f"model record has no network {', '.join(missing)}: the checkpoint is damaged "
                                  "or was not written by xdownscale")

    @classmethod
    def from_meta(cls, meta: dict) -> "ModelRecord":
        """From the flat ``meta`` dict (``Downscaler.meta``): known keys become fields, others sections."""
        names = {f.name for f in dataclasses.fields(cls)} - {"sections"}
        known = {k: v for k, v in meta.items() if k in names}
        sections = {k: v for k, v in meta.items() if k not in names}
        sections.update(meta.get("sections", {}) or {})
        if "network" not in known:
            raise CheckpointError("model record has no 'network' entry: the checkpoint is damaged")
        return cls(**known, sections=sections)

    def to_meta(self) -> dict[str, Any]:
        """The flat dict view: the fields, then the family sections beside them."""
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sections"}
        meta.update(self.sections)
        return meta

    def to_dict(self) -> dict[str, Any]:
        """The stored form (format version 2)."""
        return dataclasses.asdict(self)


def migrate(payload: dict) -> dict[str, Any]:
    """``payload`` as the current format: ``{"record": {...}, "state_dict": ..., ...}``."""
    version = int(payload.get("format_version", 1))
    if version < RECORD_VERSION:  # version 1 (and the unversioned 0): the record's fields were flat
        envelope = ("format", "format_version", "xdownscale_version", "state_dict", "resume")
        flat = {k: v for k, v in payload.items() if k not in envelope}
        payload = {k: v for k, v in payload.items() if k in envelope}
        payload["record"] = ModelRecord.from_meta(flat).to_dict()
        payload["format_version"] = RECORD_VERSION
    if "record" not in payload:
        raise CheckpointError("checkpoint has no model record: it is damaged or not written by xdownscale")
    return payload
