"""Random training patches for temporal models: packed windows and fine targets.

An item is ``(x, y, w, c)`` like :class:`~xdownscale.data.patches.PatchDataset`,
with ``x`` the packed window of :mod:`xdownscale.models.convgru`
(the target frame's ``C`` inputs, phase, time factor, then ``M`` input frames of ``C``
channels, then the ``S`` folded static covariate channels; ``C = 1`` for a single target). With
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

__all__ = ["SequencePatchDataset", "WindowSamples", "pack_indices"]


def pack_indices(anchor: np.ndarray, stride: int, n_inputs: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(n, n_inputs)`` indices ``clip(anchor + m * stride, lo, hi)``: the input frames of
    each sample, edge frames repeated inside ``[lo, hi]``."""
    idx = np.asarray(anchor)[:, None] + stride * np.arange(n_inputs)[None, :]
    return np.clip(idx, np.asarray(lo)[:, None], np.asarray(hi)[:, None])


class WindowSamples(SeededSamples):
    """Samples for a temporal model of ``C`` input variables and ``K`` targets.

    ``coarse``: (T, C, h, w) physical coarse inputs; ``fine``: (T, K, H, W) physical fine
    targets (NaN where missing); ``row_weights``: (H,) fine row weights; ``stats``: one
    {"mean", "std"} per input; ``sources``: the input each target conserves (None: none);
    ``targets``: time indices that may be targets; ``lo``/``hi``: (T,) first/last index of the
    contiguous run each time belongs to; ``window``, ``time_factor``, ``factor``; ``patch_size``
    in fine cells; ``n_samples``, ``seed``, ``fixed`` (same samples every epoch); ``covariates``:
    (S, h, w) folded static channels on the whole coarse grid
    (:func:`~xdownscale.data.covariates.fold_covariates`) or None. Items:
    ``x`` (C + 2 + M * C + S, p/f, p/f), ``y`` (K, p, p), ``w`` (1, p, 1), ``c`` (K, p/f, p/f).
    """

    def __init__(self, coarse: np.ndarray, fine: np.ndarray, row_weights: np.ndarray, stats: list, sources: list,
                 targets, lo: np.ndarray, hi: np.ndarray, *, window: int, time_factor: int, factor: int,
                 patch_size: int, n_samples: int, seed: int, fixed: bool = False,
                 covariates: np.ndarray | None = None):
        self.coarse, self.fine, self.row_weights = coarse, fine, row_weights
        self.covariates = covariates
        self.mean = np.array([float(s["mean"]) for s in stats])[:, None, None]
        self.std = np.array([float(s["std"]) for s in stats])[:, None, None]
        self.sources = list(sources)
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
        target = self.coarse[j, :, cys, cxs]  # (C, h, w)
        frames = self.coarse[idx, :, cys, cxs]  # (M', C, h, w), the same times for every input
        h, w = target.shape[-2:]
        frames = np.concatenate([frames, np.repeat(frames[-1:], self.n_inputs - len(idx), axis=0)])
        x = np.concatenate([(target - self.mean) / self.std, np.full((1, h, w), r), np.full((1, h, w), tf),
                            ((frames - self.mean) / self.std).reshape(-1, h, w)], axis=0)
        y = self.fine[j, :, y0 : y0 + py, x0 : x0 + px]
        wts = self.row_weights[y0 : y0 + py]
        c = np.stack([np.nan_to_num(target[s], nan=float(self.mean[s, 0, 0])) if s is not None
                      else np.zeros((h, w)) for s in self.sources])
        x = np.nan_to_num(fill_nearest(x), nan=0.0)
        if self.covariates is not None:  # static: after the frames, as tiled prediction appends them
            x = np.concatenate([x, self.covariates[:, cys, cxs]], axis=0)
        return (torch.from_numpy(x.astype("float32")),
                torch.from_numpy(y.astype("float32")),
                torch.from_numpy(wts[None, :, None].astype("float32")),
                torch.from_numpy(c.astype("float32")))


class SequencePatchDataset(WindowSamples):
    """:class:`WindowSamples` of one variable, its own target: ``coarse`` (T, h, w), ``fine``
    (T, H, W), ``stats`` one {"mean", "std"} (``covariates=`` as there); items as
    :class:`~xdownscale.data.patches.PatchDataset`."""

    def __init__(self, coarse: np.ndarray, fine: np.ndarray, row_weights: np.ndarray, stats: dict, targets,
                 lo: np.ndarray, hi: np.ndarray, **kwargs):
        super().__init__(coarse[:, None], fine[:, None], row_weights, [stats], [0], targets, lo, hi, **kwargs)
