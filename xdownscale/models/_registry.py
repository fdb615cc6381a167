"""The one model registry. Imports nothing else from the package (no cycles)."""
from __future__ import annotations

import difflib
from typing import Callable

_MODELS: dict[str, Callable] = {}
_INFO: dict[str, dict] = {}


class UnknownModelError(KeyError, ValueError):
    """A model name that is not registered; the message suggests close names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register_model(name: str, *, trainable: bool = True, description: str = "", factors: str = "any integer"):
    """Class/function decorator: ``@register_model("cnn")`` adds a builder to the registry."""

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
