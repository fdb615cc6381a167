"""``liif`` on a real pair: ``fit(lr=coarse_ds, hr=fine_ds, model="liif", var=[...])``.

A real pair (e.g. ARPEGE 0.1 deg -> AROME 0.025 deg) has one scale, the ratio of its grids, so
the model trains at that scale only: each window is ``lr_patch`` coarse cells of the inputs (on
the fine grid's cell-nested coarse grid: :func:`~xdownscale.engine.multi_setup.prepare_request`
regrids an offset or point-nested ``lr`` onto it, as for every family) and the ``f x lr_patch``
fine cells it covers, queried at ``queries`` random fine cells with cell size ``1 / f``. The
inputs are every gridded variable of ``lr`` (``predictors=`` narrows the set), each normalised
with its own statistics; a target whose variable is among the inputs takes the bicubic
interpolation of that input as its base.

The record keeps the scale (``network["factor"] = f``, ``scales = [f, f]``, ``grid["pair"] =
"real"`` and the inputs' offset), and :func:`.multi.predict_liif_multi` applies it: inputs on the
training spacing, moved by the training offset, ``factor=f`` by default; another factor, grid or
cell size still runs, with a warning that it was never trained.
"""
from __future__ import annotations

import numpy as np
import torch

from ...data.fill import fill_nearest
from ...data.patches import SeededSamples
from .degradation import degrade


def _read(field, t: int, ys: slice, xs: slice) -> np.ndarray:
    w = field[t, ys, xs]
    return np.asarray(w.compute() if hasattr(w, "compute") else w, dtype="float64")


class PairSampleDataset(SeededSamples):
    """Items ``(x, y, queries, coarse)`` at the one scale ``factor`` of a real pair: x (C, p, p) the
    normalised inputs of a window of p coarse cells (p = ``lr_patch``, less on a small domain),
    y (Q, K) the physical targets at ``queries`` random fine cells of the ``p * factor`` fine cells
    under it, queries (Q, 4) their normalised (y, x) and cell size ``1 / factor`` (coarse cells),
    coarse (C, p, p) the physical inputs. ``targets``: fine (T, H, W) fields; ``inputs``: coarse
    (T, H / factor, W / factor) fields on the cell-nested grid; ``stats``: one per input."""

    def __init__(self, targets: list, inputs: list, stats: list, factor: int, times, *, lr_patch: int, queries: int,
                 n_samples: int, seed: int, degradation: str = "none", fixed: bool = False):
        self.targets, self.inputs, self.f = list(targets), list(inputs), int(factor)
        self.times, self.n_samples, self.seed, self.fixed = np.asarray(times), int(n_samples), int(seed), fixed
        self.queries, self.degradation, self.epoch = int(queries), degradation, 0
        self.means = np.array([float(s["mean"]) for s in stats])[:, None, None]
        self.stds = np.array([float(s["std"]) for s in stats])[:, None, None]
        ny, nx = self.inputs[0].shape[-2:]
        self.window = (min(int(lr_patch), ny), min(int(lr_patch), nx))
        self.scales = (float(self.f), float(self.f))

    def __getitem__(self, index: int):
        rng = self.rng(index)
        (py, px), f = self.window, self.f
        ny, nx = self.inputs[0].shape[-2:]
        t = int(self.times[rng.integers(len(self.times))])
        cy, cx = int(rng.integers(ny - py + 1)), int(rng.integers(nx - px + 1))
        coarse = np.stack([_read(da, t, slice(cy, cy + py), slice(cx, cx + px)) for da in self.inputs])
        x = np.nan_to_num((fill_nearest(coarse) - self.means) / self.stds, nan=0.0)
        if self.degradation == "high-order":
            x = degrade(x, rng)
        by, bx = py * f, px * f
        fine = np.stack([_read(da, t, slice(cy * f, cy * f + by), slice(cx * f, cx * f + bx)) for da in self.targets])
        pick = rng.choice(by * bx, self.queries, replace=by * bx < self.queries)
        iy, ix = np.divmod(pick, bx)
        q = np.stack([-1 + (2 * iy + 1) / by, -1 + (2 * ix + 1) / bx, np.full(iy.shape, 1.0 / f),
                      np.full(iy.shape, 1.0 / f)], axis=-1)
        return (torch.from_numpy(x.astype("float32")), torch.from_numpy(np.ascontiguousarray(fine[:, iy, ix].T,
                                                                                            dtype="float32")),
                torch.from_numpy(q.astype("float32")),
                torch.from_numpy(np.where(np.isfinite(coarse), coarse, self.means).astype("float32")))
