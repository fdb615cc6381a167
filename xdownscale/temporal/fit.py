"""The ``fit_with`` hook of the temporal models (``convgru``, ``flowconvgru``)."""
from __future__ import annotations

import logging

import numpy as np

from ..data.pairs import coarse_field
from ..data.patches import default_samples_per_epoch
from ..data.windows import segment_ids
from ..engine.device import resolve_device
from ..engine.trainer import train
from ..errors import DataError
from ..fitting import finish, prepare
from ..models._registry import suggest
from ..models.convgru import TemporalNet

log = logging.getLogger("xdownscale")

BODY_OPTIONS = {"channels": 32, "residual_blocks": 3, "window": 3}
FLOW_OPTIONS = {"flow_channels": 16, "max_flow": 2.0}
_DEFAULT_TIME_FACTOR = {"convgru": 1, "flowconvgru": 3}


def _options(model: str, kwargs: dict) -> tuple[dict, dict, int, str]:
    """Split and check the model options: (body, wrapper extras, training time factor, gap policy)."""
    flow = model == "flowconvgru"
    accepted = list(BODY_OPTIONS) + (list(FLOW_OPTIONS) + ["time_factor"] if flow else []) + ["gaps"]
    for key in kwargs:
        if key not in accepted:
            raise DataError(f"fit() got an unknown option {key!r} for model {model!r}.{suggest(key, accepted)} "
                            f"Model options: {', '.join(accepted)}")
    body = {k: int(kwargs.get(k, v)) for k, v in BODY_OPTIONS.items()}
    extra = {k: type(v)(kwargs.get(k, v)) for k, v in FLOW_OPTIONS.items()} if flow else {}
    time_factor = int(kwargs.get("time_factor", _DEFAULT_TIME_FACTOR[model]))
    if time_factor < 1 or body["window"] < 1:
        raise DataError(f"time_factor and window must be >= 1, got {time_factor} and {body['window']}")
    return body, extra, time_factor, kwargs.get("gaps", "split")


def _limits(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of the contiguous run (same label) of every position."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts, stops = np.concatenate([[0], change]), np.concatenate([change, [labels.size]]) - 1
    which = np.searchsorted(starts, np.arange(labels.size), side="right") - 1
    return starts[which], stops[which]


def fit_temporal(hr=None, *, lr=None, model: str, factor=None, constraint="none", var=None, predictors=None,
                 covariates=None, cfg, skip="bicubic", checkpoint=None, resume=None, trim=False, scadd_lower=None,
                 scadd_upper=None, **model_kwargs):
    """Train ``convgru``/``flowconvgru`` on a (time, y, x) series; see :func:`xdownscale.fit`.

    Options: ``channels``, ``residual_blocks``, ``window`` (time steps, default 3), ``gaps``
    ("split" or "error"); ``flowconvgru`` also ``time_factor`` (default 3: inputs every 3rd
    step, the two between are synthesised), ``flow_channels``, ``max_flow`` (coarse cells).
    """
    import torch

    body, extra, time_factor, gaps = _options(model, model_kwargs)
    if predictors or covariates is not None:
        raise DataError(f"model {model!r} takes the target variable only: drop predictors= and covariates=")
    setup = prepare(hr, lr=lr, model=model, factor=factor, constraint=constraint, var=var, cfg=cfg, skip=skip,
                    checkpoint=checkpoint, resume=resume, trim=trim, scadd_lower=scadd_lower,
                    scadd_upper=scadd_upper, model_kwargs=body, network_extra=extra)
    pair, tdim = setup.pair, setup.pair.axes.time
    if tdim is None or pair.n_times < 2:
        raise DataError(f"model {model!r} needs a time series (a time dimension with >= 2 steps); "
                        "use model='cnn' for single fields")
    seg = segment_ids(pair.hr[tdim].values, gaps=gaps)
    split = np.zeros(pair.n_times, dtype=int)
    split[setup.val_t] = 1  # windows never cross the train/validation boundary either
    labels = np.unique(np.stack([seg, split], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    lo, hi = _limits(labels)
    setup.meta["temporal"] = {"window": body["window"], "time_factor": time_factor, "gaps": gaps,
                              "segments": int(seg.max()) + 1}
    coarse = np.asarray(coarse_field(pair).transpose(tdim, *pair.axes.spatial).values, dtype="float64")
    fine = np.asarray(pair.hr.transpose(tdim, *pair.axes.spatial).values, dtype="float64")
    cfg = setup.cfg
    n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(setup.train_t), fine.shape[-2:],
                                                                 cfg.patch_size, cfg.batch_size)
    n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
    setup.meta["training"].update(samples_per_epoch=n_train, val_samples=n_val)
    common = dict(window=body["window"], time_factor=time_factor, factor=pair.factor, patch_size=cfg.patch_size)
    from .dataset import SequencePatchDataset

    train_ds = SequencePatchDataset(coarse, fine, pair.row_weights, setup.stats, setup.train_t, lo, hi,
                                    n_samples=n_train, seed=cfg.seed, **common)
    val_ds = SequencePatchDataset(coarse, fine, pair.row_weights, setup.stats, setup.val_t, lo, hi,
                                  n_samples=n_val, seed=cfg.seed + 1, fixed=True, **common)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = TemporalNet(**setup.network)
    log.info("training %s x%d (%s, window %d, time factor %d) on %d+%d time steps", model, pair.factor,
             constraint, body["window"], time_factor, len(setup.train_t), len(setup.val_t))
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=setup.resume_state,
                   on_epoch_end=setup.save_epoch)
    return finish(setup, net, result)
