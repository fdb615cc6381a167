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
best generator weights are kept. The budget, schedule and stopping rule are the shared
trainer's (:class:`~xdownscale.config.TrainConfig`). Every validation round writes a resumable
checkpoint (generator, its weight average, critic, optimisers, RNG state). Seeded.
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
from ...engine.averaging import WeightAverage
from ...engine.trainer import Budget, lr_factor, make_loader, masked_loss, round_batches
from ...errors import DataError

log = logging.getLogger("xdownscale")
MODES = ("gan", "wgan-gp")
CONTENTS = ("mse", "crps")


@dataclass(frozen=True)
class AdversarialConfig:
    """Options of adversarial training (stored in the checkpoint's training record)."""

    mode: str = "gan"
    content: str = "crps"
    # a light adversarial term: at 0.05 the WFDE5 Tair x2 ensembles' CRPS lost to the deterministic
    # MAE of 0.171 K (gan 0.185 K, rnngan 0.246 K); 0.01 gave gan 0.143 K there, 0.290 K at x4
    # (0.05: 0.308 K) and 4 % more on pr x4 (benchmarks/results/skill_wfde5.md)
    adv_weight: float = 0.01
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
    """CRPS (normalised units) of a ``val_members`` ensemble and MSE of its mean.

    The noise is drawn from a fixed seed, outside the training stream: every round, and the raw and
    averaged weights of one round, are scored on the same draws, so the choice between them is not
    decided by the luck of the draw."""
    gen.eval()
    crps, mse, n = 0.0, 0.0, 0
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 7919)
        for x, y, w, c in make_loader(val_ds, cfg, device):
            x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
            samples = torch.stack([gen(x, w, c) for _ in range(adv.val_members)]) / gen.std
            target = y / gen.std
            crps += float(ensemble_crps(samples, target)) * len(x)
            mse += float(masked_loss(samples.mean(0), target, 1.0, "mse")) * len(x)
            n += len(x)
    return {"val_crps": crps / max(n, 1), "val_mse": mse / max(n, 1)}


def _step(gen, disc, opt_g, opt_d, batch, adv: AdversarialConfig, cfg: TrainConfig, cond_of, adversarial: bool):
    """One critic (``n_critic`` steps) and one generator update; returns (content, g_adv, d_loss)."""
    x, y, w, c = batch
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
    return content.detach(), g_adv.detach(), d_loss.detach()


def train_adversarial(gen, disc, train_ds, val_ds, cfg: TrainConfig, adv: AdversarialConfig, device, *,
                      cond_of, resume: dict | None = None, on_epoch_end=None) -> dict:
    """Train ``gen`` (noise drawn inside its forward) against ``disc`` in place.

    The recipe is the shared trainer's (:class:`~xdownscale.config.TrainConfig`): a budget in updates
    and/or minutes (``epochs`` still accepted), warm-up and cosine decay of both learning rates by
    update, ``evals`` validations, a weight average of the generator, early stopping that cannot end
    a run before ``min_fraction`` of its budget. ``cond_of(x)``: the conditioning channels the critic
    sees. Returns {history, best_epoch, best_val_loss, updates, train_seconds} (validation loss:
    ensemble CRPS)."""
    gen.to(device)
    disc.to(device)
    disc_lr = adv.disc_learning_rate or cfg.learning_rate
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.learning_rate, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=disc_lr, betas=(0.5, 0.9))
    budget = Budget.for_run(train_ds, cfg)
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(gen.state_dict())
    # the generator's weights are averaged as the shared trainer's are (engine/averaging.py)
    average = WeightAverage(gen, cfg.ema, resume.get("average_state_dict") if resume else None)
    if resume:
        gen.load_state_dict(resume["last_state_dict"])
        disc.load_state_dict(resume["disc_state_dict"])
        opt_g.load_state_dict(resume["optimizer"])
        opt_d.load_state_dict(resume["disc_optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
        budget.updates = int(resume.get("updates", start * budget.per_epoch))
        budget.elapsed = float(resume.get("elapsed", 0.0))
        log.info("resuming adversarial training at round %d, update %d (best CRPS %.4g)", start, budget.updates, best)
    t_start = time.perf_counter() - budget.elapsed
    epoch = start
    total = budget.total if budget.total is not None else "?"
    while budget.progress() < 1 and not (budget.by_epoch and epoch >= budget.evals):
        gen.train()
        disc.train()
        adversarial = epoch >= adv.pretrain_epochs
        t0, seen, sums = time.perf_counter(), 0, {"content": 0.0, "adv": 0.0, "disc": 0.0}
        next_eval = budget.next_eval()
        rate = lr_factor(budget.progress(), cfg)
        bar = progress.bar(round_batches(train_ds, cfg, device, 0, 1, epoch, endless=budget.total is None),
                           enabled=cfg.progress, desc=f"round {epoch + 1} (update {budget.updates}/{total})",
                           leave=False, unit="batch")
        for batch in bar:
            batch = tuple(t.to(device) for t in batch)
            rate = lr_factor(budget.progress(updates=budget.updates + 1, elapsed=time.perf_counter() - t_start), cfg)
            for opt, peak in ((opt_g, cfg.learning_rate), (opt_d, disc_lr)):
                for group in opt.param_groups:
                    group["lr"] = peak * rate
            losses = _step(gen, disc, opt_g, opt_d, batch, adv, cfg, cond_of, adversarial)
            average.update(gen)
            budget.updates += 1
            budget.elapsed = time.perf_counter() - t_start
            b = len(batch[0])
            for key, value in zip(("content", "adv", "disc"), losses):
                sums[key] += float(value) * b
            seen += b
            bar.set_postfix(content=f"{sums['content'] / seen:.4g}", disc=f"{sums['disc'] / seen:.4g}")
            if budget.progress() >= next_eval - 1e-12:
                break
        seconds = time.perf_counter() - t0
        # the raw and (once ready) the averaged generator are both scored and the better is kept
        val = validate(gen, val_ds, cfg, adv, device)
        val_raw, val_average = val["val_crps"], None
        if average.ready:
            with average.applied(gen):
                val_avg = validate(gen, val_ds, cfg, adv, device)
            val_average = val_avg["val_crps"]
            if val_average < val_raw:
                val = val_avg
        budget.elapsed = time.perf_counter() - t_start
        record = {"epoch": epoch, "updates": budget.updates, "lr": cfg.learning_rate * rate,
                  "train_loss": sums["content"] / max(seen, 1), "adv_loss": sums["adv"] / max(seen, 1),
                  "disc_loss": sums["disc"] / max(seen, 1), "val_loss": val["val_crps"], **val,
                  "val_raw": val_raw, "val_average": val_average, "seconds": seconds,
                  "samples_per_s": seen / max(seconds, 1e-9)}
        history.append(record)
        improved = val["val_crps"] < best
        if improved:
            best, best_epoch, bad = val["val_crps"], epoch, 0
            use_average = val_average is not None and val_average < val_raw
            best_state = copy.deepcopy(average.weights() if use_average else gen.state_dict())
        else:
            bad += 1
        summary = (f"round {epoch + 1}, update {budget.updates}/{total}: content {record['train_loss']:.4g}, critic "
                   f"{record['disc_loss']:.4g}, validation CRPS {val['val_crps']:.4g}{' *' if improved else ''} "
                   f"({record['samples_per_s']:.0f} samples/s)")
        log.info(summary)
        progress.line(summary, enabled=cfg.progress)
        if on_epoch_end is not None:
            on_epoch_end({"best_state_dict": best_state, "last_state_dict": gen.state_dict(),
                          "disc_state_dict": disc.state_dict(), "optimizer": opt_g.state_dict(),
                          "disc_optimizer": opt_d.state_dict(), "torch_rng": torch.get_rng_state(),
                          "epoch": epoch, "updates": budget.updates, "elapsed": budget.elapsed, "history": history,
                          "best_val_loss": best, "best_epoch": best_epoch, "bad_epochs": bad,
                          **({"average_state_dict": average.state} if average.state is not None else {})})
        epoch += 1
        # as in the shared trainer, early stopping cannot end a run before it has learnt: on WFDE5 Tair
        # x2 rnngan stopped at round 8 of 20 on a noisy CRPS curve, its ensemble mean at 0.92x bicubic
        if bad >= cfg.patience and adversarial and budget.progress() >= cfg.min_fraction:
            log.info("early stopping: no CRPS improvement for %d validations (%.0f%% of the budget spent)", bad,
                     100 * budget.progress())
            break
    gen.load_state_dict(best_state)
    gen.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best, "updates": budget.updates,
            "train_seconds": time.perf_counter() - t_start}


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
