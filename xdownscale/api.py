"""The public functions. The ``.downscale`` accessor and the CLI are thin faces over these."""
from __future__ import annotations

from .bias_correction import bias_correct
from .catalog import list_catalog, open_catalog
from .downscaler import Downscaler, load
from .engine.distill import distill
from .export import export
from .fitting import fit
from .grid import coarsen, regrid
from .io import write
from .metrics import evaluate
from .models import list_models, model_info
from .prediction import predict
from .metrics.report import report

__all__ = ["Downscaler", "bias_correct", "coarsen", "distill", "evaluate", "export", "fit", "list_catalog",
           "list_models", "load", "model_info", "open_catalog", "predict", "regrid", "write"]
