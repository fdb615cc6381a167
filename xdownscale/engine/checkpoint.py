"""Self-describing checkpoints that load without running code.

A checkpoint is a plain dict of strings, numbers, lists and tensors saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``: model
name and configuration, normalisation, variable and units, factor, grid facts,
training history, package version and the weights.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

from .._version import __version__
from ..errors import CheckpointError
from ..model_store import file_sha256 as sha256  # noqa: F401  (re-exported: checkpoints are named by it)
from .record import RECORD_VERSION, ModelRecord, migrate

FORMAT = "xdownscale-checkpoint"
FORMAT_VERSION = RECORD_VERSION


def _plain(obj):
    """Convert numpy scalars/arrays and tuples so the dict loads with weights_only=True."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, torch.Tensor):
        return obj.tolist()
    return obj


def save_checkpoint(path: str | os.PathLike, state_dict: dict, meta: dict, resume: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); ``meta`` is the flat
    :class:`~xdownscale.engine.record.ModelRecord` view, stored as the typed record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xdownscale_version": __version__,
        "record": _plain(ModelRecord.from_meta(meta).to_dict()),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    if resume is not None:
        payload["resume"] = resume
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read, validate and migrate a checkpoint; never unpickles code.

    Returns the payload with the record's flat view merged in (``payload["network"]``,
    ``payload["variable"]``, ...), plus ``state_dict`` and, if saved, ``resume``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, i.e. running the file's code: not repeated here
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(
            f"{str(path)!r} holds pickled Python objects" + (f" ({found.group(1)})" if found else "")
            + ", which xdownscale never loads because unpickling can run arbitrary code; use a checkpoint "
            "written by xdownscale (fit, or Downscaler.save), which holds only weights and plain values") from None
    except Exception as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable xdownscale checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an xdownscale checkpoint (no format={FORMAT!r} entry)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} was written by a newer xdownscale ({payload.get('xdownscale_version')}); upgrade xdownscale"
        )
    payload = migrate(payload)
    record = ModelRecord(**payload["record"])
    return {**payload, **record.to_meta()}


def read_record(path: str | os.PathLike) -> ModelRecord:
    """The typed model record of a checkpoint (any format version)."""
    return ModelRecord(**read_checkpoint(path)["record"])
