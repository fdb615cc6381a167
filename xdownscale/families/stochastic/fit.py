"""Training of the stochastic generators: ``gan`` (patches) and ``rnngan`` (sequences of patches)."""
from __future__ import annotations

import logging

from ...engine.contract import FitRequest, parse_options, target_names
from ...engine.device import resolve_device
from ...engine.setup import finish, prepare
from ...errors import DataError
from ...models.gan import PatchDiscriminator, StochasticNet
from ...models.rnngan import RecurrentStochasticNet, SequenceDiscriminator, SequencePatchDataset
from .adversarial import build_pair, train_adversarial
from .options import GanOptions, RnnganOptions, split

log = logging.getLogger("xdownscale")


def fit_gan(request: FitRequest):
    """``fit(model="gan")``; options: :class:`~.options.GanOptions`."""
    net_opts, adv = split(parse_options(GanOptions, request.options, model=request.model), request.options)
    targets = target_names(request.var)
    if targets is not None:  # one generator for every target: a member is one joint draw
        return fit_gan_multi(request, targets, net_opts, adv)
    setup = prepare(request.hr, **request.setup_kwargs(), model_kwargs=net_opts)
    gen, disc = build_pair(setup, adv, StochasticNet, PatchDiscriminator, noise_at=1 + len(setup.extra_names))
    train_ds, val_ds = setup.datasets()
    log.info("adversarial training of %s x%d (%s, %s) on %d+%d time steps", request.model, setup.factor,
             request.constraint, adv.mode, len(setup.train_t), len(setup.val_t))
    cfg = request.cfg
    result = train_adversarial(gen, disc, train_ds, val_ds, cfg, adv, resolve_device(cfg.device),
                               cond_of=gen.condition, resume=setup.resume_state, on_epoch_end=setup.save_epoch)
    return finish(setup, gen, result)


def fit_gan_multi(request: FitRequest, targets: list[str], net_opts: dict, adv):
    """``fit(model="gan", var=[...])``: the multi-target plumbing of the spatial family with noise."""
    from ...engine.multi_setup import prepare_request
    from ...models.gan import MultiTargetStochasticNet

    cfg = request.cfg
    setup = prepare_request(request, targets, net_opts)
    gen, disc = build_pair(setup, adv, MultiTargetStochasticNet, PatchDiscriminator,
                           noise_at=len(setup.pair.input_names))
    train_ds, val_ds = setup.datasets()
    log.info("adversarial training of %s x%d for %s from %s", request.model, setup.factor, targets,
             setup.pair.input_names)
    result = train_adversarial(gen, disc, train_ds, val_ds, cfg, adv, resolve_device(cfg.device),
                               cond_of=gen.condition, resume=setup.checked_resume(), on_epoch_end=setup.save_epoch)
    return finish(setup, gen, result)  # type: ignore[arg-type]  # MultiSetup has what finish reads


def fit_rnngan(request: FitRequest):
    """``fit(model="rnngan")``; options: :class:`~.options.RnnganOptions`."""
    net_opts, adv = split(parse_options(RnnganOptions, request.options, model=request.model), request.options)
    if target_names(request.var) is not None or request.predictors:
        # one recurrent generator for every target (a member is one joint draw), or for one target
        # driven by predictors: the multi-target plumbing
        return fit_rnngan_multi(request, net_opts, adv)
    setup = prepare(request.hr, **request.setup_kwargs(), model_kwargs=net_opts)
    if setup.extra_names:
        raise DataError(f"rnngan takes no predictors (got {setup.extra_names}); use covariates= for static fields")
    tdim = setup.pair.axes.time
    if tdim is None:
        raise DataError("rnngan needs a time dimension (sequences of consecutive time steps)")
    gen, disc = build_pair(setup, adv, RecurrentStochasticNet, SequenceDiscriminator, noise_at=1)
    times = setup.pair.hr[tdim].values
    train_ds, val_ds = (SequencePatchDataset.from_patches(d, times, gen.window) for d in setup.datasets())
    cfg = request.cfg
    result = train_adversarial(gen, disc, train_ds, val_ds, cfg, adv, resolve_device(cfg.device),
                               cond_of=gen.condition, resume=setup.resume_state, on_epoch_end=setup.save_epoch)
    return finish(setup, gen, result)


def fit_rnngan_multi(request: FitRequest, net_opts: dict, adv):
    """``fit(model="rnngan", var=[...])`` (or one target with ``predictors=``): sequences of the
    multi-target patches, one noise per frame; static ``covariates=`` ride with every frame (after
    the inputs and the noise, where the packed prediction window puts them)."""
    from ...engine.multi_setup import as_targets, prepare_request
    from ...models.rnngan import MultiSequencePatchDataset, MultiTargetRecurrentNet

    targets, request = as_targets(request)
    setup = prepare_request(request, targets, net_opts)
    tdim = setup.pair.axes.time
    if tdim is None:
        raise DataError("rnngan needs a time dimension (sequences of consecutive time steps)")
    gen, disc = build_pair(setup, adv, MultiTargetRecurrentNet, SequenceDiscriminator,
                           noise_at=len(setup.pair.input_names))
    times = setup.pair.hr[tdim].values
    train_ds, val_ds = (MultiSequencePatchDataset.from_patches(d, times, gen.window) for d in setup.datasets())
    log.info("adversarial training of %s x%d for %s from %s (window %d)", request.model, setup.factor, targets,
             setup.pair.input_names, gen.window)
    cfg = request.cfg
    result = train_adversarial(gen, disc, train_ds, val_ds, cfg, adv, resolve_device(cfg.device),
                               cond_of=gen.condition, resume=setup.checked_resume(), on_epoch_end=setup.save_epoch)
    return finish(setup, gen, result)  # type: ignore[arg-type]  # MultiSetup has what finish reads
