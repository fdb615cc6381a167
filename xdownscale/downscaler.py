"""``Downscaler`` and ``load``, under their documented import path (defined in :mod:`xdownscale.engine.downscaler`)."""
from .engine.downscaler import Downscaler, load

__all__ = ["Downscaler", "load"]
