"""The contract between the public API and a model family.

A family (``xdownscale/families/<name>/``) is an object with ``fit(FitRequest)`` and
``predict(PredictRequest)`` (:class:`Family`). The registry names each model's family
(``register_model(..., family="temporal")``); :func:`xdownscale.fit` and
:func:`xdownscale.predict` build a request and hand it over. Both requests are frozen: a
family reads what the user asked for and never edits it.

A family's own options (``members=``, ``window=``, ...) are one dataclass per family (or per
model, where models of one family differ). :func:`parse_options` is the only place that turns
``**options`` into that dataclass; its error names the accepted options, and
:func:`options_help` writes the CLI's ``--option`` help from the same fields.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..config import DEFAULT_MODEL, DEFAULT_PRECISION, TrainConfig
from ..errors import DataError, suggest

T = TypeVar("T")


@dataclass(frozen=True)
class FitRequest:
    """What :func:`xdownscale.fit` was asked: data, target, constraint, training configuration,
    and the family's options (``options``, still a plain dict: the family parses them)."""

    hr: Any
    lr: Any = None
    model: str = DEFAULT_MODEL
    factor: int | None = None
    constraint: Any = "none"  # a name, or for several targets a dict by target
    var: Any = None  # a name, or a tuple of names: several targets in one model
    predictors: tuple[str, ...] | None = None
    covariates: Any = None
    cfg: TrainConfig = field(default_factory=TrainConfig)
    skip: str | None = "bicubic"
    checkpoint: Any = None
    resume: Any = None
    trim: bool = False
    scadd_lower: float | None = None
    scadd_upper: float | None = None
    nproc: int = 1
    options: dict = field(default_factory=dict)
    consistency: Any = None  # rules across several targets (xdownscale.nn.consistency)

    def setup_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`xdownscale.engine.setup.prepare` this request fixes."""
        return dict(lr=self.lr, model=self.model, factor=self.factor, constraint=self.constraint, var=self.var,
                    predictors=list(self.predictors) if self.predictors else None, covariates=self.covariates,
                    cfg=self.cfg, skip=self.skip, checkpoint=self.checkpoint, resume=self.resume, trim=self.trim,
                    scadd_lower=self.scadd_lower, scadd_upper=self.scadd_upper)


@dataclass(frozen=True)
class PredictRequest:
    """What :func:`xdownscale.predict` was asked. ``model`` is a registered name or a
    :class:`~xdownscale.engine.downscaler.Downscaler` (checkpoint paths are loaded before).
    ``max_memory``: the working-memory budget of prediction (bytes, ``"2GB"`` or None for the
    machine's default; :mod:`xdownscale.engine.budget`). ``precision``: the network body's
    arithmetic (:mod:`xdownscale.engine.precision`)."""

    lr: Any
    model: Any
    factor: float | None = None
    var: str | None = None
    covariates: Any = None
    constraint: str | None = None
    chunks: Any = None
    halo: int | None = None
    batch_size: int = 16
    device: str = "auto"
    like: Any = None
    allow_other_variable: bool = False
    max_memory: Any = None
    precision: str = DEFAULT_PRECISION
    options: dict = field(default_factory=dict)

    @classmethod
    def from_call(cls, lr: Any, *, model: Any, factor: float | None = None, var: str | None = None,
                  covariates: Any = None, constraint: str | None = None, chunks: Any = None, halo: int | None = None,
                  batch_size: int = 16, device: str = "auto", like: Any = None, allow_other_variable: bool = False,
                  max_memory: Any = None, precision: str = DEFAULT_PRECISION, **options: Any) -> "PredictRequest":
        return cls(lr=lr, model=model, factor=factor, var=var, covariates=covariates, constraint=constraint,
                   chunks=chunks, halo=halo, batch_size=batch_size, device=device, like=like,
                   allow_other_variable=allow_other_variable, max_memory=max_memory, precision=precision,
                   options=options)


def target_names(var: Any) -> list[str] | None:
    """``var`` as a list of several targets, or None for the single-target path (a name or None)."""
    if var is None or isinstance(var, str):
        return None
    names = [str(v) for v in var]
    if not names or len(set(names)) != len(names):
        raise DataError(f"var={list(var)!r}: give distinct target names, e.g. var=['msl', 'tp']")
    return names


class Family(Protocol):
    """A model family: how its models are trained and applied."""

    name: str

    def fit(self, request: FitRequest) -> Any: ...

    def predict(self, request: PredictRequest) -> Any: ...

    def fit_options(self, model: str) -> type:
        """The options dataclass ``fit(model=..., **options)`` accepts."""
        ...

    def predict_options(self, model: str) -> type:
        """The options dataclass ``predict(model=..., **options)`` accepts."""
        ...


@dataclass(frozen=True)
class NoOptions:
    """A family or model that takes no options of its own."""


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_options(cls: type[T], options: dict, *, model: str, call: str = "fit") -> T:
    """``cls(**options)``, with one clear error for a name ``cls`` does not have."""
    accepted = option_names(cls)
    for key in options:
        if key not in accepted:
            listing = f"Its options: {', '.join(accepted)}" if accepted else "It takes no options of its own"
            raise DataError(f"{call}() got an unknown option {key!r}: model {model!r} does not take it."
                            f"{suggest(key, accepted)} {listing} (see xds.model_info({model!r}))")
    return cls(**options)


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def options_help(cls: type) -> list[str]:
    """One ``name (type, default ...): help`` line per option, from the dataclass fields."""
    hints = typing.get_type_hints(cls) if cls is not NoOptions else {}
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        text = f.metadata.get("help", "")
        head = f"{f.name} ({_type_name(hints.get(f.name, f.type))}, default {default})"
        lines.append(head + (f": {text}" if text else ""))
    return lines


def options_from_signature(name: str, builder: Any,
                           skip: tuple[str, ...] = ("in_channels", "factor", "out_channels")) -> type:
    """A frozen options dataclass with the keyword parameters (and defaults) of ``builder``:
    the options of a model whose body is all its family needs to know."""
    import inspect

    specs = []
    for p in inspect.signature(builder).parameters.values():
        if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        annotation = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        specs.append((p.name, annotation, field(default=default)))
    cls_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Options"
    return dataclasses.make_dataclass(cls_name, specs, frozen=True)

