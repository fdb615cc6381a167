"""Adversarial training for stochastic generators (``gan``, ``rnngan``).

Generator loss = content + ``adv_weight`` x adversarial term. The content
term (``content="crps"``, default) is the fair CRPS of ``content_members`` noise
draws in normalised units, a proper score that rewards a calibrated spread.
``content="mse"`` is the trainer's MSE (or L1, ``loss=``) between the truth and
the mean of the draws (1: a single sample); the MSE of a k-member mean still
charges the members' variance / k, so it pulls the ensemble towards its mean
(on WFDE5 Tair x4 its 10-member CRPS was 0.54 K against 0.40 K with "crps",
benchmarks/skill.py). Two adversarial modes:

* ``mode="gan"``: non-saturating conditional GAN (logistic losses);
* ``mode="wgan-gp"``: Wasserstein critic with a gradient penalty
  (``gp_weight``, ``n_critic`` critic steps per generator step).

The generator and the critic share one loop over batches ``(x, y, w, c)``
of any rank (patches or sequences of patches). Validation score: the CRPS of a
``val_members``-member ensemble in normalised units (lower is better); the
best generator weights are kept. Every epoch writes a resumable checkpoint
(generator, critic, optimisers, schedulers, RNG state). Seeded.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ...config import TrainConfig
from ...engine import progress
from ...engine.trainer import cosine_factor, make_loader, masked_loss
from ...errors import DataError

log = logging.getLogger("xdownscale")
MODES = ("gan", "wgan-gp")
CONTENTS = ("mse", "crps")


@dataclass(frozen=True)
class AdversarialConfig:
    """Options of adversarial training (stored in the checkpoint's training record)."""

    mode: str = "gan"
    content: str = "crps"
    adv_weight: float = 0.05
    gp_weight: float = 10.0
    n_critic: int = 1
    content_members: int = 4
    val_members: int = 4
    disc_width: int = 32
    disc_down: int = 2
    disc_learning_rate: float | None = None
    pretrain_epochs: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DataError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.content not in CONTENTS:
            raise DataError(f"content must be one of {CONTENTS}, got {self.content!r}")
        if self.content == "crps" and self.content_members < 2:
            raise DataError("content='crps' scores an ensemble: content_members must be >= 2")
        for name in ("n_critic", "content_members", "val_members"):
            if int(getattr(self, name)) < 1:
                raise DataError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_members < 2:
            raise DataError(f"val_members must be >= 2 (CRPS of an ensemble), got {self.val_members}")

    def to_dict(self) -> dict:
        return asdict(self)


ADVERSARIAL_OPTIONS = tuple(f.name for f in fields(AdversarialConfig))


def ensemble_crps(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CRPS of ``samples`` (M, ...) against ``target`` (...), NaN targets skipped."""
    mask = torch.isfinite(target)
    t = torch.nan_to_num(target)
    skill = (samples - t).abs().mean(0)
    spread = (samples[:, None] - samples[None]).abs().mean((0, 1))
    crps = skill - 0.5 * spread
    return (crps * mask).sum() / mask.sum().clamp(min=1)


def fair_crps(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean "fair" CRPS of ``samples`` (M >= 2, ...) against ``target``: ``mean|x_i - y| -
    sum_{i != j} |x_i - x_j| / (2 M (M - 1))``, unbiased for the CRPS of the generator's
    distribution; NaN targets skipped."""
    m = samples.shape[0]
    mask = torch.isfinite(target)
    t = torch.nan_to_num(target)
    skill = (samples - t).abs().mean(0)
    spread = (samples[:, None] - samples[None]).abs().sum((0, 1)) / (2 * m * (m - 1))
    return ((skill - spread) * mask).sum() / mask.sum().clamp(min=1)


def _gradient_penalty(disc, real, fake, cond, coarse):
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = disc(mix, cond, coarse)
    (grad,) = torch.autograd.grad(score.sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _disc_loss(disc, real, fake, cond, coarse, adv: AdversarialConfig):
    d_real, d_fake = disc(real, cond, coarse), disc(fake, cond, coarse)
    if adv.mode == "wgan-gp":
        return d_fake.mean() - d_real.mean() + adv.gp_weight * _gradient_penalty(disc, real, fake, cond, coarse)
    return torch.nn.functional.softplus(-d_real).mean() + torch.nn.functional.softplus(d_fake).mean()


def _gen_adv_loss(disc, fake, cond, coarse, adv: AdversarialConfig):
    score = disc(fake, cond, coarse)
    return -score.mean() if adv.mode == "wgan-gp" else torch.nn.functional.softplus(-score).mean()


@torch.no_grad()
def validate(gen, val_ds, cfg: TrainConfig, adv: AdversarialConfig, device) -> dict:
    """CRPS (normalised units) of a ``val_members`` ensemble and MSE of its mean."""
    gen.eval()
    crps, mse, n = 0.0, 0.0, 0
    for x, y, w, c in make_loader(val_ds, cfg, device):
        x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
        samples = torch.stack([gen(x, w, c) for _ in range(adv.val_members)]) / gen.std
        target = y / gen.std
        crps += float(ensemble_crps(samples, target)) * len(x)
        mse += float(masked_loss(samples.mean(0), target, 1.0, "mse")) * len(x)
        n += len(x)
    return {"val_crps": crps / max(n, 1), "val_mse": mse / max(n, 1)}


def train_adversarial(gen, disc, train_ds, val_ds, cfg: TrainConfig, adv: AdversarialConfig, device, *,
                      cond_of, resume: dict | None = None, on_epoch_end=None) -> dict:
    """Train ``gen`` (noise drawn inside its forward) against ``disc`` in place.

    ``cond_of(x)``: the conditioning channels the critic sees. Returns
    {history, best_epoch, best_val_loss} (validation loss: ensemble CRPS)."""
    gen.to(device)
    disc.to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.learning_rate, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=adv.disc_learning_rate or cfg.learning_rate, betas=(0.5, 0.9))
    rate = (lambda e: cosine_factor(e, cfg)) if cfg.lr_schedule == "cosine" else (lambda e: 1.0)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, rate)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, rate)
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(gen.state_dict())
    if resume:
        gen.load_state_dict(resume["last_state_dict"])
        disc.load_state_dict(resume["disc_state_dict"])
        for obj, key in ((opt_g, "optimizer"), (opt_d, "disc_optimizer"), (sched_g, "scheduler"),
                         (sched_d, "disc_scheduler")):
            obj.load_state_dict(resume[key])
        torch.set_rng_state(resume["torch_rng"])
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
        log.info("resuming adversarial training at epoch %d (best CRPS %.4g)", start, best)
    # the budget: fit's epochs (20 by default), max_updates and/or max_minutes, whichever ends first
    epochs = cfg.epochs if cfg.epochs is not None else 1 << 30
    t_start, updates, out_of_budget = time.perf_counter(), sum(int(h.get("updates", 0)) for h in history[-1:]), False
    for epoch in range(start, epochs):
        train_ds.set_epoch(epoch)
        gen.train()
        disc.train()
        adversarial = epoch >= adv.pretrain_epochs
        t0, seen, sums = time.perf_counter(), 0, {"content": 0.0, "adv": 0.0, "disc": 0.0}
        bar = progress.bar(make_loader(train_ds, cfg, device), enabled=cfg.progress,
                           desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, unit="batch")
        for x, y, w, c in bar:
            x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
            cond = cond_of(x)
            d_loss = torch.zeros(())
            if adversarial:
                for _ in range(adv.n_critic):
                    with torch.no_grad():
                        fake = gen(x, w, c)
                    real = torch.where(torch.isfinite(y), y, fake)  # missing cells: nothing to tell apart
                    d_loss = _disc_loss(disc, real, fake, cond, c, adv)
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()
            samples = [gen(x, w, c) for _ in range(adv.content_members)]
            if adv.content == "crps":
                content = fair_crps(torch.stack(samples) / gen.std, y / gen.std)
            else:
                content = masked_loss(torch.stack(samples).mean(0), y, gen.std, cfg.loss)
            loss, g_adv = content, torch.zeros(())
            if adversarial:
                for p in disc.parameters():
                    p.requires_grad_(False)
                g_adv = _gen_adv_loss(disc, samples[0], cond, c, adv)
                for p in disc.parameters():
                    p.requires_grad_(True)
                loss = content + adv.adv_weight * g_adv
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            updates += 1
            if (cfg.max_updates is not None and updates >= cfg.max_updates) or (
                    cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes):
                out_of_budget = True
            b = len(x)
            sums["content"] += float(content.detach()) * b
            sums["adv"] += float(g_adv.detach()) * b
            sums["disc"] += float(d_loss.detach()) * b
            seen += b
            bar.set_postfix(content=f"{sums['content'] / seen:.4g}", disc=f"{sums['disc'] / seen:.4g}")
            if out_of_budget:
                break
        sched_g.step()
        sched_d.step()
        seconds = time.perf_counter() - t0
        val = validate(gen, val_ds, cfg, adv, device)
        record = {"epoch": epoch, "train_loss": sums["content"] / max(seen, 1),
                  "adv_loss": sums["adv"] / max(seen, 1), "disc_loss": sums["disc"] / max(seen, 1),
                  "val_loss": val["val_crps"], **val, "seconds": seconds,
                  "samples_per_s": seen / max(seconds, 1e-9)}
        history.append(record)
        improved = val["val_crps"] < best
        if improved:
            best, best_epoch, bad = val["val_crps"], epoch, 0
            best_state = copy.deepcopy(gen.state_dict())
        else:
            bad += 1
        summary = (f"epoch {epoch + 1}/{cfg.epochs}: content {record['train_loss']:.4g}, critic "
                   f"{record['disc_loss']:.4g}, validation CRPS {val['val_crps']:.4g}{' *' if improved else ''} "
                   f"({record['samples_per_s']:.0f} samples/s)")
        log.info(summary)
        progress.line(summary, enabled=cfg.progress)
        if on_epoch_end is not None:
            on_epoch_end({"best_state_dict": best_state, "last_state_dict": gen.state_dict(),
                          "disc_state_dict": disc.state_dict(), "optimizer": opt_g.state_dict(),
                          "disc_optimizer": opt_d.state_dict(), "scheduler": sched_g.state_dict(),
                          "disc_scheduler": sched_d.state_dict(), "torch_rng": torch.get_rng_state(),
                          "epoch": epoch, "history": history, "best_val_loss": best, "best_epoch": best_epoch,
                          "bad_epochs": bad})
        history[-1]["updates"] = updates
        if out_of_budget:
            log.info("stopping: the training budget is spent (%d updates)", updates)
            break
        if bad >= cfg.patience and adversarial:
            log.info("early stopping: no CRPS improvement for %d epochs", bad)
            break
    gen.load_state_dict(best_state)
    gen.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best}


def build_pair(setup, adv: AdversarialConfig, generator_cls, critic_cls, *, noise_at: int):
    """Seeded generator and discriminator for a prepared run; records where the noise enters and the
    adversarial configuration in the checkpoint metadata."""
    setup.network["noise_at"] = int(noise_at)
    setup.meta["training"]["adversarial"] = adv.to_dict()
    torch.manual_seed(setup.cfg.seed)
    np.random.seed(setup.cfg.seed)
    gen = generator_cls(**setup.network)
    if getattr(gen, "n_targets", None):  # several targets: the critic sees each, with its own statistics
        stats = [gen.mean.flatten().tolist(), gen.std.flatten().tolist(), gen.residual_scale.flatten().tolist()]
    else:
        stats = [setup.stats["mean"], setup.stats["std"], float(gen.residual_scale)]
    disc = critic_cls(gen.data_channels, setup.factor, *stats, width=adv.disc_width, n_down=adv.disc_down)
    return gen, disc
