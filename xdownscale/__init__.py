"""xdownscale: xarray-native deep-learning downscaling with hard conservation constraints.

``import xdownscale`` registers the ``.downscale`` accessor on DataArray and Dataset. It does
not import PyTorch: ``fit``, ``predict``, ``Downscaler`` and the other functions that need it
load it on first use.
"""
from __future__ import annotations

import importlib
import logging

from ._compat import import_pyproj_first

import_pyproj_first()  # before anything can load ecCodes: see _compat

from . import accessor as _accessor  # noqa: E402,F401  (registers .downscale)
from . import api as _api  # noqa: E402
from ._version import __version__  # noqa: E402
from .api import bias_correct, coarsen, evaluate, export, list_catalog, open_catalog, regrid, report, write  # noqa: E402
from .ensemble import ensemble_mean  # noqa: E402  (ens.mean("member") keeping attrs)
from .errors import CheckpointError, DataError, GridError, ModelNotFoundError, XDownscaleError  # noqa: E402

logging.getLogger("xdownscale").addHandler(logging.NullHandler())

_SUBMODULES = ("models", "plot", "plot_ensemble")  # xds.models.DownscalingNet, xds.plot.compare(...)


def __getattr__(name: str):
    if name in _api.LAZY:
        return getattr(_api, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xdownscale' has no attribute {name!r}")


__all__ = ["CheckpointError", "DataError", "Downscaler", "GridError", "ModelNotFoundError", "XDownscaleError",
           "__version__", "bias_correct", "coarsen", "distill", "ensemble_mean", "evaluate", "export", "fit",
           "list_catalog", "list_models", "load", "model_info", "model_options", "open_catalog", "plot",
           "plot_ensemble", "predict", "regrid", "report", "training_defaults", "write"]
