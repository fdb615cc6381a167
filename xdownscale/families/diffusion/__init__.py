"""The diffusion family: a conditional denoiser trained on fine patches (DPDM; residual mode as
CorrDiff) and sampled with the schedulers kept apart in :mod:`xdownscale.models.diffusion`."""
from __future__ import annotations

from typing import Any

from ...engine.contract import FitRequest, PredictRequest
from .options import DPDM_PATCH, DiffusionOptions, DiffusionPredictOptions


class DiffusionFamily:
    name = "diffusion"
    # when fit's patch_size= / budget are not given: DPDM's patches, and 300 updates (its former 20
    # epochs gave 210-280 on WFDE5, and grew with the archive)
    train_defaults = {"patch_size": DPDM_PATCH, "max_updates": 300}

    def fit_options(self, model: str) -> type:
        return DiffusionOptions

    def predict_options(self, model: str) -> type:
        return DiffusionPredictOptions

    def supports_multi_target(self, model: str) -> bool:
        return True  # one denoiser for several targets (a member is one joint sample)

    def fit(self, request: FitRequest) -> Any:
        from .fit import fit_diffusion

        return fit_diffusion(request)

    def predict(self, request: PredictRequest) -> Any:
        from .predict import predict_diffusion

        return predict_diffusion(request)


FAMILY = DiffusionFamily()

__all__ = ["FAMILY", "DiffusionFamily"]
