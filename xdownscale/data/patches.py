"""Random training patches streamed from (lazy) fields.

``PatchDataset`` is a ``torch.utils.data.Dataset`` over a :class:`Pair`. Each
item is a random fine window (aligned to the factor, inside one Dask chunk
where the chunks allow it) read on demand, so a Zarr archive is never loaded
whole; the coarse input is made on the fly by the exact area-weighted block
mean (or read from the real coarse field). Items depend only on
``(seed, epoch, index)``, so training is reproducible with any number of
DataLoader workers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .fill import fill_nearest
from .pairs import Pair, coarsen_block


def _is_lazy(da) -> bool:
    return hasattr(da.data, "dask")


def _aligned_start(rng: np.random.Generator, size: int, patch: int, factor: int, chunks: tuple[int, ...] | None) -> int:
    """A window start that is a multiple of ``factor`` and, if possible, keeps the window in one chunk."""
    if chunks is not None:
        starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
        fitting = [(s, c) for s, c in zip(starts, chunks) if c >= patch and s % factor == 0]
        if fitting:
            s, c = fitting[rng.integers(len(fitting))]
            return int(s + rng.integers((c - patch) // factor + 1) * factor)
    return int(rng.integers((size - patch) // factor + 1) * factor)


class SeededSamples(Dataset):
    """``n_samples`` random samples per epoch; sample ``index`` of an epoch draws from
    :meth:`rng`, a generator seeded by ``(seed, epoch, index)`` (the same every epoch when
    ``fixed``, for validation), so any number of DataLoader workers or DDP ranks see the
    same stream."""

    n_samples: int
    seed: int
    fixed: bool = False
    epoch: int = 0

    def __len__(self) -> int:
        return self.n_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, 0 if self.fixed else self.epoch + 1, int(index)))


class PatchDataset(SeededSamples):
    """Random (coarse input, fine target, fine row weights) samples from a pair.

    ``x``: (C, p/f, p/f) normalised coarse channels: the variable, extra predictors, folded
    covariates. ``y``: (1, p, p) physical fine target (NaN where missing). ``w``: (1, p, 1).
    ``c``: (1, p/f, p/f) the physical coarse field, the quantity a constraint conserves.
    """

    def __init__(self, pair: Pair, stats: dict, times, *, patch_size: int, n_samples: int, seed: int,
                 covariates: np.ndarray | None = None, extra: list | None = None, extra_stats: list | None = None,
                 fixed: bool = False):
        self.pair, self.stats, self.times = pair, stats, np.asarray(times)
        self.factor, self.seed, self.fixed = pair.factor, int(seed), fixed
        self.n_samples, self.epoch = int(n_samples), 0
        ny, nx = pair.hr.shape[-2:]
        f = self.factor
        # the patch is a multiple of the factor; a domain smaller than a patch trains on whole fields
        # each side is a multiple of the factor; a side shorter than the patch uses the whole
        # field in that direction (a domain smaller than a patch trains on whole fields)
        self.patch = ((min(int(patch_size), ny) // f) * f, (min(int(patch_size), nx) // f) * f)
        if min(self.patch) < f:
            raise ValueError(f"patch_size {patch_size} is smaller than the factor {f}")
        self.shape = (ny, nx)
        self.covariates = covariates
        self.extra = extra or []
        self.extra_stats = extra_stats or []
        self._cache = {}

    def _array(self, key, da):
        """numpy for in-memory fields (read once), the dask array for lazy ones (read per window)."""
        if key not in self._cache:
            self._cache[key] = da.data if _is_lazy(da) else np.asarray(da.values)
        return self._cache[key]

    def _read(self, key, da, t, ys: slice, xs: slice) -> np.ndarray:
        arr = self._array(key, da)
        idx = (t, ys, xs) if arr.ndim == 3 else (ys, xs)
        out = arr[idx]
        return np.asarray(out.compute() if hasattr(out, "compute") else out, dtype="float64")

    def window(self, index: int) -> tuple[int, int, int]:
        rng = self.rng(index)
        t = int(self.times[rng.integers(len(self.times))]) if len(self.times) else 0
        chunks = self.pair.hr.chunks if _is_lazy(self.pair.hr) else None
        ychunks = chunks[-2] if chunks else None
        xchunks = chunks[-1] if chunks else None
        y0 = _aligned_start(rng, self.shape[0], self.patch[0], self.factor, ychunks)
        x0 = _aligned_start(rng, self.shape[1], self.patch[1], self.factor, xchunks)
        return t, y0, x0

    def __getitem__(self, index: int):
        t, y0, x0 = self.window(index)
        f, (py, px) = self.factor, self.patch
        ys, xs = slice(y0, y0 + py), slice(x0, x0 + px)
        cys, cxs = slice(y0 // f, (y0 + py) // f), slice(x0 // f, (x0 + px) // f)
        w = self.pair.row_weights[ys]
        hr = self._read("hr", self.pair.hr, t, ys, xs)
        if self.pair.lr is None:
            lr = coarsen_block(hr, f, w)
        else:
            lr = self._read("lr", self.pair.lr, t, cys, cxs)
        channels = [(lr - self.stats["mean"]) / self.stats["std"]]
        for k, (da, st) in enumerate(zip(self.extra, self.extra_stats)):
            if da.shape[-2:] == self.pair.hr.shape[-2:]:
                field = coarsen_block(self._read(f"extra{k}", da, t, ys, xs), f, w)
            else:
                field = self._read(f"extra{k}", da, t, cys, cxs)
            channels.append((field - st["mean"]) / st["std"])
        x = np.nan_to_num(fill_nearest(np.stack(channels)), nan=0.0)  # as every prediction path does
        if self.covariates is not None:
            x = np.concatenate([x, self.covariates[:, cys, cxs]], axis=0)
        return (
            torch.from_numpy(x.astype("float32")),
            torch.from_numpy(hr[None].astype("float32")),
            torch.from_numpy(w[None, :, None].astype("float32")),
            torch.from_numpy(np.nan_to_num(lr, nan=self.stats["mean"])[None].astype("float32")),
        )


def default_samples_per_epoch(n_times: int, shape: tuple[int, int], patch: int, batch_size: int) -> int:
    """About one pass over the training fields: non-overlapping patches per field x fields."""
    per_field = max(1, (shape[0] // max(patch, 1)) * (shape[1] // max(patch, 1)))
    return int(min(max(n_times * per_field, batch_size), 50_000))
