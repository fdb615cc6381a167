"""The temporal family: ``convgru`` and ``flowconvgru`` over windows of consecutive time steps."""
from __future__ import annotations

from typing import Any

from ...engine.contract import FitRequest, PredictRequest
from .dataset import SequencePatchDataset
from .options import ConvGRUOptions, FlowConvGRUOptions, TemporalPredictOptions


class TemporalFamily:
    name = "temporal"

    def fit_options(self, model: str) -> type:
        return FlowConvGRUOptions if model == "flowconvgru" else ConvGRUOptions

    def predict_options(self, model: str) -> type:
        return TemporalPredictOptions

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_temporal

        return fit_temporal(request, self.fit_options(request.model))

    def predict(self, request: PredictRequest) -> Any:
        from .predict import predict_temporal

        return predict_temporal(request)


FAMILY = TemporalFamily()

__all__ = ["FAMILY", "SequencePatchDataset", "TemporalFamily"]
