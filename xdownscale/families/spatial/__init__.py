"""The spatial family: one coarse field (plus predictors and covariates) to one finer field.

Models: ``cnn``, ``espcn``, ``maunet``, ``maunet-light`` and the interpolation baselines.
Options are the keyword parameters of each registered body (e.g. ``width``, ``n_blocks``).
"""
from .family import FAMILY, SpatialFamily

__all__ = ["FAMILY", "SpatialFamily"]
