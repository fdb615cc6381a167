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

    def supports_multi_target(self, model: str) -> bool:
        return True

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_temporal
        from .multi import fit_temporal_multi, uses_multi_path

        fit = fit_temporal_multi if uses_multi_path(request) else fit_temporal
        return fit(request, self.fit_options(request.model))

    def predict(self, request: PredictRequest) -> Any:
        from ..spatial.multi import is_multi_target
        from .multi import predict_temporal_multi
        from .predict import predict_temporal

        if is_multi_target(request.model):
            return predict_temporal_multi(request, request.model)
        return predict_temporal(request)


FAMILY = TemporalFamily()

__all__ = ["FAMILY", "SequencePatchDataset", "TemporalFamily"]
