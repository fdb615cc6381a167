"""The public functions. The ``.downscale`` accessor and the CLI are thin faces over these.

Those that need PyTorch (training, prediction, checkpoints, export) are imported on first
use, so ``import xdownscale``, ``coarsen``, ``regrid``, ``evaluate`` and ``write`` never load it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .bias_correction import bias_correct
from .catalog import list_catalog, open_catalog
from .export import export
from .grid import coarsen, regrid
from .io import write
from .metrics import evaluate
from .metrics.report import report

if TYPE_CHECKING:  # the lazy names, for type checkers, linters and editors
    from .engine.downscaler import Downscaler, load
    from .families.distillation import distill
    from .fitting import fit
    from .model_help import model_options
    from .models import list_models, model_info, training_defaults
    from .prediction import predict

# name -> module that defines it, imported on first access (PEP 562)
LAZY = {
    "Downscaler": "xdownscale.engine.downscaler",
    "load": "xdownscale.engine.downscaler",
    "distill": "xdownscale.families.distillation",
    "fit": "xdownscale.fitting",
    "list_models": "xdownscale.models",
    "model_info": "xdownscale.models",
    "model_options": "xdownscale.model_help",
    "predict": "xdownscale.prediction",
    "training_defaults": "xdownscale.models",
}


def __getattr__(name: str):
    if name in LAZY:
        value = getattr(importlib.import_module(LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xdownscale.api' has no attribute {name!r}")


__all__ = ["Downscaler", "bias_correct", "coarsen", "distill", "evaluate", "export", "fit", "list_catalog",
           "list_models", "load", "model_info", "model_options", "open_catalog", "predict", "regrid", "report",
           "training_defaults", "write"]
