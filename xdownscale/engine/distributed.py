"""Data-parallel training (PyTorch DDP) behind ``fit(..., nproc=N)`` and ``xdownscale fit --nproc N``.

``fit_distributed`` spawns N processes (``torch.multiprocessing``, start method
``spawn``) that meet through a rendezvous file and form a ``torch.distributed``
group: ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per rank). Every rank prepares the
same training setup (pairing and normalisation are deterministic), seeds and builds
the same network, and trains it wrapped in ``DistributedDataParallel``; each global
batch of the patch stream (items depend only on (seed, epoch, index)) is split into N
equal shards, so with the same global ``batch_size`` a DDP step is the single-process
step up to float round-off. Rank 0 writes the checkpoints; the calling process gets
the trained :class:`~xdownscale.engine.downscaler.Downscaler`.

Scripts launched by ``torchrun`` (``WORLD_SIZE``/``RANK`` in the environment) call
``fit(...)`` as usual: every rank joins the group with ``env://`` and trains its shard.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .contract import FitRequest

log = logging.getLogger("xdownscale")


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` / elastic launch with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def check_nproc(nproc, cfg) -> int:
    """Validate ``nproc`` against the batch and epoch sizes (clear errors before any process starts)."""
    if not isinstance(nproc, (int, np.integer)) or nproc < 1:
        raise DataError(f"nproc must be a positive integer (processes to train with), got {nproc!r}")
    nproc = int(nproc)
    if nproc > 1 and cfg.batch_size % nproc:
        raise DataError(f"batch_size={cfg.batch_size} does not split over nproc={nproc} processes: use a "
                        f"multiple of {nproc} (each process takes batch_size/nproc patches per step)")
    if nproc > 1 and cfg.samples_per_epoch is not None and cfg.samples_per_epoch % cfg.batch_size:
        raise DataError(f"with nproc > 1, samples_per_epoch ({cfg.samples_per_epoch}) must be a multiple of "
                        f"batch_size ({cfg.batch_size}) so every process takes part in every step")
    if nproc > 1 and torch.cuda.is_available() and str(cfg.device) in ("auto", "cuda") \
            and nproc > torch.cuda.device_count():
        raise DataError(f"nproc={nproc} but only {torch.cuda.device_count()} CUDA device(s): one process per GPU")
    return nproc


def _rank_device(cfg, rank: int) -> torch.device:
    from .device import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


@dataclass(frozen=True)
class SetupFactory:
    """How every rank builds the same training setup: one target (:func:`~.setup.prepare`) or
    several targets and inputs (:func:`~.multi_setup.prepare_request`). Picklable, so spawned
    ranks rebuild it from the request instead of receiving tensors."""

    request: FitRequest
    model_kwargs: dict
    targets: tuple[str, ...] | None = None

    def __call__(self):
        from .multi_setup import prepare_request
        from .setup import prepare

        if self.targets is None:
            return prepare(self.request.hr, **self.request.setup_kwargs(), model_kwargs=self.model_kwargs)
        return prepare_request(self.request, list(self.targets), self.model_kwargs)

    def with_checkpoint(self, path) -> SetupFactory:
        """The same setup writing to ``path`` (the default checkpoint path is per process)."""
        return replace(self, request=replace(self.request, checkpoint=str(path)))

    def quiet(self) -> SetupFactory:
        """The same setup without a progress bar (the ranks other than 0)."""
        cfg = self.request.cfg
        return replace(self, request=replace(self.request, cfg=type(cfg)(**{**cfg.to_dict(), "progress": False})))


def train_rank(rank: int, world_size: int, make_setup: SetupFactory) -> tuple[dict, dict]:
    """Train this rank's shard in an initialised process group; returns (result, best state dict)."""
    from ..models import build_network
    from .trainer import train

    cfg = make_setup.request.cfg
    setup = make_setup()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = build_network(setup.network)
    train_ds, val_ds = setup.datasets()
    if len(train_ds) % cfg.batch_size:  # the automatic epoch size: whole batches so every rank steps
        train_ds.n_samples = max(cfg.batch_size, len(train_ds) // cfg.batch_size * cfg.batch_size)
        setup.meta["training"]["samples_per_epoch"] = train_ds.n_samples
    device = _rank_device(cfg, rank)
    if rank == 0:
        log.info("training %s x%d on %d processes (%s), %d patches/epoch, %d per process per step",
                 setup.model, setup.factor, world_size, torch.distributed.get_backend(), len(train_ds),
                 cfg.batch_size // world_size)
    result = train(net, train_ds, val_ds, cfg, device, resume=setup.checked_resume(),
                   on_epoch_end=setup.save_epoch if rank == 0 else None, rank=rank, world_size=world_size)
    torch.distributed.barrier()
    return result, {k: v.detach().cpu() for k, v in net.state_dict().items()}


def _spawned(rank: int, world_size: int, init_file: str, result_file: str, threads: int,
             make_setup: SetupFactory) -> None:
    """Entry point of one spawned rank."""
    torch.set_num_threads(threads)
    cfg = make_setup.request.cfg
    if rank != 0:
        make_setup = make_setup.quiet()
    backend = "nccl" if _rank_device(cfg, rank).type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                                         world_size=world_size)
    try:
        result, state = train_rank(rank, world_size, make_setup)
        torch.save({"result": result, "state_dict": state}, f"{result_file}.rank{rank}")
    finally:
        torch.distributed.destroy_process_group()


def fit_distributed(make_setup: SetupFactory, *, nproc: int):
    """Train on ``nproc`` spawned processes and return the Downscaler (rank 0's weights)."""
    import torch.multiprocessing as mp

    from ..models import build_network
    from .setup import finish

    setup = make_setup()  # checks the input before spawning
    setup.datasets()
    make_setup = make_setup.with_checkpoint(setup.path)  # the default path is per process: fix it here
    threads = max(1, torch.get_num_threads() // nproc)
    with tempfile.TemporaryDirectory(prefix="xdownscale-ddp-") as tmp:
        init_file, result_file = str(Path(tmp) / "rendezvous"), str(Path(tmp) / "result.pt")
        mp.start_processes(_spawned, args=(nproc, init_file, result_file, threads, make_setup),
                           nprocs=nproc, join=True, start_method="spawn")
        outs = [torch.load(f"{result_file}.rank{r}", map_location="cpu", weights_only=True) for r in range(nproc)]
    out = outs[0]
    diverged = [r for r, o in enumerate(outs) if any(not torch.equal(v, o["state_dict"][k])
                                                     for k, v in out["state_dict"].items())]
    if diverged:  # DDP keeps replicas identical; anything else is a bug worth stopping for
        raise RuntimeError(f"data-parallel ranks {diverged} ended with weights different from rank 0")
    out["result"]["nproc"] = nproc
    out["result"]["ranks_in_sync"] = True  # checked just above, tensor by tensor
    net = build_network(setup.network)
    net.load_state_dict(out["state_dict"])
    saved = setup.path.exists()
    if saved:  # rank 0's epoch bookkeeping (e.g. the rounded epoch size) is in its checkpoint
        from .checkpoint import read_checkpoint

        setup.meta["training"].update(read_checkpoint(setup.path)["training"])
    return finish(setup, net, out["result"])


def fit_torchrun(make_setup: SetupFactory):
    """``fit`` inside a ``torchrun`` launch: join the group from the environment, train, and return the
    Downscaler on every rank (rank 0 has written the checkpoint)."""
    from ..models import build_network
    from .setup import finish

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cfg = make_setup.request.cfg
    check_nproc(world_size, cfg)
    own_group = not torch.distributed.is_initialized()
    if own_group:
        backend = "nccl" if _rank_device(cfg, int(os.environ.get("LOCAL_RANK", rank))).type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, init_method="env://")
    try:
        setup = make_setup()
        path = [str(setup.path)]  # the default checkpoint path is per process: take rank 0's
        torch.distributed.broadcast_object_list(path, src=0)
        make_setup = make_setup.with_checkpoint(path[0])
        result, state = train_rank(rank, world_size, make_setup)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()
    setup = make_setup()
    setup.datasets()
    net = build_network(setup.network)
    net.load_state_dict(state)
    if rank == 0:
        return finish(setup, net, result)
    from .downscaler import Downscaler

    setup.meta["training"].update(result)  # the model store is updated by rank 0 only
    return Downscaler(net.cpu(), setup.meta, checkpoint=setup.path if setup.path.exists() else None)
