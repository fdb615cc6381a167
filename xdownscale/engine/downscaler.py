"""``Downscaler``: a trained (or baseline) model with everything needed to use it."""
from __future__ import annotations

import os
from pathlib import Path

from ..models import build_network, family_of
from .checkpoint import read_checkpoint, save_checkpoint, sha256
from .record import ModelRecord


class Downscaler:
    """A model plus its configuration, normalisation and grid facts.

    Attributes: ``module`` (the ``torch.nn.Module``), ``config`` (network
    configuration dict), ``factor``, ``variable``, ``meta`` (everything stored
    in the checkpoint), ``checkpoint`` (path, if saved) and ``checkpoint_hash``.
    """

    def __init__(self, module, meta: dict, checkpoint: str | os.PathLike | None = None):
        self.module = module
        self.meta = meta
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.checkpoint_hash = sha256(self.checkpoint) if self.checkpoint and self.checkpoint.exists() else None

    # -- descriptive properties -------------------------------------------------
    @property
    def config(self) -> dict:
        return dict(self.meta["network"])

    @property
    def factor(self) -> int:
        return int(self.meta["network"]["factor"])

    @property
    def variable(self) -> str | None:
        return self.meta.get("variable")

    @property
    def model_name(self) -> str:
        return self.meta["network"]["model"]

    @property
    def constraint(self) -> str:
        return self.meta["network"].get("constraint", "none")

    @property
    def history(self) -> list:
        return list(self.meta.get("training", {}).get("history", []))

    def __repr__(self) -> str:
        where = f", checkpoint={str(self.checkpoint)!r}" if self.checkpoint else ""
        return (f"Downscaler(model={self.model_name!r}, factor={self.factor}, constraint={self.constraint!r}, "
                f"variable={self.variable!r}{where})")

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | os.PathLike, resume: dict | None = None) -> Path:
        """Write a self-describing checkpoint (atomic) and remember its path and hash."""
        path = save_checkpoint(path, self.module.state_dict(), self.meta, resume=resume)
        self.checkpoint, self.checkpoint_hash = path, sha256(path)
        return path

    @classmethod
    def from_meta(cls, meta: dict) -> "Downscaler":
        return cls(build_network(meta["network"]), meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Downscaler":
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``)."""
        payload = read_checkpoint(path)
        meta = ModelRecord(**payload["record"]).to_meta()
        obj = cls(build_network(meta["network"]), meta, checkpoint=path)
        obj.module.load_state_dict(payload["state_dict"])
        obj.module.eval()
        return obj

    @property
    def record(self) -> ModelRecord:
        """The typed model record (what the checkpoint stores besides the weights)."""
        return ModelRecord.from_meta(self.meta)

    def predict(self, lr, **kwargs):
        """Downscale a coarse DataArray/Dataset: see :func:`xdownscale.predict`."""
        from .contract import PredictRequest
        from .precision import check_precision

        family = family_of(self.model_name)
        check_precision(family, kwargs.get("precision"), self.model_name)
        return family.predict(PredictRequest.from_call(lr, model=self, **kwargs))


def load(path: str | os.PathLike) -> Downscaler:
    """Load a saved :class:`Downscaler`."""
    return Downscaler.load(path)
