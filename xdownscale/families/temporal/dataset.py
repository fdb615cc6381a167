"""Random training patches for temporal models: packed windows and fine targets.

An item is ``(x, y, w, c)`` like :class:`~xdownscale.data.patches.PatchDataset`,
with ``x`` the packed window of :mod:`xdownscale.models.convgru`
(channel 0 target, 1 phase, 2 time factor, then ``M`` input frames). With
``time_factor > 1`` the inputs are taken every ``time_factor`` steps of the
training series and the target's phase inside the input interval is drawn at
random, so the model learns to downscale input times and synthesised times; half
of those samples are plain windows of consecutive steps (packed ``tf = 1``) so
that space-only prediction is trained too.
Windows stay inside their contiguous segment (edge frames repeated).
"""
from __future__ import annotations

import numpy as np
import torch

from ...data.fill import fill_nearest
from ...data.patches import SeededSamples
from ...models.convgru import inputs_needed

__all__ = ["SequencePatchDataset", "pack_indices"]


def pack_indices(anchor: np.ndarray, stride: int, n_inputs: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(n, n_inputs)`` indices ``clip(anchor + m * stride, lo, hi)``: the input frames of
    each sample, edge frames repeated inside ``[lo, hi]``."""
    idx = np.asarray(anchor)[:, None] + stride * np.arange(n_inputs)[None, :]
    return np.clip(idx, np.asarray(lo)[:, None], np.asarray(hi)[:, None])


class SequencePatchDataset(SeededSamples):
    """Samples for a temporal model.

    ``coarse``: (T, h, w) physical coarse series; ``fine``: (T, H, W) physical fine series
    (NaN where missing); ``row_weights``: (H,) fine row weights; ``stats``: {"mean", "std"};
    ``targets``: time indices that may be targets; ``lo``/``hi``: (T,) first/last index of the
    contiguous run each time belongs to; ``window``, ``time_factor``, ``factor``; ``patch_size``
    in fine cells; ``n_samples``, ``seed``, ``fixed`` (same samples every epoch).
    """

    def __init__(self, coarse: np.ndarray, fine: np.ndarray, row_weights: np.ndarray, stats: dict, targets,
                 lo: np.ndarray, hi: np.ndarray, *, window: int, time_factor: int, factor: int, patch_size: int,
                 n_samples: int, seed: int, fixed: bool = False):
        self.coarse, self.fine, self.row_weights = coarse, fine, row_weights
        self.mean, self.std = float(stats["mean"]), float(stats["std"])
        self.targets, self.lo, self.hi = np.asarray(targets), np.asarray(lo), np.asarray(hi)
        self.window, self.time_factor, self.factor = int(window), int(time_factor), int(factor)
        self.n_inputs = max(inputs_needed(self.window, self.time_factor), inputs_needed(self.window, 1))
        ny, nx = fine.shape[-2:]
        f = self.factor
        self.patch = ((min(int(patch_size), ny) // f) * f, (min(int(patch_size), nx) // f) * f)
        if min(self.patch) < f:
            raise ValueError(f"patch_size {patch_size} is smaller than the factor {f}")
        self.n_samples, self.seed, self.fixed, self.epoch = int(n_samples), int(seed), fixed, 0

    def __getitem__(self, index: int):
        rng = self.rng(index)
        f, (py, px) = self.factor, self.patch
        j = int(self.targets[rng.integers(len(self.targets))])
        # with a time factor, half the samples are plain windows of consecutive inputs (tf = 1), so
        # space-only prediction stays in the training distribution
        tf = self.time_factor if self.time_factor == 1 or rng.random() < 0.5 else 1
        r = int(rng.integers(tf))
        # dense window positions r..r+window-1 from the first input; the target sits at window // 2
        anchor = j - self.window // 2 - r
        idx = pack_indices(np.array([anchor]), tf, inputs_needed(self.window, tf), self.lo[[j]], self.hi[[j]])[0]
        y0 = int(rng.integers((self.fine.shape[-2] - py) // f + 1)) * f
        x0 = int(rng.integers((self.fine.shape[-1] - px) // f + 1)) * f
        cys, cxs = slice(y0 // f, (y0 + py) // f), slice(x0 // f, (x0 + px) // f)
        target = self.coarse[j, cys, cxs]
        frames = self.coarse[idx, cys, cxs]
        h, w = target.shape
        frames = np.concatenate([frames, np.repeat(frames[-1:], self.n_inputs - len(idx), axis=0)])
        x = np.concatenate([((target - self.mean) / self.std)[None], np.full((1, h, w), r), np.full((1, h, w), tf),
                            (frames - self.mean) / self.std], axis=0)
        y = self.fine[j, y0 : y0 + py, x0 : x0 + px]
        wts = self.row_weights[y0 : y0 + py]
        return (torch.from_numpy(np.nan_to_num(fill_nearest(x), nan=0.0).astype("float32")),
                torch.from_numpy(y[None].astype("float32")),
                torch.from_numpy(wts[None, :, None].astype("float32")),
                torch.from_numpy(np.nan_to_num(target, nan=self.mean)[None].astype("float32")))
