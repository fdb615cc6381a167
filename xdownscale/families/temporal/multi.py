"""Several targets, or extra coarse predictors, in one temporal network.

``fit(model="convgru"|"flowconvgru", var=["msl", "tp"], constraint={...})`` and
``fit(model="convgru", lr=coarse_ds, hr=fine_ds, var="msl", predictors=["msl", "t2m"])`` (one
target driven by several inputs: ``var=["msl"]`` on this path) go through the multi-target
plumbing of the spatial models (:func:`~xdownscale.engine.multi_setup.prepare_request`: pairing,
regridding of ``lr``, one normalisation and constraint per target); the network is
:class:`~xdownscale.models.temporal_multi.MultiTargetTemporalNet`, fed windows of all inputs at
the same time steps, with the static ``covariates=`` after them. ``predict`` takes a Dataset
holding every input (and the same ``covariates=``) and returns a Dataset holding every target,
each with its own CF attributes.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from ...engine.contract import FitRequest, PredictRequest, target_names
from ...engine.record import MULTI_TARGET_SECTION
from ...errors import DataError
from ..spatial.multi import multi_inputs
from .dataset import WindowSamples
from .fit import check_series, window_limits
from .predict import predict_options, predict_packed

log = logging.getLogger("xdownscale")


def uses_multi_path(request: FitRequest) -> bool:
    """Several targets, or inputs other than the target itself (``predictors=``): this path."""
    return target_names(request.var) is not None or bool(request.predictors)


def series(fields: list[xr.DataArray], tdim: str | None, axes) -> np.ndarray:
    """(T, n, y, x) float64 array of the fields, in memory."""
    return np.stack([np.asarray(da.transpose(tdim, *axes.spatial).values, dtype="float64") for da in fields], axis=1)


def fit_temporal_multi(request: FitRequest, options_cls: type[Any]):
    """Train the multi-target temporal network (module docstring); options as :func:`.fit.fit_temporal`."""
    import torch

    from ...data.patches import default_samples_per_epoch
    from ...engine.contract import parse_options
    from ...engine.device import resolve_device
    from ...engine.multi_setup import as_targets, prepare_request
    from ...engine.setup import finish
    from ...engine.trainer import train
    from ...models import build_network

    opts = parse_options(options_cls, request.options, model=request.model)
    targets, request = as_targets(request)
    body, time_factor, gaps = opts.body(), opts.training_time_factor, opts.gaps
    setup = prepare_request(request, targets, {**body, **opts.flow()})
    pair, cfg = setup.pair, setup.cfg
    tdim = pair.axes.time
    check_series(request.model, tdim, pair.n_times)
    lo, hi, segments = window_limits(pair.hr[tdim].values, setup.val_t, gaps)
    setup.meta["temporal"] = {"window": body["window"], "time_factor": time_factor, "gaps": gaps,
                              "segments": segments}
    coarse, fine = series(pair.inputs, tdim, pair.axes), series(pair.targets, tdim, pair.axes)
    n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(setup.train_t), fine.shape[-2:],
                                                                 cfg.patch_size, cfg.batch_size)
    n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
    setup.meta["training"].update(samples_per_epoch=n_train, val_samples=n_val)
    common = dict(window=body["window"], time_factor=time_factor, factor=pair.factor, patch_size=cfg.patch_size,
                  covariates=setup.covariates)
    args = (coarse, fine, pair.row_weights, setup.input_stats, setup.sources)
    train_ds = WindowSamples(*args, setup.train_t, lo, hi, n_samples=n_train, seed=cfg.seed, **common)
    val_ds = WindowSamples(*args, setup.val_t, lo, hi, n_samples=n_val, seed=cfg.seed + 1, fixed=True, **common)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = build_network(setup.network)
    log.info("training %s x%d for %s from %s (window %d, time factor %d) on %d+%d time steps", request.model,
             pair.factor, targets, pair.input_names, body["window"], time_factor, len(setup.train_t),
             len(setup.val_t))
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=setup.checked_resume(),
                   on_epoch_end=setup.save_epoch)
    return finish(setup, net, result)  # type: ignore[arg-type]  # MultiSetup has what finish reads


def predict_temporal_multi(request: PredictRequest, downscaler) -> xr.Dataset:
    """Every target of a multi-target temporal model from the inputs in ``request.lr``."""
    from ...grid.cf import find_axes
    from ...io.cf import add_cf_attrs

    time_factor, gaps = predict_options(request)
    info = downscaler.meta[MULTI_TARGET_SECTION]
    inputs, sources = multi_inputs(request, downscaler)
    axes = find_axes(inputs[0])
    if axes.time is None:
        raise DataError(f"{inputs[0].name!r} has no time dimension: temporal models downscale a (time, y, x) series")
    inputs = [da.transpose(axes.time, *axes.spatial) for da in inputs]
    stats = list(downscaler.meta["normalization"]["inputs"])
    data, coords, synthesised = predict_packed(request, downscaler, inputs, stats, time_factor, gaps, sources)
    order = list(request.lr[inputs[0].name].dims)
    extra = {"xdownscale_time_factor": np.int32(time_factor), "xdownscale_window": np.int32(downscaler.module.window)}
    out = {}
    for k, name in enumerate(info["targets"]):
        da = xr.DataArray(data[k], dims=(axes.time, *axes.spatial), coords=coords, name=name)
        if synthesised is not None:
            da = da.assign_coords(synthesised=synthesised)
        da = da.transpose(*order)
        if request.like is not None:
            from ...engine.field_predict import snap_to

            like = request.like[name] if isinstance(request.like, xr.Dataset) else request.like
            da = snap_to(da, like, axes)
        src = inputs[sources[k]] if sources[k] is not None else inputs[0]
        da.attrs = dict(info.get("attrs", {}).get(name, {}))  # the target's own CF attributes, not its source's
        out[name] = add_cf_attrs(da, source=src.rename(name).assign_attrs(da.attrs), model=downscaler.model_name,
                                 factor=downscaler.factor, constraint=info["constraints"][name],
                                 checkpoint_hash=downscaler.checkpoint_hash, extra=extra)
    result = xr.Dataset(out)
    result.attrs = dict(request.lr.attrs)
    return result
