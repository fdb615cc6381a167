"""High-order degradation of ``liif``'s coarse training inputs (``degradation="high-order"``):
blur, down-and-up resizing and noise, so a model trained on clean coarsenings copes with real,
blurrier or noisier coarse data."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1), groups=x.shape[1])
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(x.shape[1], 1, -1, 1), groups=x.shape[1])


def degrade(x: np.ndarray, rng: np.random.Generator, rounds: int = 2) -> np.ndarray:
    """High-order degradation of a normalised coarse input (C, h, w): ``rounds`` repetitions of
    blur (p=0.7, sigma 0.2-1.2 cells), down-and-up bilinear resizing (p=0.5, by 1-1.6) and
    Gaussian noise (p=0.7, sigma up to 0.03 standard deviations), each drawn from ``rng``."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype="float32"))[None]
    h, w = t.shape[-2:]
    for _ in range(rounds):
        if rng.random() < 0.7:
            t = _gaussian_blur(t, float(rng.uniform(0.2, 1.2)))
        if rng.random() < 0.5 and min(h, w) >= 4:
            r = float(rng.uniform(1.0, 1.6))
            small = (max(2, int(round(h / r))), max(2, int(round(w / r))))
            t = F.interpolate(F.interpolate(t, size=small, mode="bilinear", align_corners=False, antialias=True),
                              size=(h, w), mode="bilinear", align_corners=False)
        if rng.random() < 0.7:
            t = t + float(rng.uniform(0, 0.03)) * torch.from_numpy(rng.standard_normal(t.shape).astype("float32"))
    return t[0].numpy()
