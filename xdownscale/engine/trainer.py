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

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..nn.constraints import block_mean

log = logging.getLogger("xdownscale")


def masked_loss(pred, target, std, kind: str):
    mask = torch.isfinite(target)
    diff = (pred - torch.nan_to_num(target)) / std
    err = diff.abs() if kind == "l1" else diff**2
    return (err * mask).sum() / mask.sum().clamp(min=1)


def _soft_term(net, coarse, pred, w):
    return (((block_mean(pred, net.factor, w) - coarse) / net.std) ** 2).mean()


def cosine_factor(epoch: int, cfg: TrainConfig) -> float:
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(epoch, cfg.epochs) / max(cfg.epochs, 1)))


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
    for x, y, w, c in make_loader(ds, cfg, device, rank, world_size):
        x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
        total += float(masked_loss(net(x, w, c), y, net.std, "mse")) * len(x)
        n += len(x)
    total, n = _sum_over_ranks([total, n], device, world_size)
    return total / max(n, 1)


def _wrap(net, device, world_size: int):
    if world_size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def train(net, train_ds, val_ds, cfg: TrainConfig, device, *, resume: dict | None = None, on_epoch_end=None,
          rank: int = 0, world_size: int = 1, loss_fn=None) -> dict:
    """Train ``net`` in place; returns {history, best_epoch, best_val_loss}.

    ``on_epoch_end(state)`` is called after every epoch (to
    write the checkpoint: best weights plus what ``resume`` needs).
    ``rank``/``world_size``: this process's place in an initialised ``torch.distributed``
    group (the caller passes ``on_epoch_end`` on rank 0 only).
    ``loss_fn(pred, x, y, w, c)``, if given, replaces the training loss (e.g. a
    distillation loss); validation always uses the MSE against the truth.
    """
    net.to(device)
    model = _wrap(net, device, world_size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    # cosine decay to 1% of the initial rate over the planned epochs (or a constant rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_factor(e, cfg) if cfg.lr_schedule == "cosine" else 1.0)
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(net.state_dict())
    if resume:
        net.load_state_dict(resume["last_state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
        if "rng" in resume:  # checkpoints from before RNG states were recorded resume without them
            set_rng_state(resume["rng"])
        log.info("resuming at epoch %d (best validation loss %.4g at epoch %d)", start, best, best_epoch)
    for epoch in range(start, cfg.epochs):
        train_ds.set_epoch(epoch)
        net.train()
        t0, seen, running = time.perf_counter(), 0, 0.0
        bar = tqdm(make_loader(train_ds, cfg, device, rank, world_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress or rank != 0, leave=False, unit="batch")
        for x, y, w, c in bar:
            x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
            pred = model(x, w, c)
            loss = masked_loss(pred, y, net.std, cfg.loss) if loss_fn is None else loss_fn(pred, x, y, w, c)
            if net.constraint.name == "soft":
                loss = loss + cfg.soft_weight * _soft_term(net, c, pred, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{running / seen:.4g}")
        sched.step()
        running, seen = _sum_over_ranks([running, seen], device, world_size)
        seconds = time.perf_counter() - t0
        val = evaluate_loss(net, val_ds, cfg, device, rank, world_size)
        record = {"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val,
                  "seconds": seconds, "samples_per_s": seen / max(seconds, 1e-9)}
        history.append(record)
        improved = val < best
        if improved:
            best, best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
        log.info("epoch %d/%d: train %.4g, validation %.4g%s (%.0f samples/s)", epoch + 1, cfg.epochs,
                 record["train_loss"], val, " *" if improved else "", record["samples_per_s"])
        if on_epoch_end is not None:
            on_epoch_end({"best_state_dict": best_state, "last_state_dict": net.state_dict(),
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                          "history": history, "best_val_loss": best, "best_epoch": best_epoch, "bad_epochs": bad,
                          "rng": rng_state()})
        if bad >= cfg.patience:
            log.info("early stopping: no improvement for %d epochs", bad)
            break
    net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best}
