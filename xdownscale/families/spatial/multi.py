"""Several targets in one spatial network: ``fit(var=["msl", "tp"])`` and its prediction.

One body with an output channel per target (:class:`~xdownscale.models.multi_target.MultiTargetNet`),
inputs that may differ from the targets (``lr=coarse_ds``, ``predictors=``), one constraint per
target (:mod:`xdownscale.engine.multi_setup`). ``predict`` takes a Dataset holding every input and
returns a Dataset holding every target.
"""
from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from ...engine.contract import FitRequest, PredictRequest
from ...engine.record import MULTI_TARGET_SECTION as SECTION
from ...errors import DataError

log = logging.getLogger("xdownscale")


def is_multi_target(downscaler) -> bool:
    return SECTION in getattr(downscaler, "meta", {})


def fit_multi(request: FitRequest, targets: list[str], model_kwargs: dict):
    import torch

    from ...engine.device import resolve_device
    from ...engine.multi_setup import prepare_request
    from ...engine.setup import finish
    from ...engine.trainer import train
    from ...models import build_network

    cfg = request.cfg
    setup = prepare_request(request, targets, model_kwargs)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = build_network(setup.network)
    train_ds, val_ds = setup.datasets()
    log.info("training %s x%d for %s from %s on %d+%d time steps", request.model, setup.factor, targets,
             setup.pair.input_names, len(setup.train_t), len(setup.val_t))
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=setup.checked_resume(),
                   on_epoch_end=setup.save_epoch)
    return finish(setup, net, result)  # type: ignore[arg-type]  # MultiSetup has what finish reads


def check_spacing(downscaler, field: xr.DataArray, allow: bool) -> None:
    """Refuse inputs on another spacing than the coarse training inputs (x factor of the fine grid)."""
    import warnings

    from ...engine.setup import grid_spacing

    grid = downscaler.meta.get("grid", {})
    fine = grid.get("fine_spacing")
    have = grid_spacing(field, (grid.get("y"), grid.get("x"))) if fine else None
    if have is None:
        return
    want = [float(s) * downscaler.factor for s in fine]
    if all(abs(h - w) <= 0.01 * w for h, w in zip(have, want)):
        return
    msg = (f"input {field.name!r} has grid spacing {have[0]:.4g} x {have[1]:.4g}, not the {want[0]:.4g} x "
           f"{want[1]:.4g} of the model's coarse training inputs")
    if not allow:
        raise DataError(msg + ": regrid it first, or pass allow_other_variable=True if this is intended")
    warnings.warn(msg, stacklevel=4)


def on_training_offset(inputs: list[xr.DataArray], offset) -> list[xr.DataArray]:
    """The inputs moved onto the coarse grid the model was trained on, relative to them: training
    regridded its (offset) inputs onto the fine grid's blocks, so the fine grid of a prediction
    is this input grid shifted by the same offset (the edge cells it covers only partly go)."""
    import warnings

    from ...grid.regrid import shift_by_cells

    msg = (f"the model was trained on inputs offset by ({offset[0]:+.3g}, {offset[1]:+.3g}) coarse cells from its "
           "fine grid's blocks: regridding these inputs conservatively by the same offset, so the fine grid "
           "relates to them as in training")
    log.warning(msg)
    warnings.warn(msg, stacklevel=4)
    return [shift_by_cells(da, offset) for da in inputs]


def multi_inputs(request: PredictRequest, downscaler) -> tuple[list[xr.DataArray], list]:
    """The checked inputs of a multi-target model from ``request.lr`` (moved by the training offset)
    and the input index each target conserves."""
    info = downscaler.meta[SECTION]
    targets, names = list(info["targets"]), list(info["inputs"])
    if not isinstance(request.lr, xr.Dataset):
        raise DataError(f"this model predicts {targets} from the inputs {names}: pass a Dataset that holds them "
                        "(coarse_ds.downscale.predict(model=m))")
    if request.constraint is not None and request.constraint != downscaler.constraint:
        raise DataError(f"the model was trained with constraints {downscaler.constraint!r}; they cannot be changed "
                        "at prediction time (train another model)")
    missing = [n for n in names if n not in request.lr.data_vars]
    if missing:
        raise DataError(f"input {missing[0]!r} that the model was trained on is not in the Dataset (it holds "
                        f"{list(map(str, request.lr.data_vars))}): pass every input {names}")
    ref = request.lr[names[0]]
    inputs = [request.lr[n].transpose(*ref.dims) if set(request.lr[n].dims) == set(ref.dims) else request.lr[n]
              for n in names]
    for da in inputs:
        if da.dims != ref.dims or da.shape != ref.shape:
            raise DataError(f"input {da.name!r} has dims {dict(da.sizes)}, not those of {ref.name!r} "
                            f"{dict(ref.sizes)}: put every input on one coarse grid (xds.regrid)")
        check_spacing(downscaler, da, request.allow_other_variable)
    offset = downscaler.meta.get("grid", {}).get("input_offset")
    if offset is not None and any(abs(o) > 0 for o in offset):
        inputs = on_training_offset(inputs, offset)
    sources = [None if info["sources"][t] is None else names.index(info["sources"][t]) for t in targets]
    warn_coarse_breaches(info.get("consistency") or [], targets, inputs, sources)
    return inputs, sources


def warn_coarse_breaches(rules: list, targets: list[str], inputs: list[xr.DataArray], sources: list) -> None:
    """A warning per consistency rule that the conserved coarse inputs break (the rule then wins
    over conservation in those cells). Inputs held in memory only: a lazy input would need a pass
    of its own over the data."""
    if not rules:
        return
    import warnings

    from ...nn.consistency import coarse_breaches, parse_rules

    coarse = {t: inputs[k].values for t, k in zip(targets, sources)
              if k is not None and isinstance(inputs[k].data, np.ndarray)}
    for line in coarse_breaches(parse_rules(rules, targets), coarse):
        log.warning(line)
        warnings.warn(line, stacklevel=5)


def predict_multi(request: PredictRequest, downscaler) -> xr.Dataset:
    """Every target of a multi-target model, downscaled from the inputs in ``request.lr``."""
    from ...engine.field_predict import predict_targets

    if request.options:
        raise DataError(f"predict() got options {sorted(request.options)} that a deterministic model does not take")
    info = downscaler.meta[SECTION]
    inputs, sources = multi_inputs(request, downscaler)
    out = predict_targets(inputs, downscaler, targets=list(info["targets"]), sources=sources,
                          attrs=info.get("attrs", {}), constraints=info["constraints"], covariates=request.covariates,
                          chunks=request.chunks, halo=request.halo, batch_size=request.batch_size,
                          device=request.device, like=request.like, max_memory=request.max_memory,
                          precision=request.precision)
    out.attrs = dict(request.lr.attrs)
    return out
