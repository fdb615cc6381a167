"""The one model registry. Imports only :mod:`xdownscale.errors` from the package (no cycles)."""
from __future__ import annotations

import importlib
from typing import Callable

from ..errors import ModelNotFoundError, suggest

# by family, or by model name where one family holds several wrappers
MULTI_TARGET_WRAPPERS = {"spatial": "xdownscale.models.multi_target:MultiTargetNet",
                         "stochastic": "xdownscale.models.gan:MultiTargetStochasticNet",
                         "temporal": "xdownscale.models.temporal_multi:MultiTargetTemporalNet",
                         "rnngan": "xdownscale.models.rnngan:MultiTargetRecurrentNet",
                         "diffusion": "xdownscale.models.diffusion.multi:MultiTargetDiffusionNet",
                         "implicit": "xdownscale.models.liif:MultiTargetLIIFNet"}

_MODELS: dict[str, Callable] = {}
_INFO: dict[str, dict] = {}


DEFAULT_WRAPPER = "xdownscale.models.network:DownscalingNet"


def register_model(name: str, *, trainable: bool = True, description: str = "", factors: str = "any integer",
                   family: str = "spatial", wrapper: str = DEFAULT_WRAPPER, probabilistic: bool = False,
                   train_defaults: dict | None = None):
    """Class/function decorator: ``@register_model("cnn")`` adds a builder to the registry.

    ``family`` names the folder ``xdownscale/families/<family>/`` whose ``FAMILY`` object
    trains and applies the model (:class:`~xdownscale.engine.contract.Family`);
    ``wrapper`` is the ``nn.Module`` that wraps the body and is rebuilt from a
    checkpoint's ``network`` dict, as a ``"module:attribute"`` string. Both are
    resolved lazily, so this module imports nothing above it. ``train_defaults``: training
    settings this model needs unlike its family's (e.g. ``{"learning_rate": 3e-3}``); a value the
    user gives wins.
    """

    def deco(builder: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        doc = (builder.__doc__ or "").strip().splitlines()
        _INFO[name] = {
            "name": name,
            "trainable": trainable,
            "description": description or (doc[0] if doc else ""),
            "factors": factors,
            "family": family,
            "wrapper": wrapper,
            "probabilistic": probabilistic,
            "train_defaults": dict(train_defaults or {}),
        }
        return builder

    return deco


def get_builder(name: str) -> Callable:
    if name not in _MODELS:
        raise ModelNotFoundError(
            f"unknown model {name!r}.{suggest(name, _MODELS)} Registered models: {', '.join(sorted(_MODELS))}"
        )
    return _MODELS[name]


def model_info(name: str) -> dict:
    get_builder(name)
    return dict(_INFO[name])


def create_model(name: str, **config):
    """Build the registered body ``name`` with keyword configuration."""
    return get_builder(name)(**config)


def list_models(trainable: bool | None = None) -> list[str]:
    """Names of the registered models (optionally only trainable ones or only baselines)."""
    return sorted(n for n, i in _INFO.items() if trainable is None or i["trainable"] == trainable)


def resolve_hook(spec: str):
    """The object named by ``"package.module:attribute"``."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def family_of(name: str):
    """The :class:`~xdownscale.engine.contract.Family` object of model ``name``.

    Families are plugins found by name (``xdownscale.families.<family>:FAMILY``), resolved
    only when a model is trained or applied, as ``wrapper`` strings are."""
    return resolve_hook(f"xdownscale.families.{model_info(name)['family']}:FAMILY")


def training_defaults(name: str) -> dict:
    """What ``fit`` uses for model ``name`` where it departs from the shared defaults: its family's
    ``train_defaults`` (a budget, a patch size), then the model's own (a learning rate, a budget)."""
    return {**getattr(family_of(name), "train_defaults", {}), **model_info(name).get("train_defaults", {})}


def build_network(network: dict):
    """Rebuild the wrapped network from a checkpoint's ``network`` configuration (a record with
    ``targets`` is a multi-target spatial model)."""
    if network.get("targets"):
        family = model_info(network["model"])["family"]
        spec = MULTI_TARGET_WRAPPERS.get(network["model"]) or MULTI_TARGET_WRAPPERS.get(family)
        if spec is None:
            raise ModelNotFoundError(f"a model of family {family!r} with several targets: no such wrapper")
        return resolve_hook(spec)(**network)
    return resolve_hook(model_info(network["model"])["wrapper"])(**network)
