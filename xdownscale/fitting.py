"""``fit``: train a downscaling model on a fine field (or a real coarse/fine pair).

A thin face: it checks the call, builds a :class:`~xdownscale.engine.contract.FitRequest`
and hands it to the model's family (:mod:`xdownscale.families`)."""
from __future__ import annotations

import os

from .config import DEFAULT_MODEL, DEFAULT_MODEL_OPTIONS, DEFAULT_PRECISION, TrainConfig
from .engine.contract import FitRequest, target_names
from .engine.downscaler import Downscaler
from .engine.precision import check_precision
from .errors import DataError
from .models import family_of, list_models, model_info, training_defaults


def multi_target(model: str) -> bool:
    """Whether ``model`` trains several targets in one network (its family says so)."""
    family = family_of(model)
    return bool(getattr(family, "supports_multi_target", lambda name: False)(model))


def fit(hr=None, *, lr=None, model: str | None = None, factor: int | None = None, constraint="none",
        var: str | list[str] | None = None, predictors: list[str] | None = None, covariates=None,
        epochs: int | None = None, max_updates: int | None = None, max_minutes: float | None = None,
        batch_size: int = TrainConfig.batch_size, patch_size: int | None = None,
        learning_rate: float | None = None,
        lr_schedule: str = "cosine", ema: float = TrainConfig.ema,
        loss: str = "mse", seed: int = 0, val_fraction: float = 0.2, patience: int = 5,
        samples_per_epoch: int | None = None, val_samples: int | None = None, soft_weight: float = 1.0,
        skip: str | None = "bicubic", checkpoint: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, trim: bool = False, device: str = "auto",
        num_workers: int = 0, progress: bool = True, scadd_lower: float | None = None,
        scadd_upper: float | None = None, nproc: int = 1, precision: str = DEFAULT_PRECISION, consistency=None,
        **model_kwargs) -> Downscaler:
    """Train a downscaling model and save a self-describing checkpoint.

    ``hr``: the fine field (DataArray, or Dataset with ``var``); the coarse
    input is its exact area-weighted coarsening by ``factor``. Or a real pair:
    ``lr=coarse, hr=fine``. ``predictors``: further Dataset variables used as
    inputs; ``covariates``: static fine-grid fields (orography, land-sea mask; one over a larger
    domain is taken at the fine cells by its coordinates), extra input channels of the spatial,
    temporal and stochastic models (``convgru``/``flowconvgru``: with every frame of the window,
    never warped by the voxel flow; ``rnngan``, with one target or several or with predictors: with
    every frame of its sequence); ``predict`` then needs them again.

    Several targets in one network (every trainable family: the spatial and temporal models,
    ``liif``, and ``gan``/``rnngan``/``diffusion``, whose ensemble member is one joint draw of every
    target): ``var=["msl", "tp"]`` on a Dataset, with
    ``constraint`` one name for all or a dict by target, e.g. ``{"msl": "add", "tp": "softmax"}``.
    Without ``lr`` the inputs are the targets coarsened (plus ``predictors``); with
    ``lr=coarse_ds`` every gridded variable of ``lr`` is an input (``predictors=[...]`` narrows
    the set), and a target's constraint conserves the input of the same name, or a named input
    (``{"tp": ("softmax", "tp_arpege")}``), or nothing (``"none"``, or ``"soft"`` for a loss term
    towards it): see :mod:`xdownscale.engine.multi_setup`. ``predict`` then returns a Dataset.
    The temporal models and ``rnngan`` also take ``predictors=`` for one target (``var="msl"``): it
    trains on that path as ``var=["msl"]``, and ``predict`` needs a Dataset of every input.
    ``liif`` takes several targets and inputs too, and its constraints by target at ``predict``
    (``constraint={"msl": "add", "tp": "softmax"}``): ``predictors=`` of ``hr`` are coarsened with the
    targets at its random scales (it stays scale-free); a real pair ``lr=`` trains it at the pair's
    one scale, which ``predict`` defaults to (other scales warn: untested).
    ``consistency``: rules across the targets, kept with their conservation, e.g.
    ``["0<=r<=100", "d2m<=t2m", "ws=hypot(u10,v10)"]`` (:mod:`xdownscale.nn.consistency`).
    ``model_kwargs`` go to the model body (e.g. ``width=32, n_blocks=4``).
    ``model=None``: :data:`~xdownscale.config.DEFAULT_MODEL` with
    :data:`~xdownscale.config.DEFAULT_MODEL_OPTIONS` (``model="cnn"`` is Harder et al.'s network).
    Budget: ``max_updates`` optimizer steps and/or ``max_minutes`` (``epochs`` still accepted;
    none given: a fixed number of updates, the same on any archive), see :class:`TrainConfig`.
    ``learning_rate``: Adam's peak rate; None takes the model's (``xds.training_defaults(name)``:
    ``liif`` 3e-3, ``maunet`` 2e-3), else 1e-3.
    ``nproc``: train data-parallel on this many processes (PyTorch DDP, gloo on CPU, nccl on
    CUDA; ``batch_size`` is the global batch, split evenly; one target or several, for the models of
    the spatial family); inside a ``torchrun`` launch every
    rank calls ``fit`` and joins the group (see :mod:`xdownscale.engine.distributed`).
    ``precision``: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the hardware
    runs it natively): autocast of the network body with float32 master weights, for the spatial
    models (:mod:`xdownscale.engine.precision`); the resolved precision is recorded in the checkpoint.
    """
    if model is None:
        model, model_kwargs = DEFAULT_MODEL, {**DEFAULT_MODEL_OPTIONS, **model_kwargs}
    info = model_info(model)
    if not info["trainable"]:
        raise DataError(f"{model!r} is a baseline with nothing to train: use predict(model={model!r}, factor=...)")
    family = family_of(model)
    targets = target_names(var)
    if targets is not None and not multi_target(model):
        raise DataError(f"model {model!r} (family {family.name!r}) cannot train several targets yet: var=[...] is "
                        f"for {', '.join(m for m in list_models(trainable=True) if multi_target(m))} for now; train "
                        f"one {model!r} per variable")
    if targets is None and consistency:
        raise DataError(f"consistency={consistency!r} relates several targets: give them, var=[...]")
    if targets is None and isinstance(constraint, dict):
        raise DataError(f"constraint={constraint!r} is by target: give the targets too, var=[...]")
    check_precision(family, precision, model)
    if not getattr(family, "mixed_precision", False):
        precision = "fp32"  # "auto" too: the families with their own networks and loops run float32
    if nproc != 1 and family.name != "spatial":
        raise DataError(f"nproc={nproc}: data-parallel training is available for the models trained by fit's own "
                        f"loop; {model!r} has its own training (use nproc=1)")
    # a family may train otherwise by default (diffusion: DPDM's 128-cell patches and a loop that
    # counts epochs; the adversarial models: a budget of their own), and a model otherwise than its
    # family (the learning rates of liif and maunet)
    defaults = training_defaults(model)
    if patch_size is None:
        patch_size = defaults.get("patch_size", TrainConfig.patch_size)
    if learning_rate is None:
        learning_rate = defaults.get("learning_rate", TrainConfig.learning_rate)
    if epochs is None and max_updates is None:  # the family's or the model's budget, unless one is given
        epochs = defaults.get("epochs")
        if max_minutes is None:
            max_updates = defaults.get("max_updates")
    cfg = TrainConfig(epochs=epochs, max_updates=max_updates, max_minutes=max_minutes, batch_size=batch_size,
                      patch_size=patch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule, loss=loss, seed=seed, val_fraction=val_fraction, patience=patience,
                      samples_per_epoch=samples_per_epoch, val_samples=val_samples, soft_weight=soft_weight,
                      num_workers=num_workers, device=device, progress=progress, precision=precision, ema=ema)
    request = FitRequest(hr=hr, lr=lr, model=model, factor=factor, constraint=constraint,
                         var=var if targets is None else tuple(targets),
                         predictors=tuple(predictors) if predictors else None, covariates=covariates, cfg=cfg,
                         skip=skip, checkpoint=checkpoint, resume=resume, trim=trim, scadd_lower=scadd_lower,
                         scadd_upper=scadd_upper, nproc=nproc, options=dict(model_kwargs), consistency=consistency)
    return family.fit(request)
