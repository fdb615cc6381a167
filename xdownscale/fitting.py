"""``fit``: train a downscaling model on a fine field (or a real coarse/fine pair)."""
from __future__ import annotations

import logging
import os
import time
import warnings
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

log = logging.getLogger("xdownscale")
_POSITIVE_CONSTRAINTS = ("softmax", "mult")


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


def fit(hr=None, *, lr=None, model: str = "cnn", factor: int | None = None, constraint: str = "none",
        var: str | None = None, predictors: list[str] | None = None, covariates=None,
        epochs: int = 20, batch_size: int = 64, patch_size: int = 64, learning_rate: float = 1e-3,
        lr_schedule: str = "cosine",
        loss: str = "mse", seed: int = 0, val_fraction: float = 0.2, patience: int = 5,
        samples_per_epoch: int | None = None, val_samples: int | None = None, soft_weight: float = 1.0,
        skip: str | None = "bicubic", checkpoint: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, trim: bool = False, device: str = "auto",
        num_workers: int = 0, progress: bool = True, scadd_lower: float | None = None,
        scadd_upper: float | None = None, **model_kwargs) -> Downscaler:
    """Train a downscaling model and save a self-describing checkpoint.

    ``hr``: the fine field (DataArray, or Dataset with ``var``); the coarse
    input is its exact area-weighted coarsening by ``factor``. Or a real pair:
    ``lr=coarse, hr=fine``. ``predictors``: further Dataset variables used as
    inputs; ``covariates``: static fine-grid fields (orography, land-sea mask).
    ``model_kwargs`` go to the model body (e.g. ``width=32, n_blocks=4``).
    """
    import torch

    info = model_info(model)
    _check_model_kwargs(model, model_kwargs)
    if not info["trainable"]:
        raise DataError(f"{model!r} is a baseline with nothing to train: use predict(model={model!r}, factor=...)")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, patch_size=patch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule,
                      loss=loss, seed=seed, val_fraction=val_fraction, patience=patience,
                      samples_per_epoch=samples_per_epoch, val_samples=val_samples, soft_weight=soft_weight,
                      num_workers=num_workers, device=device, progress=progress)
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
    stats["residual_std"] = residual_std(sample.reshape(-1, *sample.shape[-2:]), f, pair.row_weights, skip)
    network = {"model": model, "factor": f, "in_channels": in_channels, "constraint": constraint, "skip": skip,
               "mean": stats["mean"], "std": stats["std"], "residual_scale": stats["residual_std"],
               "constraint_kwargs": constraint_kwargs, **model_kwargs}
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = DownscalingNet(**network)
    patch = min(cfg.patch_size, *pair.hr.shape[-2:])
    n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(train_t), pair.hr.shape[-2:], patch, cfg.batch_size)
    n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
    common = dict(patch_size=cfg.patch_size, covariates=cov, extra=extra, extra_stats=extra_stats)
    train_ds = PatchDataset(pair, stats, train_t, n_samples=n_train, seed=cfg.seed, **common)
    val_ds = PatchDataset(pair, stats, val_t, n_samples=n_val, seed=cfg.seed + 1, fixed=True, **common)
    meta = {
        "network": network,
        "variable": None if hr_da.name is None else str(hr_da.name),
        "attrs": _cf_attrs(hr_da),
        "predictors": extra_names,
        "covariates": list(cov_stats),
        "normalization": {"target": stats, "predictors": extra_stats, "covariates": cov_stats},
        "grid": {"kind": axes.kind, "y": axes.y, "x": axes.x, "time": axes.time,
                 "fine_shape": list(pair.hr.shape[-2:]), "pair": "real" if lr is not None else "coarsened"},
        "training": {"config": cfg.to_dict(), "train_times": len(train_t), "val_times": len(val_t),
                     "samples_per_epoch": n_train, "val_samples": n_val},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    downscaler = Downscaler(net, meta)
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

    def save(state):
        meta["training"].update(history=state["history"], best_epoch=state["best_epoch"],
                                best_val_loss=state["best_val_loss"])
        save_checkpoint(path, state["best_state_dict"], meta, resume=state)

    log.info("training %s x%d (%s) on %d+%d time steps, %d patches/epoch", model, f, constraint,
             len(train_t), len(val_t), n_train)
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=resume_state, on_epoch_end=save)
    meta["training"].update(result)
    net.cpu()
    downscaler.checkpoint = path
    downscaler.checkpoint_hash = sha256(path) if path.exists() else None
    if downscaler.checkpoint_hash:
        model_store.register(path, variable=meta["variable"], model=model, factor=f, constraint=constraint,
                             sha256=downscaler.checkpoint_hash)
    return downscaler
