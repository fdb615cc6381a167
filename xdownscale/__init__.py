"""xdownscale: xarray-native deep-learning downscaling with hard conservation constraints.

``import xdownscale`` registers the ``.downscale`` accessor on DataArray and Dataset.
"""
from __future__ import annotations

import logging

from ._compat import import_pyproj_first

import_pyproj_first()  # before anything can load ecCodes: see _compat

from . import accessor as _accessor  # noqa: F401  (registers .downscale)
from ._version import __version__
from .api import (Downscaler, bias_correct, coarsen, distill, evaluate, export, fit, list_catalog, list_models,
                  load, model_info, open_catalog, predict, regrid, write)
from . import models  # noqa: F401  (xds.models.DownscalingNet)
from .api import report  # noqa: E402  (one HTML verification page)
from .ensemble import ensemble_mean  # ens.mean("member") keeping attrs
from .errors import CheckpointError, DataError, GridError, ModelNotFoundError, XDownscaleError

logging.getLogger("xdownscale").addHandler(logging.NullHandler())


def __getattr__(name):  # lazy: matplotlib/cartopy only when plotting
    if name in ("plot", "plot_ensemble"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xdownscale' has no attribute {name!r}")


__all__ = ["CheckpointError", "DataError", "Downscaler", "GridError", "ModelNotFoundError", "XDownscaleError",
           "__version__", "bias_correct", "coarsen", "distill", "ensemble_mean", "evaluate", "export", "fit",
           "list_catalog", "list_models", "load", "model_info", "open_catalog", "plot", "plot_ensemble", "predict", "regrid", "write"]
