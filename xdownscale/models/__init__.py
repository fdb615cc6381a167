"""Model registry and the registered models (importing this module registers them)."""
from . import baselines, cnn, convgru, diffusion, flowconvgru, gan, liif, rnngan, unet  # noqa: F401  (registration side effects)
from ._registry import (
                        build_network,
                        create_model,
                        family_of,
                        get_builder,
                        list_models,
                        model_info,
                        register_model,
                        training_defaults,
)
from .network import DownscalingNet

__all__ = ["DownscalingNet", "build_network", "create_model", "family_of", "get_builder", "list_models", "model_info",
           "register_model", "training_defaults"]
