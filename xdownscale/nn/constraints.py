"""Hard and soft conservation constraints at the output of a downscaling network.

Following Harder et al. (JMLR 2023), with P the (area-weighted) block mean by
the factor and K nearest upsampling:

* ``add``:     y = y~ + K(x - P y~)
* ``mult``:    y = y~ * K(x / P y~)                     (positive fields)
* ``softmax``: y = exp(y~) * K(x / P exp(y~))           (non-negative fields; output >= 0)
* ``scadd``:   Geiss & Hardin's bounded enforcement: the correction is scaled by the
  distance of each pixel to the lower or upper bound, so the output stays inside
  [lower, upper] (given as physical bounds; lower=0 keeps precipitation positive)
* ``soft``:    no change to the output; a loss term penalises |P y - x|
* ``none``:    no constraint

All act in physical units, so P y = x holds after de-normalisation; with cell
weights (cos latitude) P is the true area mean on lat/lon grids.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONSTRAINTS = ("none", "soft", "add", "mult", "softmax", "scadd")
HARD_CONSTRAINTS = ("add", "mult", "softmax", "scadd")


def block_mean(y: torch.Tensor, factor: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(Area-weighted) mean over non-overlapping ``factor x factor`` blocks.

    ``weights`` broadcasts against ``y[:, :1]`` (e.g. (B, 1, H, 1) cos-latitude rows).
    """
    if weights is None:
        return F.avg_pool2d(y, factor)
    w = weights.to(y.dtype).expand(y.shape[0], 1, y.shape[-2], y.shape[-1])
    return F.avg_pool2d(y * w, factor) / F.avg_pool2d(w, factor)


def upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """K: repeat every coarse cell ``factor x factor`` times."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _safe(d: torch.Tensor, eps: float) -> torch.Tensor:
    sign = torch.where(d >= 0, torch.ones_like(d), -torch.ones_like(d))
    return torch.where(d.abs() < eps, sign * eps, d)


class Constraint(nn.Module):
    """Base class: ``combine`` forms the pre-constraint field, ``forward`` enforces it."""

    name = "none"
    hard = False

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)

    def combine(self, base: torch.Tensor | None, residual: torch.Tensor, mean, scale) -> torch.Tensor:
        """Physical pre-constraint field from an interpolated ``base`` and a residual in units of ``scale``."""
        out = residual * scale
        return out + (base if base is not None else mean)

    def forward(self, y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return y

    def project(self, y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Enforce the constraint on a finished *physical* field ``y`` (a model without the layer
        inside, e.g. ``liif`` or a diffusion sample). ``forward`` takes the layer's own
        pre-activation, which differs from ``y`` for ``softmax``."""
        return self.forward(y, x, weights)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class NoConstraint(Constraint):
    name = "none"


class SoftConstraint(Constraint):
    """Leaves the output alone; the trainer adds ``soft_weight * |P y - x|^2`` to the loss."""

    name = "soft"


class AddConstraint(Constraint):
    name, hard = "add", True

    def forward(self, y, x, weights=None):
        return y + upsample_nearest(x - block_mean(y, self.factor, weights), self.factor)


class MultConstraint(Constraint):
    name, hard = "mult", True

    def forward(self, y, x, weights=None):
        py = _safe(block_mean(y, self.factor, weights), 1e-12)
        return y * upsample_nearest(x / py, self.factor)


class SoftmaxConstraint(Constraint):
    """y = exp(z) * K(x / P exp(z)): every block's cells share its mass by softmax weights.

    The network's pre-activation is parameterised as z = log(softplus(base + std * r)),
    so a zero residual r gives the interpolated field rescaled to conserve each
    block, and residuals have the same physical scale as for ``add``. The output
    is never negative for x >= 0.
    """

    name, hard = "softmax", True

    def combine(self, base, residual, mean, scale):
        pre = super().combine(base, residual, mean, scale)
        floor = torch.clamp(torch.as_tensor(scale, dtype=pre.dtype) * 1e-3, min=1e-12)
        # softplus(pre, beta=1/floor) written with tensor arithmetic (no Python float taken
        # from a buffer), so the layer exports to ONNX / torch.export as a graph
        return torch.log(F.softplus(pre / floor) * floor + 1e-30)

    def forward(self, y, x, weights=None):
        f = self.factor
        zmax = upsample_nearest(F.max_pool2d(y.detach(), f), f)
        e = torch.exp(y - zmax)
        # the block max was subtracted, so P e > 0 and nothing overflows
        scale = upsample_nearest(x / block_mean(e, f, weights), f)
        return e * scale

    def project(self, y, x, weights=None):
        # forward takes log-mass: exp(log y) keeps y's shape within each block, rescaled to conserve
        return self.forward(torch.log(y.clamp(min=1e-30)), x, weights)


class ScAddConstraint(Constraint):
    """Geiss & Hardin enforcement with physical bounds [lower, upper]."""

    name, hard = "scadd", True

    def __init__(self, factor: int, lower: float = -1.0, upper: float = 1.0):
        super().__init__(factor)
        if not upper > lower:
            raise ValueError(f"scadd needs upper > lower, got lower={lower}, upper={upper}")
        self.register_buffer("lower", torch.tensor(float(lower), dtype=torch.float64))
        self.register_buffer("upper", torch.tensor(float(upper), dtype=torch.float64))

    def forward(self, y, x, weights=None):
        f = self.factor
        c = ((self.upper + self.lower) / 2).to(y.dtype)
        h = ((self.upper - self.lower) / 2).to(y.dtype)
        u = torch.clamp((y - c) / h, -1 + 1e-6, 1 - 1e-6)
        ux = (x - c) / h
        pu = block_mean(u, f, weights)
        d = upsample_nearest(ux - pu, f)
        s = -torch.sign(d)  # -1: raise towards the upper bound, +1: lower towards the lower bound
        den = _safe(s + upsample_nearest(pu, f), 1e-12)
        out = u + d * (s + u) / den
        return c + h * out

    def extra_repr(self) -> str:
        return f"factor={self.factor}, lower={float(self.lower):g}, upper={float(self.upper):g}"


_CLASSES = {c.name: c for c in (NoConstraint, SoftConstraint, AddConstraint, MultConstraint, SoftmaxConstraint,
                                ScAddConstraint)}


def make_constraint(name: str, factor: int, **kwargs) -> Constraint:
    """Build a constraint layer by name (``none``, ``soft``, ``add``, ``mult``, ``softmax``, ``scadd``)."""
    if name is None:
        name = "none"
    if name not in _CLASSES:
        import difflib

        close = difflib.get_close_matches(str(name), CONSTRAINTS, n=2)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown constraint {name!r}.{hint} Choose one of {', '.join(CONSTRAINTS)}.")
    cls = _CLASSES[name]
    return cls(factor, **kwargs) if name == "scadd" else cls(factor)


def mass_violation(y: torch.Tensor, x: torch.Tensor, factor: int, weights=None) -> torch.Tensor:
    """Mean |P y - x|: zero (to float precision) for a hard constraint."""
    return (block_mean(y, factor, weights) - x).abs().mean()
