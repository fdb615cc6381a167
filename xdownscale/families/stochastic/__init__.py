"""The stochastic family: noise-driven generators trained adversarially (``gan``, ``rnngan``);
``predict(members=N, seed=s)`` gives an ensemble with a ``member`` dimension."""
from __future__ import annotations

from typing import Any

from ...engine.contract import FitRequest, PredictRequest
from .options import EnsembleOptions, GanOptions, RnnganOptions


class StochasticFamily:
    name = "stochastic"
    # the shared recipe's update budget (archive-independent), with a number of its own: the critic and
    # the k-member content term make an update costlier. On WFDE5 Tair x2 gan's ensemble CRPS was
    # 0.152 K after the 280 updates of the former 20 epochs, 0.131 K after 600 (skill_wfde5.md)
    train_defaults = {"max_updates": 600}

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
