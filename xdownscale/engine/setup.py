"""Shared training plumbing: pair, split, normalise and describe a run; record and register it.

Every family trains through :func:`prepare` (a :class:`TrainingSetup`) and :func:`finish`
(the checkpoint in the model store and a :class:`~xdownscale.engine.downscaler.Downscaler`).
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .. import model_store
from ..config import TrainConfig
from ..data import (
    PatchDataset,
    covariate_stats,
    default_samples_per_epoch,
    fit_stats,
    fold_covariates,
    make_pair,
    scadd_bounds,
)
from ..data.covariates import as_dataset, spatial_coords
from ..data.normalize import residual_std, zero_bounded
from ..data.pairs import Pair, select_variable
from ..errors import DataError
from .checkpoint import read_checkpoint, save_checkpoint, sha256
from .downscaler import Downscaler
from .record import MULTI_TARGET_SECTION, ModelRecord

log = logging.getLogger("xdownscale")
POSITIVE_CONSTRAINTS = ("softmax", "mult")


def split_times(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-based split: the last ``val_fraction`` of the time steps validate."""
    idx = np.arange(n)
    if n < 2 or val_fraction == 0:
        if n < 2:
            warnings.warn("only one time step: validating on the training field", stacklevel=3)
        return idx, idx
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return idx[: n - n_val], idx[n - n_val :]


def cf_attrs(da: xr.DataArray) -> dict:
    keep = ("units", "standard_name", "long_name", "cell_methods", "grid_mapping")
    return {k: str(da.attrs[k]) for k in keep if k in da.attrs}


def check_constraint_fits(constraint: str, stats: dict, name) -> None:
    if constraint in POSITIVE_CONSTRAINTS and stats["min"] < 0:
        raise DataError(
            f"constraint {constraint!r} needs a non-negative field, but {name!r} reaches {stats['min']:.4g} "
            "in the training data; use constraint='add' or 'scadd' (or convert units, e.g. degC -> K)"
        )


UNBOUNDED_CONSTRAINTS = ("none", "soft", "add")  # constraints that let a prediction go below zero


def warn_if_unbounded(constraint: str, stats: dict, name) -> None:
    """One line when a target that stops at zero in training (rain: :func:`zero_bounded` of its
    statistics) is fitted with a constraint that lets its predictions go below zero."""
    if constraint in UNBOUNDED_CONSTRAINTS and zero_bounded(stats):
        warnings.warn(f"{name!r} stops at zero in the training data, but constraint={constraint!r} lets its "
                      "predictions go below zero (the bicubic skip alone does beside dry cells): pass "
                      "constraint='softmax' to keep it non-negative and conserve its coarse mass", UserWarning,
                      stacklevel=4)


@dataclass
class TrainingSetup:
    """Everything :func:`prepare` describes before a network is trained."""

    cfg: TrainConfig
    model: str
    pair: Pair
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

    def checked_resume(self) -> dict | None:
        """The training state to resume from (None: from scratch); checked when prepared."""
        return self.resume_state

    def save_epoch(self, state: dict) -> None:
        """``on_epoch_end`` callback for a trainer: best weights plus the resume state."""
        save_round(self.meta, self.path, state)


def save_round(meta: dict, path: Path, state: dict) -> None:
    """Record a trainer's round in ``meta`` and write the checkpoint: the best weights plus what
    ``resume`` needs (every setup's ``save_epoch``)."""
    meta["training"].update(history=state["history"], best_epoch=state["best_epoch"],
                            best_val_loss=state["best_val_loss"], start_val_loss=state.get("start_val_loss"))
    save_checkpoint(path, state["best_state_dict"], meta, resume=state)


def trained_precision(cfg: TrainConfig) -> str:
    """The precision the trainer will run in (``"auto"`` resolved on the training device)."""
    from .device import resolve_device
    from .precision import resolve_precision

    return resolve_precision(cfg.precision, resolve_device(cfg.device))


def grid_spacing(da: xr.DataArray, dims) -> list[float] | None:
    """|step| of ``da``'s grid along ``dims`` (None without coordinates): recorded for the fine
    training grid, and compared with an input's, so a model is not applied to another spacing."""
    steps = []
    for dim in dims:
        v = np.asarray(da[dim].values, dtype="float64") if dim in da.coords else np.zeros(0)
        if v.ndim != 1 or v.size < 2:
            return None
        steps.append(float(np.median(np.abs(np.diff(v)))))
    return steps


def prepare(hr=None, *, lr=None, model: str = "cnn", factor: int | None = None, constraint: str = "none",
            var: str | None = None, predictors: list[str] | None = None, covariates=None, cfg: TrainConfig,
            skip: str | None = "bicubic", checkpoint=None, resume=None, trim: bool = False,
            scadd_lower: float | None = None, scadd_upper: float | None = None, model_kwargs: dict | None = None,
            network_extra: dict | None = None, record_factor: float | None = None,
            bounds_itself: bool = False) -> TrainingSetup:
    """Pair, split, normalise and describe a training run (no network is built here).

    ``network_extra``: what the family adds to the network configuration; ``record_factor``:
    the factor the checkpoint, the model store and resuming know the model by, where it is not
    the pairing factor (scale-free models: 0, "any"); ``bounds_itself``: the family keeps a
    target that stops at zero above it (liif), so an unbounded constraint is not warned about."""
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
    train_t, val_t = split_times(pair.n_times, cfg.val_fraction)
    tdim = axes.time
    train_field = pair.hr.isel({tdim: train_t}) if tdim else pair.hr
    stats = fit_stats(train_field, tdim)
    check_constraint_fits(constraint, stats, hr_da.name)
    if not bounds_itself:
        warn_if_unbounded(constraint, stats, hr_da.name)
    extra_stats = [fit_stats(e.isel({tdim: train_t}) if tdim in e.dims else e, tdim) for e in extra]
    cov_ds = as_dataset(covariates)
    cov_stats = covariate_stats(cov_ds) if cov_ds is not None else {}
    cov = fold_covariates(cov_ds, cov_stats, pair.hr.shape[-2:], f, spatial_coords(pair.hr, axes.spatial))
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
    known_as = f if record_factor is None else record_factor
    network = {"model": model, "factor": known_as, "in_channels": in_channels, "constraint": constraint, "skip": skip,
               "mean": stats["mean"], "std": stats["std"], "residual_scale": stats["residual_std"],
               "constraint_kwargs": constraint_kwargs, **(network_extra or {}), **model_kwargs}
    meta = ModelRecord(
        network=network,
        variable=None if hr_da.name is None else str(hr_da.name),
        attrs=cf_attrs(hr_da),
        predictors=extra_names,
        covariates=list(cov_stats),
        normalization={"target": stats, "predictors": extra_stats, "covariates": cov_stats},
        grid={"kind": axes.kind, "y": axes.y, "x": axes.x, "time": axes.time,
              "fine_shape": list(pair.hr.shape[-2:]), "pair": "real" if lr is not None else "coarsened",
              "fine_spacing": grid_spacing(pair.hr, axes.spatial)},
        training={"config": cfg.to_dict(), "train_times": len(train_t), "val_times": len(val_t),
                  "precision": trained_precision(cfg)},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    ).to_meta()
    path = Path(checkpoint) if checkpoint else model_store.default_path(meta["variable"], model, known_as)
    resume_state = None
    if resume is not None:
        payload = read_checkpoint(resume)
        if payload["network"]["model"] != model or payload["network"]["factor"] != known_as:
            raise DataError(f"cannot resume from {str(resume)!r}: it holds {payload['network']['model']!r} "
                            f"x{payload['network']['factor']}, not {model!r} x{known_as}")
        several = payload.get(MULTI_TARGET_SECTION)
        if several is not None:
            raise DataError(f"cannot resume from {str(resume)!r}: it was trained on the targets {several['targets']} "
                            f"from the inputs {several['inputs']}, not on {meta['variable']!r} alone; resume with "
                            "the var= and predictors= it was trained with, or train from scratch")
        resume_state = payload.get("resume")
        if resume_state is None:
            raise DataError(f"{str(resume)!r} holds no training state to resume from")
    return TrainingSetup(cfg=cfg, model=model, pair=pair, hr_da=hr_da, extra=extra, extra_names=extra_names,
                         extra_stats=extra_stats, train_t=train_t, val_t=val_t, stats=stats, covariates=cov,
                         cov_stats=cov_stats, network=network, meta=meta, path=path, resume_state=resume_state)


def finish(setup: TrainingSetup, net, result: dict) -> Downscaler:
    """Record the training result, register the checkpoint in the model store (under the factor
    the network records), return the Downscaler."""
    setup.meta["training"].update(result)
    net.cpu()
    downscaler = Downscaler(net, setup.meta)
    downscaler.checkpoint = setup.path
    downscaler.checkpoint_hash = sha256(setup.path) if setup.path.exists() else None
    if downscaler.checkpoint_hash:
        model_store.register(setup.path, variable=setup.meta["variable"], model=setup.model,
                             factor=setup.network["factor"],
                             constraint=setup.network.get("constraint", "none"), sha256=downscaler.checkpoint_hash)
    return downscaler


