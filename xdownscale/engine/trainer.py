"""The training loop: Adam, MSE or L1 in normalised units, validation every epoch,
best weights kept, early stopping, resumable (weights, optimizer, scheduler, RNG states),
seeded, with tqdm progress.

Under ``torch.distributed`` (``rank``/``world_size``, see :mod:`xdownscale.engine.distributed`)
each global batch of the deterministic patch stream is split into equal contiguous shards,
one per rank, the network is wrapped in ``DistributedDataParallel`` (gradients averaged, so a
step equals the single-process step on the whole batch), and losses are summed over ranks.
"""
from __future__ import annotations

import copy
import logging
import math
import random
import time
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..config import DEFAULT_UPDATES, TrainConfig
from ..nn.constraints import block_mean
from . import progress
from .averaging import WeightAverage
from .device import use_channels_last
from .precision import autocast, grad_scaler, resolve_precision

log = logging.getLogger("xdownscale")


def masked_loss(pred, target, std, kind: str):
    mask = torch.isfinite(target)
    diff = (pred - torch.nan_to_num(target)) / std
    err = diff.abs() if kind == "l1" else diff**2
    return (err * mask).sum() / mask.sum().clamp(min=1)


def soft_channels(net) -> list[int]:
    """The output channels trained with the soft constraint (a multi-target net lists its own)."""
    if hasattr(net, "soft_channels"):
        return list(net.soft_channels)
    return [0] if net.constraint.name == "soft" else []


def soft_term(net, coarse, pred, w, channels=(0,)):
    k = list(channels)
    std = net.std if net.std.dim() == 0 else net.std[:, k]
    return (((block_mean(pred[:, k], net.factor, w) - coarse[:, k]) / std) ** 2).mean()


def rng_state() -> dict:
    """The torch, numpy and Python random states as plain lists/tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.random.get_rng_state(),
            "numpy": [np_state[0], np_state[1].tolist(), *[_plain_num(v) for v in np_state[2:]]],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def _plain_num(v):
    return v.item() if hasattr(v, "item") else v


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.random.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _worker_init(_):
    torch.set_num_threads(1)


class ShardedBatches(Sampler):
    """Consecutive global batches of ``batch_size`` indices over ``range(n)``; this rank gets its
    contiguous share of each (``DistributedSampler`` without shuffling: the patch stream is
    already random and depends only on (seed, epoch, index)). Empty shares are skipped."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.rank, self.world_size = int(n), int(batch_size), int(rank), int(world_size)

    def _shares(self):
        for start in range(0, self.n, self.batch_size):
            stop = min(start + self.batch_size, self.n)
            bounds = np.linspace(start, stop, self.world_size + 1).round().astype(int)
            yield list(range(bounds[self.rank], bounds[self.rank + 1]))

    def __iter__(self):
        return (share for share in self._shares() if share)

    def __len__(self) -> int:
        return sum(1 for share in self._shares() if share)


def make_loader(ds, cfg: TrainConfig, device, rank: int = 0, world_size: int = 1) -> DataLoader:
    return DataLoader(ds, batch_sampler=ShardedBatches(len(ds), cfg.batch_size, rank, world_size),
                      num_workers=cfg.num_workers, worker_init_fn=_worker_init if cfg.num_workers else None,
                      pin_memory=device.type == "cuda")


def _sum_over_ranks(values: list[float], device, world_size: int) -> list[float]:
    if world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate_loss(net, ds, cfg: TrainConfig, device, rank: int = 0, world_size: int = 1) -> float:
    net.eval()
    total, n = 0.0, 0
    precision = resolve_precision(cfg.precision, device)
    nhwc = use_channels_last(torch.device(device))
    for x, y, w, c in make_loader(ds, cfg, device, rank, world_size):
        x, y, w, c = _on_device(x, device, nhwc), y.to(device), w.to(device), c.to(device)
        with autocast(precision, device):
            pred = net(x, w, c)
        total += float(masked_loss(pred, y, net.std, "mse")) * len(x)
        n += len(x)
    total, n = _sum_over_ranks([total, n], device, world_size)
    return total / max(n, 1)


def _on_device(x: torch.Tensor, device, nhwc: bool) -> torch.Tensor:
    """A batch of inputs on ``device``, NHWC (``nhwc``) where the convolutions run faster (device.py)."""
    if nhwc and x.ndim == 4:
        return x.to(device, memory_format=torch.channels_last)
    return x.to(device)


def _wrap(net, device, world_size: int):
    if world_size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


class Budget:
    """How long a run lasts and where it stands: ``updates`` optimizer steps out of ``total``
    (None: no update limit) and ``elapsed`` seconds out of ``seconds`` (None: no time limit).
    ``progress`` is the larger of the two fractions, so the schedule and the checkpoints of
    validation mean the same whether the budget is counted in updates or in minutes."""

    def __init__(self, cfg: TrainConfig, batches_per_epoch: int):
        self.per_epoch = max(int(batches_per_epoch), 1)
        if cfg.max_updates is not None:
            total = int(cfg.max_updates)
        elif cfg.epochs is not None:
            total = int(cfg.epochs) * self.per_epoch
        elif cfg.max_minutes is None:
            total = DEFAULT_UPDATES
        else:
            total = None
        self.total = total
        self.seconds = None if cfg.max_minutes is None else 60.0 * float(cfg.max_minutes)
        # validations: every epoch when epochs set the budget, else cfg.evals over the budget
        self.by_epoch = cfg.epochs is not None and cfg.max_updates is None
        self.evals = int(cfg.epochs) if self.by_epoch else int(cfg.evals)
        self.updates, self.elapsed = 0, 0.0

    def progress(self, updates: int | None = None, elapsed: float | None = None) -> float:
        u = self.updates if updates is None else updates
        t = self.elapsed if elapsed is None else elapsed
        return max(u / self.total if self.total else 0.0, t / self.seconds if self.seconds else 0.0)

    @classmethod
    def for_run(cls, train_ds, cfg: TrainConfig) -> "Budget":
        """The budget of a run over ``train_ds``. With an update budget, ``train_ds.n_samples`` is set
        to one round of batches, so the patch stream depends only on (seed, round, index) and the
        round size does not depend on the archive's epoch length."""
        if cfg.epochs is None or cfg.max_updates is not None:
            per_round = cls(cfg, 1).round_updates()
            if per_round is not None:
                train_ds.n_samples = per_round * cfg.batch_size
        return cls(cfg, len(ShardedBatches(len(train_ds), cfg.batch_size)))

    def next_eval(self) -> float:
        """The progress (0-1] at which the current round ends and is validated."""
        return (math.floor(self.progress() * self.evals + 1e-9) + 1) / self.evals

    def round_updates(self) -> int | None:
        """Updates between validations when the budget is counted in updates (None: by epoch or by time)."""
        if self.by_epoch or self.total is None:
            return None
        return max(1, math.ceil(self.total / self.evals))


def lr_factor(progress: float, cfg: TrainConfig) -> float:
    """The learning-rate multiplier for the update that brings the run to ``progress`` (0-1]
    of its budget: linear warm-up over the first ``cfg.warmup`` of the budget, then a cosine
    from 1 to 0.01 at the end (``lr_schedule="constant"``: 1 after the warm-up)."""
    p = min(max(float(progress), 0.0), 1.0)
    if p < cfg.warmup:
        return max(p / cfg.warmup, 1e-3)
    if cfg.lr_schedule == "constant":
        return 1.0
    q = (p - cfg.warmup) / max(1.0 - cfg.warmup, 1e-12)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * q))


def _any_rank(flag: bool, device, world_size: int) -> bool:
    if world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def round_batches(train_ds, cfg: TrainConfig, device, rank: int, world_size: int, epoch: int, endless: bool):
    """The batches of one round: one pass over ``train_ds`` drawn for ``epoch``; with a budget in
    minutes only (``endless``) further passes (drawn for ``epoch + k * 1_000_003``) until the
    caller stops at the next validation time."""
    k = 0
    while True:
        train_ds.set_epoch(epoch + k * 1_000_003)
        yield from make_loader(train_ds, cfg, device, rank, world_size)
        if not endless:
            return
        k += 1


def train(net, train_ds, val_ds, cfg: TrainConfig, device, *, resume: dict | None = None, on_epoch_end=None,
          rank: int = 0, world_size: int = 1, loss_fn=None) -> dict:
    """Train ``net`` in place; returns {history, best_epoch, best_val_loss, updates, train_seconds}.

    The budget, schedule, validation and early stopping are described in
    :class:`~xdownscale.config.TrainConfig`. A *round* is the stretch between two
    validations (an epoch when ``epochs`` sets the budget); when the budget is counted in
    updates, ``train_ds.n_samples`` is set to one round of batches, so the patch stream
    still depends only on (seed, round, index). Each history record holds the round, the
    updates done, the learning rate reached, the training and validation losses and seconds.

    ``on_epoch_end(state)`` is called after every round (to
    write the checkpoint: best weights plus what ``resume`` needs).
    ``rank``/``world_size``: this process's place in an initialised ``torch.distributed``
    group (the caller passes ``on_epoch_end`` on rank 0 only).
    ``loss_fn(pred, x, y, w, c)``, if given, replaces the training loss (e.g. a
    distillation loss); validation always uses the MSE against the truth.
    """
    net.to(device)
    nhwc = use_channels_last(torch.device(device))
    if nhwc:
        net.to(memory_format=torch.channels_last)
    model = _wrap(net, device, world_size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    # mixed precision: the body computes in bf16/fp16 under autocast, the weights Adam updates stay float32
    precision = resolve_precision(cfg.precision, device)
    scaler = grad_scaler(precision, device)
    budget = Budget.for_run(train_ds, cfg)
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(net.state_dict())
    average = WeightAverage(net, cfg.ema, resume.get("average_state_dict") if resume else None)
    if resume:
        net.load_state_dict(resume["last_state_dict"])
        opt.load_state_dict(resume["optimizer"])
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
        # checkpoints from before update counting: whole epochs were done
        budget.updates = int(resume.get("updates", start * budget.per_epoch))
        budget.elapsed = float(resume.get("elapsed", 0.0))
        if "rng" in resume:  # checkpoints from before RNG states were recorded resume without them
            set_rng_state(resume["rng"])
        log.info("resuming at round %d, update %d (best validation loss %.4g at round %d)", start, budget.updates,
                 best, best_epoch)
    start_val = resume.get("start_val_loss") if resume else None
    if not resume:
        # the bodies start as their skip interpolation (zero last layer): its validation loss is the
        # baseline that the kept weights are checked against at the end
        start_val = evaluate_loss(net, val_ds, cfg, device, rank, world_size)
    t_start = time.perf_counter() - budget.elapsed
    epoch = start
    while budget.progress() < 1 and not (budget.by_epoch and epoch >= budget.evals):
        net.train()
        t0, seen, running = time.perf_counter(), 0, 0.0
        next_eval = budget.next_eval()
        total = budget.total if budget.total is not None else "?"
        bar = progress.bar(round_batches(train_ds, cfg, device, rank, world_size, epoch, endless=budget.total is None),
                           enabled=cfg.progress and rank == 0,
                           desc=f"round {epoch + 1} (update {budget.updates}/{total})",
                           leave=False, unit="batch")
        lr = cfg.learning_rate
        for x, y, w, c in bar:
            x, y, w, c = _on_device(x, device, nhwc), y.to(device), w.to(device), c.to(device)
            step_progress = budget.progress(updates=budget.updates + 1,
                                            elapsed=time.perf_counter() - t_start)
            lr = cfg.learning_rate * lr_factor(step_progress, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(precision, device):
                pred = model(x, w, c)
            loss = masked_loss(pred, y, net.std, cfg.loss) if loss_fn is None else loss_fn(pred, x, y, w, c)
            soft = soft_channels(net)
            if soft:
                loss = loss + cfg.soft_weight * soft_term(net, c, pred, w, soft)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            running += float(loss.detach()) * len(x)
            seen += len(x)
            budget.updates += 1
            average.update(net)
            budget.elapsed = time.perf_counter() - t_start
            bar.set_postfix(loss=f"{running / max(seen, 1):.4g}", lr=f"{lr:.2g}")
            p = budget.progress()
            # a time budget can end a round anywhere: every rank stops at the same update
            if budget.seconds is not None:
                if _any_rank(p >= next_eval - 1e-12, device, world_size):
                    break
            elif p >= next_eval - 1e-12:
                break
        running, seen = _sum_over_ranks([running, seen], device, world_size)
        seconds = time.perf_counter() - t0
        # the raw and (once ready) the averaged weights are validated, and the better is kept: just
        # after it becomes ready the average can still lag the raw weights (averaging.py)
        val_raw = evaluate_loss(net, val_ds, cfg, device, rank, world_size)
        val_average: float | None = None
        if average.ready:
            with average.applied(net):
                val_average = evaluate_loss(net, val_ds, cfg, device, rank, world_size)
        use_average = val_average is not None and val_average < val_raw
        val = val_average if val_average is not None and use_average else val_raw
        if val < best:  # one copy, of the weights that won
            best_state = copy.deepcopy(average.weights() if use_average else net.state_dict())
        budget.elapsed = time.perf_counter() - t_start
        record = {"epoch": epoch, "updates": budget.updates, "lr": lr, "train_loss": running / max(seen, 1),
                  "val_loss": val, "val_raw": val_raw, "val_average": val_average, "seconds": seconds,
                  "samples_per_s": seen / max(seconds, 1e-9)}
        history.append(record)
        improved = val < best
        if improved:
            best, best_epoch, bad = val, epoch, 0
        else:
            bad += 1
        summary = (f"round {epoch + 1}, update {budget.updates}/{total}: train {record['train_loss']:.4g}, "
                   f"validation {val:.4g}{' *' if improved else ''} ({record['samples_per_s']:.0f} samples/s)")
        log.info(summary)
        progress.line(summary, enabled=cfg.progress and rank == 0)
        if on_epoch_end is not None:
            on_epoch_end({"best_state_dict": best_state, "last_state_dict": net.state_dict(),
                          "optimizer": opt.state_dict(), "epoch": epoch, "updates": budget.updates,
                          "elapsed": budget.elapsed, "history": history, "best_val_loss": best,
                          "best_epoch": best_epoch, "bad_epochs": bad, "rng": rng_state(), "start_val_loss": start_val,
                          **({"average_state_dict": average.state} if average.state is not None else {})})
        epoch += 1
        if bad >= cfg.patience and budget.progress() >= cfg.min_fraction:
            log.info("early stopping: no improvement for %d validations (%.0f%% of the budget spent)", bad,
                     100 * budget.progress())
            break
    net.load_state_dict(best_state)
    net.eval()
    if start_val is not None and best > start_val and rank == 0:
        warnings.warn(f"the trained weights are worse on validation than the starting ones, the skip interpolation "
                      f"({best:.4g} against {start_val:.4g}): give more training data or time, or another constraint",
                      stacklevel=2)
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best, "start_val_loss": start_val,
            "updates": budget.updates, "train_seconds": time.perf_counter() - t_start, "precision": precision}
