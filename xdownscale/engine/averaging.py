"""An exponential moving average of a network's weights, for the shared trainer.

The trainer validates and keeps the averaged weights rather than the last ones: on a short
archive (17 hourly fields of MeteoNet rain) the raw weights at the validated rounds swing with
the seed from 0.95x to 1.07x bicubic, the averaged ones stay at 0.92-0.95x
(benchmarks/results/skill_wfde5.md). Until ``1 / (1 - decay)`` updates (100 at 0.99) are
averaged, the average still carries much of the random initial weights, so it is applied only
from then on: a short run (a 30-update fit) validates and keeps its raw weights. A warm-up of
the decay instead (``min(decay, (1 + n) / (10 + n))``) gave away most of the gain on longer runs
(MeteoNet tp: 0.988 and 0.987 against 0.947 and 0.916). Non-float buffers (counters) are copied.

Once ready, the average still holds 0.99^100 = 37 % of the initial weights, and can validate
worse than the raw weights for a while. So the trainer validates both and keeps the better.
Validating the average alone ended short runs there: liif with a 300-update budget went from
0.068 to 0.077 at the switch, and early stopping ended it at 165 updates (0.949x bicubic).
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

COUNT = "__averaged_updates__"  # the number of updates averaged, kept with the state for resuming


class WeightAverage:
    """``avg = decay * avg + (1 - decay) * weights`` after every optimizer step (``decay`` 0: off)."""

    def __init__(self, net: nn.Module, decay: float, state: dict | None = None):
        self.decay = float(decay)
        self.state: dict | None = None
        if self.decay > 0:
            source = state if state is not None else net.state_dict()
            self.state = {k: v.detach().clone() for k, v in source.items()}
            self.state.setdefault(COUNT, torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        if self.state is None:
            return
        decay = self.decay
        for k, v in net.state_dict().items():
            avg = self.state[k]
            if v.dtype.is_floating_point:
                avg.mul_(decay).add_(v.detach().to(avg.dtype), alpha=1 - decay)
            else:
                avg.copy_(v)
        self.state[COUNT] += 1

    def weights(self) -> dict:
        """The average, as a state dict of the network."""
        assert self.state is not None
        return {k: v for k, v in self.state.items() if k != COUNT}

    @property
    def ready(self) -> bool:
        """Whether enough updates are averaged for the average to stand for the recent weights."""
        # 1 / (1 - 0.99) is 100.00000000000009 in floats: without the tolerance, update 100 is not enough
        return self.state is not None and float(self.state[COUNT]) >= 1 / (1 - self.decay) - 1e-6

    @contextlib.contextmanager
    def applied(self, net: nn.Module):
        """The averaged weights in ``net`` for the duration (validation, keeping the best), once
        :attr:`ready`; the raw weights before."""
        if not self.ready:
            yield
            return
        live = copy.deepcopy(net.state_dict())
        net.load_state_dict(self.weights())
        try:
            yield
        finally:
            net.load_state_dict(live)
