"""The stochastic family: noise-driven generators trained adversarially (``gan``, ``rnngan``);
``predict(members=N, seed=s)`` gives an ensemble with a ``member`` dimension."""
from __future__ import annotations

from typing import Any

from ...engine.contract import FitRequest, PredictRequest
from .options import EnsembleOptions, GanOptions, RnnganOptions


class StochasticFamily:
    name = "stochastic"
    train_defaults = {"epochs": 20}  # its own adversarial loop counts epochs

    def fit_options(self, model: str) -> type:
        return RnnganOptions if model == "rnngan" else GanOptions

    def predict_options(self, model: str) -> type:
        return EnsembleOptions

    def supports_multi_target(self, model: str) -> bool:
        return model in ("gan", "rnngan")

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_gan, fit_rnngan

        return (fit_rnngan if request.model == "rnngan" else fit_gan)(request)

    def predict(self, request: PredictRequest) -> Any:
        from .predict import predict_ensemble

        return predict_ensemble(request)


FAMILY = StochasticFamily()

__all__ = ["FAMILY", "StochasticFamily"]
