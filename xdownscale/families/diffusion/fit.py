"""``fit(model="diffusion")``: train the denoiser on random fine patches.

Reuses :func:`xdownscale.engine.setup.prepare` (pairing, time split, normalisation,
covariates, checkpoint path), the patch streams of ``setup.datasets()``, the
trainer's loader, budget and learning-rate schedule, ``setup.save_epoch`` (best weights
plus resume state every round) and :func:`xdownscale.engine.setup.finish`.
The weights kept are an exponential moving average of the denoiser's (the
usual practice for diffusion models), chosen by a validation loss computed at
fixed steps with fixed noise so rounds compare fairly. The budget is the shared
one (:class:`~xdownscale.config.TrainConfig`): 300 updates unless ``epochs``, ``max_updates`` or
``max_minutes`` is given.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch

from ...engine import progress
from ...engine.contract import FitRequest, parse_options, target_names
from ...engine.device import resolve_device
from ...engine.multi_setup import parse_constraints, prepare_request
from ...engine.resolve import resolve_model
from ...engine.setup import finish, prepare
from ...engine.trainer import Budget, lr_factor, make_loader, round_batches
from ...errors import DataError
from ...models.diffusion.multi import MultiTargetDiffusionNet
from ...models.diffusion.network import DiffusionNet
from ...models.diffusion.schedulers import NoiseSchedule
from ...nn.constraints import HARD_CONSTRAINTS
from .options import DiffusionOptions

log = logging.getLogger("xdownscale")

def _load_base(base):
    if base is None:
        return None
    ds = resolve_model(base, check_factor=False)
    if ds.meta["network"].get("model") == "diffusion":
        raise DataError("base= must be a deterministic model (e.g. a trained 'cnn'), not another diffusion model")
    return ds


def _check_base(base, setup) -> None:
    if base.factor != setup.factor:
        raise DataError(f"base model is x{base.factor} but the diffusion model is trained for x{setup.factor}")
    if base.variable and setup.meta["variable"] and base.variable != setup.meta["variable"]:
        raise DataError(f"base model was trained on {base.variable!r}, not {setup.meta['variable']!r}")
    if list(base.meta.get("predictors", [])) != list(setup.extra_names):
        raise DataError(f"base model uses predictors {base.meta.get('predictors')}, the diffusion model "
                        f"{setup.extra_names}: train both with the same predictors")
    covs = list(base.meta.get("covariates", []))
    if covs and covs != list(setup.cov_stats):
        raise DataError(f"base model uses covariates {covs}: give the diffusion model the same covariates")


@torch.no_grad()
def _residual_scale(net: DiffusionNet, ds, cfg, device, n: int) -> float:
    """Spread of (fine - first guess) on training patches: the physical unit of the diffused residual."""
    sq, count = 0.0, 0
    for k, (x, y, w, c) in enumerate(make_loader(ds, cfg, device)):
        _, mu = net.condition(x.to(device), w.to(device), c.to(device))
        d = (y.to(device) - mu)[torch.isfinite(y)]
        sq, count = sq + float((d.double() ** 2).sum()), count + d.numel()
        if (k + 1) * cfg.batch_size >= n:
            break
    value = (sq / max(count, 1)) ** 0.5
    return value if np.isfinite(value) and value > 0 else float(net.std)


@torch.no_grad()
def _val_loss(net, ds, cfg, device, seed: int) -> float:
    """Denoising loss at evenly spread steps with fixed noise (comparable across epochs)."""
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for x, y, w, c in make_loader(ds, cfg, device):
        t = torch.linspace(0, net.schedule.timesteps - 1, len(x)).round().long()
        loss = net.loss(x.to(device), y.to(device), w.to(device), c.to(device), generator=gen, t=t.to(device))
        total, n = total + float(loss) * len(x), n + len(x)
    return total / max(n, 1)


def _ema_update(ema: dict, net: torch.nn.Module, decay: float) -> None:
    for k, v in net.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        else:
            ema[k].copy_(v)


def _network_options(opts: DiffusionOptions, cfg) -> dict:
    """The denoiser, schedule and sampler of the record (one target or several)."""
    return dict(base_channels=int(opts.base_channels), channel_mults=[int(m) for m in opts.channel_mults],
                blocks=int(opts.blocks), schedule=NoiseSchedule(opts.beta_schedule, opts.timesteps).to_config(),
                prediction=opts.prediction, sampler={"name": opts.sampler, "steps": opts.sample_steps,
                                                     "eta": float(opts.eta), "clip": opts.clip},
                tile=cfg.patch_size, overlap=opts.overlap)


def fit_diffusion(request: FitRequest):
    """Train a conditional diffusion downscaler; options: :class:`~.options.DiffusionOptions`.
    ``var=[...]``: one model for several targets (:func:`fit_diffusion_multi`)."""
    opts = parse_options(DiffusionOptions, request.options, model=request.model)
    cfg = request.cfg if opts.patch is None else dataclasses.replace(request.cfg, patch_size=int(opts.patch))
    targets = target_names(request.var)
    if targets is not None:  # one denoiser for every target: a member is one joint sample
        return fit_diffusion_multi(request, targets, opts, cfg)
    constraint = request.constraint
    if constraint not in ("none", *HARD_CONSTRAINTS):
        raise DataError(f"diffusion applies a hard constraint to each sample after sampling; constraint="
                        f"{constraint!r} is not one of none, {', '.join(HARD_CONSTRAINTS)}")
    base = _load_base(opts.base)
    kwargs = dict(request.setup_kwargs(), cfg=cfg, skip="bicubic")
    setup = prepare(request.hr, **kwargs)
    setup.network.update(_network_options(opts, cfg), n_extra=len(setup.extra), n_covariates=len(setup.cov_stats))
    if base is not None:
        _check_base(base, setup)
        setup.network["base_network"] = dict(base.meta["network"])
        setup.meta["base"] = {"model": base.model_name, "checkpoint_sha256": base.checkpoint_hash}
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    net = DiffusionNet(**setup.network)
    if base is not None:
        net.base.load_state_dict(base.module.state_dict())
    net.to(device)
    train_ds, val_ds = setup.datasets()
    if base is not None:  # the spread of the base model's residual, measured on training patches
        scale = _residual_scale(net, train_ds, cfg, device, int(opts.residual_samples))
        net.residual_scale.fill_(scale)
        setup.network["residual_scale"] = scale
    log.info("training diffusion x%d (%s, %s) on %d+%d time steps, %d patches of %d/epoch, residual scale %.4g",
             setup.factor, "residual of " + base.model_name if base else "bicubic residual", opts.prediction,
             len(setup.train_t), len(setup.val_t), len(train_ds), cfg.patch_size, float(net.residual_scale))
    result = _train(net, train_ds, val_ds, cfg, device, opts, setup)
    return finish(setup, net, result)


def fit_diffusion_multi(request: FitRequest, targets: list[str], opts: DiffusionOptions, cfg):
    """One denoiser for every target: the spatial family's multi-target plumbing
    (:func:`~xdownscale.engine.multi_setup.prepare_request`: inputs from ``lr=``/``predictors=``,
    per-target statistics, sources and record), whose patch stream yields what :func:`_train`
    takes, so the same loop trains :class:`~xdownscale.models.diffusion.multi.MultiTargetDiffusionNet`."""
    if opts.base is not None:
        raise DataError("base= (the residual of a deterministic model) takes one target; drop base= to diffuse "
                        "several targets jointly")
    for t, (kind, _) in parse_constraints(request.constraint, targets).items():
        if kind not in ("none", *HARD_CONSTRAINTS):
            raise DataError(f"constraint {kind!r} for {t!r}: diffusion projects each sample onto a hard "
                            f"constraint; use none or one of {', '.join(HARD_CONSTRAINTS)}")
    if request.consistency:
        raise DataError("consistency= acts on the outputs of the spatial, temporal and gan models; diffusion "
                        "samples are projected onto their constraints only: drop consistency= or use model='gan'")
    setup = prepare_request(dataclasses.replace(request, cfg=cfg, skip="bicubic"), targets, {})
    n_cov = len(setup.meta["normalization"]["covariates"])
    setup.network.update(_network_options(opts, cfg), n_covariates=n_cov)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    net = MultiTargetDiffusionNet(**setup.network).to(device)
    setup.checked_resume()  # the loop reads setup.resume_state: the finished configuration must match first
    train_ds, val_ds = setup.datasets()
    log.info("training diffusion x%d for %s from %s, %d patches of %d/epoch", setup.factor, targets,
             setup.pair.input_names, len(train_ds), cfg.patch_size)
    result = _train(net, train_ds, val_ds, cfg, device, opts, setup)
    return finish(setup, net, result)  # type: ignore[arg-type]  # MultiSetup has what finish reads


def _train(net, train_ds, val_ds, cfg, device, opts, setup) -> dict:
    """The denoiser's loop on the shared recipe: :class:`~xdownscale.engine.trainer.Budget` (updates
    and/or minutes, ``epochs`` still accepted), warm-up and cosine by update, ``evals`` rounds, and
    no early stop before ``min_fraction`` of the budget; the weights scored and kept are the EMA's."""
    params = [p for p in net.denoiser.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.learning_rate)
    budget = Budget.for_run(train_ds, cfg)
    ema = copy.deepcopy(net.state_dict())
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(ema)
    resume = setup.resume_state
    if resume:
        net.load_state_dict(resume["last_state_dict"])
        opt.load_state_dict(resume["optimizer"])
        ema = resume["ema_state_dict"]
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        budget.updates, budget.elapsed = int(resume["updates"]), float(resume.get("elapsed", 0.0))
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
    gen = torch.Generator().manual_seed(cfg.seed)
    t_start = time.perf_counter() - budget.elapsed
    total = budget.total if budget.total is not None else "?"
    epoch = start
    while budget.progress() < 1 and not (budget.by_epoch and epoch >= budget.evals):
        gen.manual_seed(cfg.seed * 100_003 + epoch)
        net.train()
        t0, seen, running = time.perf_counter(), 0, 0.0
        next_eval = budget.next_eval()
        bar = progress.bar(round_batches(train_ds, cfg, device, 0, 1, epoch, endless=budget.total is None),
                           enabled=cfg.progress, desc=f"round {epoch + 1} (update {budget.updates}/{total})",
                           leave=False, unit="batch")
        for x, y, w, c in bar:
            rate = lr_factor(budget.progress(updates=budget.updates + 1, elapsed=time.perf_counter() - t_start), cfg)
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * rate
            loss = net.loss(x.to(device), y.to(device), w.to(device), c.to(device), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            budget.updates += 1
            u = budget.updates
            _ema_update(ema, net, min(float(opts.ema), (1 + u) / (10 + u)))
            budget.elapsed = time.perf_counter() - t_start
            running, seen = running + float(loss.detach()) * len(x), seen + len(x)
            bar.set_postfix(loss=f"{running / seen:.4g}")
            if budget.progress() >= next_eval - 1e-12:
                break
        seconds = time.perf_counter() - t0
        last = copy.deepcopy(net.state_dict())
        net.load_state_dict(ema)
        val = _val_loss(net, val_ds, cfg, device, cfg.seed + 7)
        net.load_state_dict(last)
        budget.elapsed = time.perf_counter() - t_start
        history.append({"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val, "seconds": seconds,
                        "samples_per_s": seen / max(seconds, 1e-9), "updates": budget.updates})
        if val < best:
            best, best_epoch, bad, best_state = val, epoch, 0, copy.deepcopy(ema)
        else:
            bad += 1
        summary = (f"round {epoch + 1}, update {budget.updates}/{total}: train {history[-1]['train_loss']:.4g}, "
                   f"validation (EMA) {val:.4g}{' *' if best_epoch == epoch else ''} "
                   f"({history[-1]['samples_per_s']:.1f} samples/s)")
        log.info(summary)
        progress.line(summary, enabled=cfg.progress)
        setup.save_epoch({"best_state_dict": best_state, "last_state_dict": last, "ema_state_dict": ema,
                          "optimizer": opt.state_dict(), "epoch": epoch, "history": history, "best_val_loss": best,
                          "best_epoch": best_epoch, "bad_epochs": bad, "updates": budget.updates,
                          "elapsed": budget.elapsed})
        epoch += 1
        # as in the shared trainer, early stopping cannot end a run before min_fraction of its budget
        if bad >= cfg.patience and budget.progress() >= cfg.min_fraction:
            log.info("early stopping: no improvement for %d validations (%.0f%% of the budget spent)", bad,
                     100 * budget.progress())
            break
    net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best, "updates": budget.updates,
            "train_seconds": time.perf_counter() - t_start,
            "stopped_by_time": budget.progress() >= 1}  # the budget ran out (not early stopping)
