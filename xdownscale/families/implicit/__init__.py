"""The implicit family: ``liif``, one model for any scale, any target grid or scattered points."""
from __future__ import annotations

from typing import Any

from ...engine.contract import FitRequest, PredictRequest
from .options import ImplicitPredictOptions, LiifOptions


class ImplicitFamily:
    name = "implicit"
    scale_free = True  # predict(factor=) may be any real scale: not checked against the training factor

    def fit_options(self, model: str) -> type:
        return LiifOptions

    def predict_options(self, model: str) -> type:
        return ImplicitPredictOptions

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_liif

        return fit_liif(request)

    def predict(self, request: PredictRequest) -> Any:
        from .predict import predict_liif

        return predict_liif(request)


FAMILY = ImplicitFamily()

__all__ = ["FAMILY", "ImplicitFamily"]
