"""Cross-variable consistency rules of a multi-target network, applied after conservation.

Three rules, written as strings (``fit(consistency=[...])``) or as these dataclasses:

* ``Bounds("r", 0, 100)`` / ``"0<=r<=100"`` (also ``"tp>=0"``, ``"r<=100"``): the target
  stays inside [lower, upper];
* ``LessEqual("d2m", "t2m")`` / ``"d2m<=t2m"``: one target never exceeds another;
* ``Magnitude("ws", "u10", "v10")`` / ``"ws=hypot(u10,v10)"``: the speed target is the
  magnitude of the components, which are kept (``keep="components"``); or
  ``"hypot(u10,v10)=ws"`` (``keep="speed"``): the components are rescaled to the speed target.

Every rule acts on the (B, K, H, W) physical output of the per-target constraint layers
(:mod:`.constraints`) and composes with them through one operation,
:func:`mean_preserving_clip`: clamp into the bounds, then hand each block's lost (or
gained) mass back to its cells in proportion to their room to the bound. The block mean is
kept exactly when it lies within the bounds, so a hard-conserved target stays conserved.
Where the coarse field itself breaks a rule (a block mean outside the bounds, a coarse dew
point above the coarse temperature), the rule wins and that block's mean is clamped.

* bounds: the target's own block means are kept (inside the bounds);
* ``a <= b``: ``b`` is left as it is; the depression ``b - a`` is clipped at 0 keeping its
  block means, and ``a = b - depression``, so both keep their block means;
* magnitude, ``keep="components"``: u and v (and their conservation) are kept, the speed is
  their magnitude, whose block mean is then at least the magnitude of the mean vector and
  not the coarse speed (a speed cannot be both the magnitude and conserved in general);
  ``keep="speed"``: the speed is clipped at 0 (keeping its block means), the components keep
  their direction and take its magnitude, so their own block means are no longer conserved.

Rules apply in the order given; a later rule that rewrites a variable wins over an earlier one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError
from .constraints import block_mean, upsample_nearest

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][\w.]*"


def mean_preserving_clip(y: torch.Tensor, lower: float, upper: float, factor: int,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """``y`` clamped into [lower, upper] with each block's (weighted) mean kept where it lies
    within the bounds (clamped to them otherwise). ``lower``/``upper`` may be infinite."""
    lo = None if math.isinf(lower) else float(lower)
    hi = None if math.isinf(upper) else float(upper)
    target = torch.clamp(block_mean(y, factor, weights), lo, hi)
    yc = torch.clamp(y, lo, hi)
    deficit = upsample_nearest(target - block_mean(yc, factor, weights), factor)

    def share(room: torch.Tensor | None) -> torch.Tensor:
        # the deficit spread by room to the bound (uniformly where that bound is infinite); the
        # block's total room is at least |deficit| because its target mean lies within the bounds
        if room is None:
            return deficit
        total = upsample_nearest(block_mean(room, factor, weights), factor)
        return deficit * room / torch.where(total > 0, total, torch.ones_like(total))

    up = share(None if hi is None else hi - yc)
    down = share(None if lo is None else yc - lo)
    out = yc + torch.where(deficit > 0, up, down)
    return torch.clamp(out, lo, hi)  # float rounding only: the bounds hold exactly


def _num(x: float) -> str:
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))  # exact, so a checkpoint's rule reads back the same


def safe_hypot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """|(u, v)| with a finite gradient at the origin (torch.hypot's is NaN there)."""
    zero = (u == 0) & (v == 0)
    h = torch.hypot(torch.where(zero, torch.ones_like(u), u), v)
    return torch.where(zero, torch.zeros_like(h), h)


@dataclass(frozen=True)
class Bounds:
    """``lower <= var <= upper`` (either bound may be infinite). Each rule's ``apply`` takes the
    output as a list of (B, 1, H, W) channels and replaces those it rewrites."""

    var: str
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def names(self) -> tuple[str, ...]:
        return (self.var,)

    def __str__(self) -> str:
        if math.isinf(self.upper):
            return f"{self.var}>={_num(self.lower)}"
        if math.isinf(self.lower):
            return f"{self.var}<={_num(self.upper)}"
        return f"{_num(self.lower)}<={self.var}<={_num(self.upper)}"

    def apply(self, y: list, index: dict, factor: int, weights) -> None:
        k = index[self.var]
        y[k] = mean_preserving_clip(y[k], self.lower, self.upper, factor, weights)


@dataclass(frozen=True)
class LessEqual:
    """``lesser <= greater`` everywhere (dew point <= temperature); ``lesser`` is rewritten."""

    lesser: str
    greater: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.lesser, self.greater)

    def __str__(self) -> str:
        return f"{self.lesser}<={self.greater}"

    def apply(self, y: list, index: dict, factor: int, weights) -> None:
        a, b = index[self.lesser], index[self.greater]
        depression = mean_preserving_clip(y[b] - y[a], 0.0, math.inf, factor, weights)
        y[a] = y[b] - depression  # b minus a non-negative number: a <= b holds exactly in floats too


@dataclass(frozen=True)
class Magnitude:
    """``speed == hypot(u, v)``; ``keep``: ``"components"`` (speed derived) or ``"speed"``
    (components rescaled to it)."""

    speed: str
    u: str
    v: str
    keep: str = "components"

    def __post_init__(self):
        if self.keep not in ("components", "speed"):
            raise DataError(f"Magnitude keep={self.keep!r}: choose 'components' (speed = hypot(u, v)) or 'speed' "
                            "(u, v rescaled to the speed)")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.speed, self.u, self.v)

    def __str__(self) -> str:
        hypot = f"hypot({self.u},{self.v})"
        return f"{self.speed}={hypot}" if self.keep == "components" else f"{hypot}={self.speed}"

    def apply(self, y: list, index: dict, factor: int, weights) -> None:
        s, u, v = index[self.speed], index[self.u], index[self.v]
        norm = safe_hypot(y[u], y[v])
        if self.keep == "components":
            y[s] = norm
            return
        speed = mean_preserving_clip(y[s], 0.0, math.inf, factor, weights)
        calm = norm == 0  # no direction to keep: blow from the west (+u)
        scale = speed / torch.where(calm, torch.ones_like(norm), norm)
        y[u], y[v] = torch.where(calm, speed, y[u] * scale), torch.where(calm, torch.zeros_like(speed), y[v] * scale)
        y[s] = speed


Rule = Bounds | LessEqual | Magnitude
RULES = (Bounds, LessEqual, Magnitude)
SYNTAX = "'0<=r<=100', 'tp>=0', 'd2m<=t2m', 'ws=hypot(u10,v10)' or 'hypot(u10,v10)=ws'"


def parse_rule(text: str) -> Rule:
    """One rule from its string form (see the module docstring)."""
    s = re.sub(r"\s+", "", str(text))
    num, name = _NUMBER, _NAME
    if m := re.fullmatch(rf"({num})<=({name})<=({num})", s):
        rule: Rule = Bounds(m[2], float(m[1]), float(m[3]))
    elif m := re.fullmatch(rf"({name})>=({num})|({num})<=({name})", s):
        rule = Bounds(m[1] or m[4], float(m[2] or m[3]))
    elif m := re.fullmatch(rf"({name})<=({num})|({num})>=({name})", s):
        rule = Bounds(m[1] or m[4], upper=float(m[2] or m[3]))
    elif m := re.fullmatch(rf"({name})(<=|>=)({name})", s):
        rule = LessEqual(m[1], m[3]) if m[2] == "<=" else LessEqual(m[3], m[1])
    elif m := re.fullmatch(rf"({name})=hypot\(({name}),({name})\)", s):
        rule = Magnitude(m[1], m[2], m[3])
    elif m := re.fullmatch(rf"hypot\(({name}),({name})\)=({name})", s):
        rule = Magnitude(m[3], m[1], m[2], keep="speed")
    else:
        raise DataError(f"consistency rule {text!r} is not understood: write one of {SYNTAX}")
    return rule


def parse_rules(spec, targets: list[str]) -> list[Rule]:
    """The rules of ``spec`` (a rule, a string, or a list of them), checked against ``targets``:
    the one place a consistency specification is read (at fit and when a checkpoint is loaded)."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, (str, *RULES)) else list(spec)
    rules = [item if isinstance(item, RULES) else parse_rule(item) for item in items]
    for rule in rules:
        unknown = [n for n in rule.names if n not in targets]
        if unknown:
            raise DataError(f"consistency rule {str(rule)!r} names {unknown[0]!r}, which is not a target {targets}: "
                            "add it to var= or drop the rule")
        if len(set(rule.names)) < len(rule.names):
            raise DataError(f"consistency rule {str(rule)!r} names one variable twice: name distinct targets")
        if isinstance(rule, Bounds) and not rule.lower < rule.upper:
            raise DataError(f"consistency rule {str(rule)!r} has lower >= upper: give lower < upper")
    return rules


def coarse_breaches(rules: list, coarse: dict) -> list[str]:
    """One line per rule that the coarse fields themselves break, where the rule then wins over
    conservation (module docstring). ``coarse``: {target: array of its conserved coarse field}
    (targets without one are left out). The magnitude rule is not checked: a conserved speed's
    block mean is at least the magnitude of the mean vector, so its coarse fields agree with it."""
    lines = []
    for rule in rules:
        if isinstance(rule, Bounds) and rule.var in coarse:
            values = np.asarray(coarse[rule.var], dtype="float64")
            beyond = np.fmax(values - rule.upper, rule.lower - values)  # > 0 outside the bounds, NaN where missing
            bad = beyond > 0
            extreme = values[bad][np.argmax(beyond[bad])] if bad.any() else 0
        elif isinstance(rule, LessEqual) and rule.lesser in coarse and rule.greater in coarse:
            excess = np.asarray(coarse[rule.lesser], "float64") - np.asarray(coarse[rule.greater], "float64")
            bad = excess > 0
            extreme = excess[bad].max() if bad.any() else 0
        else:
            continue
        n = int(bad.sum())
        if n:
            what = f"up to {extreme:.4g}" if isinstance(rule, Bounds) else f"by up to {extreme:.4g}"
            lines.append(f"consistency rule {str(rule)!r}: {n} of {bad.size} coarse input cells break it ({what}); "
                         "there the rule wins and those cells' means are clamped, not conserved")
    return lines


class Consistency(torch.nn.Module):
    """The rules as a layer on a (B, K, H, W) physical output whose channels are ``targets``."""

    def __init__(self, rules, targets: list[str], factor: int):
        super().__init__()
        self.rules = parse_rules(rules, list(targets))
        self.index = {t: k for k, t in enumerate(targets)}
        self.factor = int(factor)

    def specs(self) -> list[str]:
        """The rules in their string form (what a checkpoint records)."""
        return [str(r) for r in self.rules]

    def forward(self, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if not self.rules:
            return y
        channels = list(y.split(1, dim=1))  # (B, 1, H, W) each; a rule replaces the ones it rewrites
        for rule in self.rules:
            rule.apply(channels, self.index, self.factor, weights)
        return torch.cat(channels, dim=1)

    def extra_repr(self) -> str:
        return ", ".join(self.specs())
