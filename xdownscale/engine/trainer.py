"""The training loop: Adam, MSE or L1 in normalised units, validation every epoch,
best weights kept, early stopping, resumable, seeded, with tqdm progress."""
from __future__ import annotations

import copy
import math
import logging
import time

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..nn.constraints import block_mean

log = logging.getLogger("xdownscale")


def _loss(pred, target, std, kind: str):
    mask = torch.isfinite(target)
    diff = (pred - torch.nan_to_num(target)) / std
    err = diff.abs() if kind == "l1" else diff**2
    return (err * mask).sum() / mask.sum().clamp(min=1)


def _soft_term(net, coarse, pred, w):
    return (((block_mean(pred, net.factor, w) - coarse) / net.std) ** 2).mean()


def _cosine(epoch: int, cfg: TrainConfig) -> float:
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(epoch, cfg.epochs) / max(cfg.epochs, 1)))


def _worker_init(_):
    torch.set_num_threads(1)


def _loader(ds, cfg: TrainConfig, device) -> DataLoader:
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                      worker_init_fn=_worker_init if cfg.num_workers else None,
                      pin_memory=device.type == "cuda")


@torch.no_grad()
def evaluate_loss(net, ds, cfg: TrainConfig, device) -> float:
    net.eval()
    total, n = 0.0, 0
    for x, y, w, c in _loader(ds, cfg, device):
        x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
        total += float(_loss(net(x, w, c), y, net.std, "mse")) * len(x)
        n += len(x)
    return total / max(n, 1)


def train(net, train_ds, val_ds, cfg: TrainConfig, device, *, resume: dict | None = None, on_epoch_end=None,
          loss_fn=None) -> dict:
    """Train ``net`` in place; returns {history, best_epoch, best_val_loss}.

    ``on_epoch_end(state)`` is called after every epoch (to
    write the checkpoint: best weights plus what ``resume`` needs).
    ``loss_fn(pred, x, y, w, c)``, if given, replaces the training loss (e.g. a
    distillation loss); validation always uses the MSE against the truth.
    """
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    # cosine decay to 1% of the initial rate over the planned epochs (or a constant rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: _cosine(e, cfg) if cfg.lr_schedule == "cosine" else 1.0)
    history, start, best, best_epoch, bad = [], 0, float("inf"), -1, 0
    best_state = copy.deepcopy(net.state_dict())
    if resume:
        net.load_state_dict(resume["last_state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
        best, best_epoch, bad = float(resume["best_val_loss"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_state = resume["best_state_dict"]
        log.info("resuming at epoch %d (best validation loss %.4g at epoch %d)", start, best, best_epoch)
    for epoch in range(start, cfg.epochs):
        train_ds.set_epoch(epoch)
        net.train()
        t0, seen, running = time.perf_counter(), 0, 0.0
        bar = tqdm(_loader(train_ds, cfg, device), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False, unit="batch")
        for x, y, w, c in bar:
            x, y, w, c = x.to(device), y.to(device), w.to(device), c.to(device)
            pred = net(x, w, c)
            loss = _loss(pred, y, net.std, cfg.loss) if loss_fn is None else loss_fn(pred, x, y, w, c)
            if net.constraint.name == "soft":
                loss = loss + cfg.soft_weight * _soft_term(net, c, pred, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{running / seen:.4g}")
        sched.step()
        seconds = time.perf_counter() - t0
        val = evaluate_loss(net, val_ds, cfg, device)
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
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "history": history,
                        "best_val_loss": best, "best_epoch": best_epoch, "bad_epochs": bad})
        if bad >= cfg.patience:
            log.info("early stopping: no improvement for %d epochs", bad)
            break
    net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_loss": best}
