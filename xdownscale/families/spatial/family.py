"""``SpatialFamily``: the default training loop and tiled prediction."""
from __future__ import annotations

import functools
import logging

import numpy as np
import xarray as xr

from ...engine.contract import (
    FitRequest,
    NoOptions,
    PredictRequest,
    options_from_signature,
    parse_options,
    target_names,
)
from ...errors import DataError
from ...models import get_builder
from .multi import fit_multi, is_multi_target, predict_multi

log = logging.getLogger("xdownscale")


@functools.lru_cache(maxsize=None)
def body_options(model: str) -> type:
    """The options dataclass of a spatial model: its body builder's keyword parameters."""
    return options_from_signature(model, get_builder(model))


class SpatialFamily:
    name = "spatial"
    mixed_precision = True  # fit and predict honour precision= (engine/precision.py)

    def fit_options(self, model: str) -> type:
        return body_options(model)

    def supports_multi_target(self, model: str) -> bool:
        return True

    def predict_options(self, model: str) -> type:
        return NoOptions

    def fit(self, request: FitRequest):
        import torch

        from ...engine import distributed
        from ...engine.device import resolve_device
        from ...engine.setup import finish, prepare
        from ...engine.trainer import train
        from ...models import DownscalingNet

        parse_options(body_options(request.model), request.options, model=request.model)
        model_kwargs = dict(request.options)  # only what the user set goes into the checkpoint
        targets = target_names(request.var)
        cfg = request.cfg
        # data-parallel training: one target or several, the same ranks and the same trainer
        make_setup = distributed.SetupFactory(request, model_kwargs, None if targets is None else tuple(targets))
        if distributed.launched_by_torchrun():
            return distributed.fit_torchrun(make_setup)
        if distributed.check_nproc(request.nproc, cfg) > 1:
            return distributed.fit_distributed(make_setup, nproc=request.nproc)
        if targets is not None:
            return fit_multi(request, targets, model_kwargs)
        setup = prepare(request.hr, **request.setup_kwargs(), model_kwargs=model_kwargs)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        net = DownscalingNet(**setup.network)
        train_ds, val_ds = setup.datasets()
        log.info("training %s x%d (%s) on %d+%d time steps, %d patches/epoch", request.model, setup.factor,
                 request.constraint, len(setup.train_t), len(setup.val_t), len(train_ds))
        result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=setup.resume_state,
                       on_epoch_end=setup.save_epoch)
        return finish(setup, net, result)

    def predict(self, request: PredictRequest):
        from ...engine.downscaler import Downscaler
        from ...engine.field_predict import pick, predict_dataarray
        from ...engine.resolve import fit_baseline_to, resolve_model

        r = request
        model = r.model
        if r.options:
            raise DataError(f"predict() got options {sorted(r.options)} that "
                            f"{getattr(model, 'model_name', model)!r} does not take; see xds.model_info(name) "
                            "for what each model family accepts")
        if is_multi_target(model):
            return predict_multi(r, model)
        common = dict(covariates=r.covariates, chunks=r.chunks, halo=r.halo, batch_size=r.batch_size,
                      device=r.device, like=r.like, max_memory=r.max_memory, precision=r.precision)
        if isinstance(r.lr, xr.Dataset):
            name = r.var
            if name is None and isinstance(model, Downscaler):
                name = model.variable if model.variable in r.lr else None
            da = pick(r.lr, name)
            downscaler = fit_baseline_to(resolve_model(model, factor=r.factor, variable=str(da.name),
                                                       constraint=r.constraint, field=da,
                                                       allow_other_variable=r.allow_other_variable), da)
            extra = [pick(r.lr, p) for p in downscaler.meta.get("predictors", [])]
            result = predict_dataarray(da, downscaler, extra=extra, **common).to_dataset()
            result.attrs = dict(r.lr.attrs)
            return result
        if not isinstance(r.lr, xr.DataArray):
            raise DataError(f"expected an xarray DataArray or Dataset, got {type(r.lr).__name__}")
        downscaler = resolve_model(model, factor=r.factor, variable=None if r.lr.name is None else str(r.lr.name),
                                   constraint=r.constraint, field=r.lr, allow_other_variable=r.allow_other_variable)
        downscaler = fit_baseline_to(downscaler, r.lr)
        if downscaler.meta.get("predictors"):
            raise DataError(f"this model also needs predictors {downscaler.meta['predictors']}: pass the Dataset "
                            "(ds.downscale.predict(...)) instead of one DataArray")
        return predict_dataarray(r.lr, downscaler, **common)


FAMILY = SpatialFamily()
