"""Training of the temporal models (``convgru``, ``flowconvgru``)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...data.pairs import coarse_field
from ...data.patches import default_samples_per_epoch
from ...data.windows import segment_ids
from ...engine.contract import FitRequest, parse_options
from ...engine.device import resolve_device
from ...engine.setup import finish, prepare
from ...engine.trainer import train
from ...errors import DataError
from ...models.convgru import TemporalNet
from .dataset import SequencePatchDataset

log = logging.getLogger("xdownscale")

def _limits(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of the contiguous run (same label) of every position."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts, stops = np.concatenate([[0], change]), np.concatenate([change, [labels.size]]) - 1
    which = np.searchsorted(starts, np.arange(labels.size), side="right") - 1
    return starts[which], stops[which]


def window_limits(times, val_t, gaps: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(lo, hi, segments)``: the first and last index of the run every time step's windows stay
    in (gaps split the series; windows never cross the train/validation boundary either)."""
    seg = segment_ids(times, gaps=gaps)
    split = np.zeros(len(times), dtype=int)
    split[val_t] = 1
    labels = np.unique(np.stack([seg, split], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    lo, hi = _limits(labels)
    return lo, hi, int(seg.max()) + 1


def check_series(model: str, tdim, n_times: int) -> None:
    if tdim is None or n_times < 2:
        raise DataError(f"model {model!r} needs a time series (a time dimension with >= 2 steps); "
                        "use model='cnn' for single fields")


def fit_temporal(request: FitRequest, options_cls: type[Any]):
    """Train ``convgru``/``flowconvgru`` on a (time, y, x) series; see :func:`xdownscale.fit`.

    Options (:mod:`.options`): ``channels``, ``residual_blocks``, ``window`` (time steps,
    default 3), ``gaps`` ("split" or "error"); ``flowconvgru`` also ``time_factor`` (default 3:
    inputs every 3rd step, the two between are synthesised), ``flow_channels``, ``max_flow``.
    ``covariates``: static fine-grid fields, folded onto the coarse grid as in the spatial models
    and given to the network with every frame of the window (not warped by the voxel flow).
    """
    import torch

    opts = parse_options(options_cls, request.options, model=request.model)
    model, constraint = request.model, request.constraint
    body, extra, time_factor, gaps = opts.body(), opts.flow(), opts.training_time_factor, opts.gaps
    setup = prepare(request.hr, **request.setup_kwargs(), model_kwargs=body, network_extra=extra)
    pair, tdim = setup.pair, setup.pair.axes.time
    check_series(model, tdim, pair.n_times)
    lo, hi, segments = window_limits(pair.hr[tdim].values, setup.val_t, gaps)
    setup.meta["temporal"] = {"window": body["window"], "time_factor": time_factor, "gaps": gaps,
                              "segments": segments}
    coarse = np.asarray(coarse_field(pair).transpose(tdim, *pair.axes.spatial).values, dtype="float64")
    fine = np.asarray(pair.hr.transpose(tdim, *pair.axes.spatial).values, dtype="float64")
    cfg = setup.cfg
    n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(setup.train_t), fine.shape[-2:],
                                                                 cfg.patch_size, cfg.batch_size)
    n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
    setup.meta["training"].update(samples_per_epoch=n_train, val_samples=n_val)
    common = dict(window=body["window"], time_factor=time_factor, factor=pair.factor, patch_size=cfg.patch_size,
                  covariates=setup.covariates)
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
