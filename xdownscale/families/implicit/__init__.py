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

    def supports_multi_target(self, model: str) -> bool:
        return True  # one output per target; the constraints are chosen at predict time

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_liif

        return fit_liif(request)

    def predict(self, request: PredictRequest) -> Any:
        from ..spatial.multi import is_multi_target

        if is_multi_target(request.model):  # several targets: a Dataset of every one
            from .multi import predict_liif_multi

            return predict_liif_multi(request, request.model)
        from .predict import predict_liif

        return predict_liif(request)


FAMILY = ImplicitFamily()

__all__ = ["FAMILY", "ImplicitFamily"]
