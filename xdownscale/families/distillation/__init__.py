"""Distillation: a recipe beside the families, not a family. A trained teacher (or an ensemble
of them) teaches a smaller spatial student (:func:`distill`), with the student's own
registered family used for everything after training."""
from .distill import distill

__all__ = ["distill"]
