"""``fit``: train a downscaling model on a fine field (or a real coarse/fine pair)."""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from . import model_store
from .config import TrainConfig
from .data import (PatchDataset, covariate_stats, default_samples_per_epoch, fit_stats, fold_covariates,
                   make_pair, scadd_bounds)
from .data.covariates import as_dataset
from .data.normalize import residual_std
from .data.pairs import select_variable
from .downscaler import Downscaler
from .engine.checkpoint import read_checkpoint, save_checkpoint, sha256
from .engine.device import resolve_device
from .engine.trainer import train
from .errors import DataError
from .models import DownscalingNet, model_info
from .models._registry import resolve_hook

log = logging.getLogger("xdownscale")
_POSITIVE_CONSTRAINTS = ("softmax", "mult")
_SHARED_TRAINER_HOOKS = ("xdownscale.temporal:fit_temporal", "xdownscale.arbitrary_scale:fit_liif")


def _split_times(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-based split: the last ``val_fraction`` of the time steps validate."""
    idx = np.arange(n)
    if n < 2 or val_fraction == 0:
        if n < 2:
            warnings.warn("only one time step: validating on the training field", stacklevel=3)
        return idx, idx
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return idx[: n - n_val], idx[n - n_val :]


def _cf_attrs(da: xr.DataArray) -> dict:
    keep = ("units", "standard_name", "long_name", "cell_methods", "grid_mapping")
    return {k: str(da.attrs[k]) for k in keep if k in da.attrs}


def _check_constraint_fits(constraint: str, stats: dict, name) -> None:
    if constraint in _POSITIVE_CONSTRAINTS and stats["min"] < 0:
        raise DataError(
            f"constraint {constraint!r} needs a non-negative field, but {name!r} reaches {stats['min']:.4g} "
            "in the training data; use constraint='add' or 'scadd' (or convert units, e.g. degC -> K)"
        )


def _check_model_kwargs(model: str, kwargs: dict) -> None:
    import inspect

    from .models._registry import get_builder, suggest

    accepted = [p for p in inspect.signature(get_builder(model)).parameters if p not in ("in_channels", "factor",
                                                                                         "out_channels")]
    for key in kwargs:
        if key not in accepted:
            raise DataError(f"fit() got an unknown option {key!r} for model {model!r}.{suggest(key, accepted)} "
                            f"Model options: {', '.join(accepted)}")


@dataclass
class TrainingSetup:
    """Everything :func:`fit` prepares before a network is trained; model families with their
    own training loop (``register_model(..., fit_with=...)``) reuse it through :func:`prepare`
    and :func:`finish`."""

    cfg: TrainConfig
    model: str
    pair: object
    hr_da: xr.DataArray
    extra: list
    extra_names: list
    extra_stats: list
    train_t: np.ndarray
    val_t: np.ndarray
    stats: dict
    covariates: np.ndarray | None
    cov_stats: dict
    network: dict
    meta: dict
    path: Path
    resume_state: dict | None

    @property
    def factor(self) -> int:
        return self.pair.factor

    def datasets(self, **kwargs) -> tuple[PatchDataset, PatchDataset]:
        """The training and validation patch streams (``kwargs`` go to both PatchDatasets)."""
        cfg = self.cfg
        patch = min(cfg.patch_size, *self.pair.hr.shape[-2:])
        n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(self.train_t), self.pair.hr.shape[-2:], patch,
                                                                     cfg.batch_size)
        n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
        common = dict(patch_size=cfg.patch_size, covariates=self.covariates, extra=self.extra,
                      extra_stats=self.extra_stats, **kwargs)
        self.meta["training"].update(samples_per_epoch=n_train, val_samples=n_val)
        return (PatchDataset(self.pair, self.stats, self.train_t, n_samples=n_train, seed=cfg.seed, **common),
                PatchDataset(self.pair, self.stats, self.val_t, n_samples=n_val, seed=cfg.seed + 1, fixed=True,
                             **common))

    def save_epoch(self, state: dict) -> None:
        """``on_epoch_end`` callback for a trainer: best weights plus the resume state."""
        self.meta["training"].update(history=state["history"], best_epoch=state["best_epoch"],
                                     best_val_loss=state["best_val_loss"])
        save_checkpoint(self.path, state["best_state_dict"], self.meta, resume=state)


def prepare(hr=None, *, lr=None, model: str = "cnn", factor: int | None = None, constraint: str = "none",
            var: str | None = None, predictors: list[str] | None = None, covariates=None, cfg: TrainConfig,
            skip: str | None = "bicubic", checkpoint=None, resume=None, trim: bool = False,
            scadd_lower: float | None = None, scadd_upper: float | None = None, model_kwargs: dict | None = None,
            network_extra: dict | None = None) -> TrainingSetup:
    """Pair, split, normalise and describe a training run (no network is built here)."""
    model_kwargs = dict(model_kwargs or {})
    source = hr
    hr_da = select_variable(hr, var, "hr") if hr is not None else None
    if hr_da is None:
        raise DataError("give the high-resolution field: fit(hr, factor=...) or fit(lr=coarse, hr=fine)")
    lr_da = select_variable(lr, hr_da.name, "lr") if lr is not None else None
    pair = make_pair(hr_da, factor, lr_da, trim=trim)
    f, axes = pair.factor, pair.axes
    extra_names = [p for p in (predictors or []) if p != hr_da.name]
    extra = []
    for p in extra_names:
        src = lr if (lr is not None and isinstance(lr, xr.Dataset)) else source
        if not isinstance(src, xr.Dataset):
            raise DataError("predictors=... needs a Dataset that holds those variables")
        da = select_variable(src, p)
        extra.append(da.transpose(*pair.hr.dims) if set(da.dims) == set(pair.hr.dims) else da)
    train_t, val_t = _split_times(pair.n_times, cfg.val_fraction)
    tdim = axes.time
    train_field = pair.hr.isel({tdim: train_t}) if tdim else pair.hr
    stats = fit_stats(train_field, tdim)
    _check_constraint_fits(constraint, stats, hr_da.name)
    extra_stats = [fit_stats(e.isel({tdim: train_t}) if tdim in e.dims else e, tdim) for e in extra]
    cov_ds = as_dataset(covariates)
    cov_stats = covariate_stats(cov_ds) if cov_ds is not None else {}
    cov = fold_covariates(cov_ds, cov_stats, pair.hr.shape[-2:], f)
    in_channels = 1 + len(extra) + (0 if cov is None else cov.shape[0])
    constraint_kwargs = scadd_bounds(stats, scadd_lower, scadd_upper) if constraint == "scadd" else None
    sample_t = train_t[np.linspace(0, len(train_t) - 1, min(8, len(train_t))).round().astype(int)]
    sample = np.asarray((pair.hr.isel({tdim: sample_t}) if tdim else pair.hr).values, dtype="float64")
    coarse_sample = None
    if pair.lr is not None:  # a real pair: the residual includes the source's bias
        coarse_sample = np.asarray((pair.lr.isel({tdim: sample_t}) if tdim else pair.lr).values, dtype="float64")
        coarse_sample = coarse_sample.reshape(-1, *coarse_sample.shape[-2:])
    stats["residual_std"] = residual_std(sample.reshape(-1, *sample.shape[-2:]), f, pair.row_weights, skip,
                                         coarse=coarse_sample)
    network = {"model": model, "factor": f, "in_channels": in_channels, "constraint": constraint, "skip": skip,
               "mean": stats["mean"], "std": stats["std"], "residual_scale": stats["residual_std"],
               "constraint_kwargs": constraint_kwargs, **(network_extra or {}), **model_kwargs}
    meta = {
        "network": network,
        "variable": None if hr_da.name is None else str(hr_da.name),
        "attrs": _cf_attrs(hr_da),
        "predictors": extra_names,
        "covariates": list(cov_stats),
        "normalization": {"target": stats, "predictors": extra_stats, "covariates": cov_stats},
        "grid": {"kind": axes.kind, "y": axes.y, "x": axes.x, "time": axes.time,
                 "fine_shape": list(pair.hr.shape[-2:]), "pair": "real" if lr is not None else "coarsened"},
        "training": {"config": cfg.to_dict(), "train_times": len(train_t), "val_times": len(val_t)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(checkpoint) if checkpoint else model_store.default_path(meta["variable"], model, f)
    resume_state = None
    if resume is not None:
        payload = read_checkpoint(resume)
        if payload["network"]["model"] != model or int(payload["network"]["factor"]) != f:
            raise DataError(f"cannot resume from {str(resume)!r}: it holds {payload['network']['model']!r} "
                            f"x{payload['network']['factor']}, not {model!r} x{f}")
        resume_state = payload.get("resume")
        if resume_state is None:
            raise DataError(f"{str(resume)!r} holds no training state to resume from")
    return TrainingSetup(cfg=cfg, model=model, pair=pair, hr_da=hr_da, extra=extra, extra_names=extra_names,
                         extra_stats=extra_stats, train_t=train_t, val_t=val_t, stats=stats, covariates=cov,
                         cov_stats=cov_stats, network=network, meta=meta, path=path, resume_state=resume_state)


def finish(setup: TrainingSetup, net, result: dict, store_factor: float | None = None) -> Downscaler:
    """Record the training result, register the checkpoint in the model store, return the Downscaler.

    ``store_factor``: the factor the model store files it under (default the training factor;
    scale-free models use 0, "any")."""
    setup.meta["training"].update(result)
    net.cpu()
    downscaler = Downscaler(net, setup.meta)
    downscaler.checkpoint = setup.path
    downscaler.checkpoint_hash = sha256(setup.path) if setup.path.exists() else None
    if downscaler.checkpoint_hash:
        model_store.register(setup.path, variable=setup.meta["variable"], model=setup.model,
                             factor=setup.factor if store_factor is None else store_factor,
                             constraint=setup.network.get("constraint", "none"), sha256=downscaler.checkpoint_hash)
    return downscaler


def fit(hr=None, *, lr=None, model: str = "cnn", factor: int | None = None, constraint: str = "none",
        var: str | None = None, predictors: list[str] | None = None, covariates=None,
        epochs: int | None = None, max_updates: int | None = None, max_minutes: float | None = None,
        batch_size: int = 64, patch_size: int = 64, learning_rate: float = 1e-3,
        lr_schedule: str = "cosine",
        loss: str = "mse", seed: int = 0, val_fraction: float = 0.2, patience: int = 5,
        samples_per_epoch: int | None = None, val_samples: int | None = None, soft_weight: float = 1.0,
        skip: str | None = "bicubic", checkpoint: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, trim: bool = False, device: str = "auto",
        num_workers: int = 0, progress: bool = True, scadd_lower: float | None = None,
        scadd_upper: float | None = None, nproc: int = 1, **model_kwargs) -> Downscaler:
    """Train a downscaling model and save a self-describing checkpoint.

    ``hr``: the fine field (DataArray, or Dataset with ``var``); the coarse
    input is its exact area-weighted coarsening by ``factor``. Or a real pair:
    ``lr=coarse, hr=fine``. ``predictors``: further Dataset variables used as
    inputs; ``covariates``: static fine-grid fields (orography, land-sea mask).
    ``model_kwargs`` go to the model body (e.g. ``width=32, n_blocks=4``).
    Budget: ``max_updates`` optimizer steps and/or ``max_minutes`` (``epochs`` still accepted;
    none given: a fixed number of updates, the same on any archive), see :class:`TrainConfig`.
    ``nproc``: train data-parallel on this many processes (PyTorch DDP, gloo on CPU, nccl on
    CUDA; ``batch_size`` is the global batch, split evenly); inside a ``torchrun`` launch every
    rank calls ``fit`` and joins the group (see :mod:`xdownscale.engine.distributed`).
    """
    import torch

    info = model_info(model)
    if not info["trainable"]:
        raise DataError(f"{model!r} is a baseline with nothing to train: use predict(model={model!r}, factor=...)")
    if epochs is None and info["fit_with"] and info["fit_with"] not in _SHARED_TRAINER_HOOKS:
        epochs = 20  # families with their own loop (gan, rnngan, diffusion) count epochs
    cfg = TrainConfig(epochs=epochs, max_updates=max_updates, max_minutes=max_minutes, batch_size=batch_size,
                      patch_size=patch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule,
                      loss=loss, seed=seed, val_fraction=val_fraction, patience=patience,
                      samples_per_epoch=samples_per_epoch, val_samples=val_samples, soft_weight=soft_weight,
                      num_workers=num_workers, device=device, progress=progress)
    common = dict(lr=lr, model=model, factor=factor, constraint=constraint, var=var, predictors=predictors,
                  covariates=covariates, cfg=cfg, skip=skip, checkpoint=checkpoint, resume=resume, trim=trim,
                  scadd_lower=scadd_lower, scadd_upper=scadd_upper)
    if info["fit_with"] and nproc != 1:
        raise DataError(f"nproc={nproc}: data-parallel training is available for the models trained by fit's own "
                        f"loop; {model!r} has its own training (use nproc=1)")
    if info["fit_with"]:
        # a family with its own training (GAN, diffusion, ...): it checks its own options
        return resolve_hook(info["fit_with"])(hr, **common, **model_kwargs)
    _check_model_kwargs(model, model_kwargs)
    from .engine import distributed

    if distributed.launched_by_torchrun():
        return distributed.fit_torchrun(hr, common=common, model_kwargs=model_kwargs)
    if distributed.check_nproc(nproc, cfg) > 1:
        return distributed.fit_distributed(hr, nproc=nproc, common=common, model_kwargs=model_kwargs)
    setup = prepare(hr, **common, model_kwargs=model_kwargs)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = DownscalingNet(**setup.network)
    train_ds, val_ds = setup.datasets()
    log.info("training %s x%d (%s) on %d+%d time steps, %d patches/epoch", model, setup.factor, constraint,
             len(setup.train_t), len(setup.val_t), len(train_ds))
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=setup.resume_state,
                   on_epoch_end=setup.save_epoch)
    return finish(setup, net, result)
