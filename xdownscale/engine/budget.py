"""A memory budget for prediction: ``predict(..., max_memory="2GB")``.

The budget is the working memory prediction may add to the process while a result is
computed and streamed to a file (the interpreter, the libraries and the model's weights come
on top, as does a result the caller holds whole with ``.compute()``). It fixes four numbers
(:class:`MemoryPlan`): the tile side, the time steps per chunk, the frames that go through
the network at once, and how many chunks run at the same time (a :class:`ChunkGate`: chunks
run on its own few threads, whatever the number of Dask threads, and freed memory is handed
back to the system after each).

What one frame costs in the network is measured, not guessed: :func:`network_cost` runs the
model on two small probe tiles and reads the process's peak resident memory around each
(Linux: ``/proc/self/clear_refs`` resets the peak), which gives bytes per fine cell and a
fixed part. Elsewhere it falls back to forward hooks (the largest input plus output of one
layer, doubled). The result is cached per model. The estimate carries a 1.5 safety factor:
measured peaks over the baseline reached 58-96% of tight budgets (``benchmarks/budget.py``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import re
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

DEFAULT_FRACTION = 0.5  # of the memory available when predict is called
DEFAULT_CAP = 4 << 30  # ... but no more than this by default
DEFAULT_FLOOR = 256 << 20
OUTPUT_COPIES = 4  # fine float32 arrays a running chunk holds besides the network (output, trim, mask, write)
SAFETY = 1.5  # on the measured network cost (heap fragmentation, other copies: 1.25 left 1% headroom)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_COSTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {probe key: cost}
_PROBE_LOCK = threading.Lock()
_POOLS: dict = {}  # slots -> the threads chunks run on (shared by all predictions in the process)
_POOLS_LOCK = threading.Lock()


def _find_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _find_trim()


def release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing), so the
    resident size follows what is in use rather than the largest chunk each thread ever held."""
    if _TRIM is not None:
        _TRIM(0)


def parse_bytes(value) -> int:
    """``max_memory`` as bytes: an int, or a string such as ``"2GB"``, ``"500 MB"``, ``"1.5GiB"``."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if value > 0 and math.isfinite(value):
            return int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise DataError(f"max_memory={value!r} is not a memory size: pass bytes (an int > 0) or a string such as "
                    "'2GB' or '500MB'")


def available_memory() -> int | None:
    """Bytes the system can still give (MemAvailable), or None where it cannot say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory() -> int:
    """``$XDOWNSCALE_MAX_MEMORY`` if set, else half the available memory, between 256 MB and 4 GiB."""
    env = os.environ.get("XDOWNSCALE_MAX_MEMORY")
    if env:
        return parse_bytes(env)
    avail = available_memory()
    if avail is None:
        return 1 << 30
    return int(min(DEFAULT_CAP, max(DEFAULT_FLOOR, DEFAULT_FRACTION * avail)))


def resolve_max_memory(value) -> int:
    return default_max_memory() if value is None else parse_bytes(value)


def dask_threads() -> int:
    """Threads Dask's local scheduler runs tasks on (``num_workers`` or the CPU count)."""
    import dask
    from dask.system import CPU_COUNT

    return max(1, int(dask.config.get("num_workers", None) or CPU_COUNT))


class ChunkGate:
    """Runs chunks on ``slots`` threads of its own, so at most ``slots`` are computed at a time
    whatever the number of Dask threads, and only those threads ever hold a chunk's memory (each
    thread's heap keeps what it once held); freed memory goes back to the system after each chunk.
    Pickles as its slot count, so each Dask worker process gets a gate of its own."""

    def __init__(self, slots: int):
        self.slots = max(1, int(slots))

    def __reduce__(self):
        return (ChunkGate, (self.slots,))

    def run(self, fn, *args):
        from concurrent.futures import ThreadPoolExecutor

        with _POOLS_LOCK:
            pool = _POOLS.get(self.slots)
            if pool is None:
                pool = _POOLS[self.slots] = ThreadPoolExecutor(self.slots, thread_name_prefix="xdownscale-chunk")
        return pool.submit(_run_and_release, fn, args).result()


def _run_and_release(fn, args):
    try:
        return fn(*args)
    finally:
        release_free_memory()


def _rss_peak_probe(run, sizes) -> list[int] | None:
    """Peak resident bytes above the starting point for ``run(size)`` per size, or None where the
    peak cannot be reset (not Linux)."""

    def status(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise OSError(key)

    out = []
    try:
        run(max(sizes))  # warm: one-off allocations (weight layouts, thread pools) are not per-cell cost
        for size in sizes:
            release_free_memory()  # else the warm run's freed memory hides the peak
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            before = status("VmRSS:")
            run(size)
            out.append(max(0, status("VmHWM:") - before))
    except OSError:
        return None
    return out


def _hook_probe(module, run, sizes) -> list[int]:
    """Fallback: the largest input plus output of one leaf layer, doubled (skips held across layers)."""
    import torch

    peak = [0]

    def hook(mod, inputs, output):
        nbytes = sum(t.numel() * t.element_size() for t in (*inputs, output) if isinstance(t, torch.Tensor))
        peak[0] = max(peak[0], nbytes)

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    out = []
    try:
        for size in sizes:
            peak[0] = 0
            run(size)
            out.append(2 * peak[0])
    finally:
        for h in handles:
            h.remove()
    return out


def network_cost(runner, in_channels: int, factor: int, owner=None, fixed_channels=None) -> tuple[float, int]:
    """``(bytes per fine cell of one frame, fixed bytes)`` the network needs to predict a tile,
    measured on two probe tiles; cached per model (``owner``, default the runner's module), input
    channels and device. ``fixed_channels``: ``{channel: value}`` of inputs that are not fields
    (a temporal model's schedule)."""
    owner = runner.module if owner is None else owner
    fixed_channels = dict(fixed_channels or {})
    key = (in_channels, factor, str(runner.device), runner.channels_last, getattr(runner, "precision", "fp32"),
           tuple(sorted(fixed_channels.items())))
    cached = _COSTS.setdefault(owner, {})
    if key in cached:
        return cached[key]
    rng = np.random.default_rng(0)

    def run(side: int) -> None:
        x = rng.standard_normal((1, in_channels, side, side)).astype("float32")
        for channel, value in fixed_channels.items():
            x[:, channel] = value
        coarse = np.abs(x[:, 0]) + 1.0
        outputs = getattr(runner.module, "n_targets", None)
        if outputs:  # a multi-target network conserves one map per output
            coarse = np.repeat(coarse[:, None], outputs, axis=1)
        runner(x, coarse, np.ones(side * factor, dtype="float32"), 1)

    sizes = (32, 64)
    with _PROBE_LOCK:
        peaks = _rss_peak_probe(run, sizes)
        if peaks is None or peaks[1] <= peaks[0]:
            peaks = _hook_probe(runner.module, run, sizes)
    cells = [(s * factor) ** 2 for s in sizes]
    per_cell = max((peaks[1] - peaks[0]) / (cells[1] - cells[0]), peaks[1] / cells[1] / 2, 4.0)
    fixed = max(0, int(peaks[0] - per_cell * cells[0]))
    cached[key] = (SAFETY * per_cell, int(SAFETY * fixed))
    return cached[key]


@dataclass(frozen=True)
class MemoryPlan:
    """What a budget allows. ``side``: tile side in coarse cells (halos included in the cost);
    ``steps``: frames per chunk; ``batch``: frames per network pass; ``slots``: chunks at once."""

    budget: int
    side: int
    steps: int
    batch: int
    slots: int
    per_cell: float
    fixed: int

    def chunk_bytes(self, factor: int, halo: int, in_channels: int) -> float:
        return chunk_cost(self.side, self.steps, self.batch, factor, halo, in_channels, self.per_cell, self.fixed)


def chunk_cost(side: int, steps: int, batch: int, factor: int, halo: int, in_channels: int,
               per_cell: float, fixed: int) -> float:
    """Bytes one running chunk holds: its coarse input, its fine outputs and one network pass."""
    cells = (side + 2 * halo) ** 2 * factor ** 2
    inputs = steps * (side + 2 * halo) ** 2 * in_channels * 4 * 4
    return fixed + batch * cells * per_cell + steps * cells * 4 * OUTPUT_COPIES + inputs


def plan_memory(budget: int, *, per_cell: float, fixed: int, factor: int, halo: int, in_channels: int,
                side: int, steps: int, batch_size: int, threads: int | None = None) -> MemoryPlan:
    """The largest tile (up to ``side``), chunk (up to ``steps`` frames) and batch (up to
    ``batch_size``) that fit ``budget`` with as many concurrent chunks as Dask has threads, or with
    fewer chunks at a time when they do not fit. Besides the running chunks, every Dask thread may
    hold one finished chunk's output until it is written."""
    threads = dask_threads() if threads is None else max(1, threads)
    floor = max(2 * halo, 4)

    def fits(s: int, t: int, b: int, slots: int) -> bool:
        waiting = threads * t * (s * factor) ** 2 * 4
        return slots * chunk_cost(s, t, b, factor, halo, in_channels, per_cell, fixed) + waiting <= budget

    s = side
    while s > floor and not fits(s, 1, 1, 1):
        s = max(floor, int(s * 0.8))
    if not fits(s, 1, 1, 1):
        need = chunk_cost(s, 1, 1, factor, halo, in_channels, per_cell, fixed) + threads * (s * factor) ** 2 * 4
        raise DataError(f"max_memory={budget / 1e6:.0f} MB is too small for one {s * factor}x{s * factor} fine tile "
                        f"of this model (about {need / 1e6:.0f} MB): raise max_memory to at least "
                        f"{math.ceil(need / 1e6)}MB")
    slots = threads
    while slots > 1 and not fits(s, 1, 1, slots):
        slots -= 1
    b = max(1, min(batch_size, steps))
    while b > 1 and not fits(s, b, b, slots):
        b = max(1, b // 2)
    t = b
    while t < steps and fits(s, min(steps, 2 * t), b, slots):
        t = min(steps, 2 * t)
    return MemoryPlan(budget=budget, side=s, steps=t, batch=b, slots=slots, per_cell=per_cell, fixed=fixed)
