"""The one model registry. Imports nothing else from the package (no cycles)."""
from __future__ import annotations

import difflib
import importlib
from typing import Callable

_MODELS: dict[str, Callable] = {}
_INFO: dict[str, dict] = {}


class UnknownModelError(KeyError, ValueError):
    """A model name that is not registered; the message suggests close names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


DEFAULT_WRAPPER = "xdownscale.models.network:DownscalingNet"


def register_model(name: str, *, trainable: bool = True, description: str = "", factors: str = "any integer",
                   family: str = "spatial", wrapper: str = DEFAULT_WRAPPER, fit_with: str | None = None,
                   predict_with: str | None = None, probabilistic: bool = False):
    """Class/function decorator: ``@register_model("cnn")`` adds a builder to the registry.

    A model family that needs more than the default spatial path names its own
    pieces as ``"module:attribute"`` strings, resolved lazily (so this module
    imports nothing from the package): ``wrapper`` (the ``nn.Module`` that wraps
    the body and is rebuilt from a checkpoint's ``network`` dict), ``fit_with``
    (called by :func:`xdownscale.fit` with all its arguments) and ``predict_with``
    (called by :func:`xdownscale.predict`).
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
            "fit_with": fit_with,
            "predict_with": predict_with,
            "probabilistic": probabilistic,
        }
        return builder

    return deco


def suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def get_builder(name: str) -> Callable:
    if name not in _MODELS:
        raise UnknownModelError(
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


def build_network(network: dict):
    """Rebuild the wrapped network from a checkpoint's ``network`` configuration."""
    return resolve_hook(model_info(network["model"])["wrapper"])(**network)
