"""Noise schedules and samplers for diffusion downscaling, kept apart from the network.

A :class:`NoiseSchedule` fixes the forward process
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` over ``timesteps`` training
steps, with a linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021) beta
schedule. Samplers walk the reverse process on any subsequence of those steps:

* :class:`DDPMScheduler`: ancestral sampling (Ho et al. 2020, Algorithm 2); with
  fewer steps than the schedule it uses the respaced betas
  ``beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}`` and the posterior variance.
* :class:`DDIMScheduler`: Song et al. (2021); ``eta=0`` is deterministic given
  the starting noise, ``eta=1`` matches DDPM's variance.

The network may predict the noise (``"epsilon"``) or the velocity
``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (``"v"``, Salimans & Ho 2022); both
convert to ``(x0, eps)`` here. Every piece has a plain-dict config, stored in
checkpoints, so a model trained once can be sampled with another scheduler and
step count.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
SAMPLERS = ("ddpm", "ddim")


def beta_schedule(kind: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas (float64, length ``timesteps``) of a linear or cosine schedule."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return torch.clamp(1 - abar[1:] / abar[:-1], max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


class NoiseSchedule:
    """The forward (noising) process: betas, cumulative alphas, ``q_sample`` and the DDPM posterior."""

    def __init__(self, kind: str = "cosine", timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if int(timesteps) < 2:
            raise ValueError(f"timesteps must be >= 2, got {timesteps}")
        self.kind, self.timesteps = kind, int(timesteps)
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.betas = beta_schedule(kind, self.timesteps, beta_start, beta_end)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        self._abar_ext = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])  # index t + 1

    def to_config(self) -> dict:
        return {"kind": self.kind, "timesteps": self.timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end}

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        return cls(**config)

    def abar(self, t, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` for integer steps ``t`` (``-1`` means no noise: 1), shaped to broadcast on ``like``."""
        t = torch.as_tensor(t, dtype=torch.long).reshape(-1)
        out = self._abar_ext[(t + 1).cpu()].to(device=like.device, dtype=like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` with the given ``noise``."""
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def velocity(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        a = self.abar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def target(self, prediction: str, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """What a network trained for ``prediction`` should output."""
        check_prediction(prediction)
        return noise if prediction == "epsilon" else self.velocity(x0, t, noise)

    def split(self, prediction: str, output: torch.Tensor, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) implied by a network ``output`` at ``x_t``."""
        a = self.abar(t, x_t)
        if prediction == "epsilon":
            eps = output
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        else:
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * output
            eps = (1 - a).sqrt() * x_t + a.sqrt() * output
        return x0, eps

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t, s) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_s | x_t, x_0)`` for ``s < t`` (``s = -1``: the clean field)."""
        a_t, a_s = self.abar(t, x_t), self.abar(s, x_t)
        alpha = a_t / a_s
        beta = 1 - alpha
        mean = (a_s.sqrt() * beta / (1 - a_t)) * x0 + (alpha.sqrt() * (1 - a_s) / (1 - a_t)) * x_t
        var = beta * (1 - a_s) / (1 - a_t)
        return mean, var


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


class Sampler:
    """Base class: a descending subsequence of training steps and one reverse step at a time."""

    name = "base"

    def __init__(self, schedule: NoiseSchedule, steps: int | None = None, prediction: str = "v",
                 clip: float | None = None):
        check_prediction(prediction)
        steps = schedule.timesteps if steps is None else int(steps)
        if not 1 <= steps <= schedule.timesteps:
            raise ValueError(f"steps must be between 1 and the schedule's {schedule.timesteps}, got {steps}")
        self.schedule, self.steps, self.prediction, self.clip = schedule, steps, prediction, clip
        ts = torch.linspace(schedule.timesteps - 1, 0, steps, dtype=torch.float64).round().long()
        self.timesteps = torch.unique_consecutive(ts)
        self.steps = len(self.timesteps)

    def previous(self, i: int) -> int:
        """The training step reached after sampling step ``i`` (-1 after the last)."""
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def x0_eps(self, output, x_t, t):
        x0, eps = self.schedule.split(self.prediction, output, x_t, t)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
            a = self.schedule.abar(t, x_t)
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return x0, eps

    def step(self, output: torch.Tensor, i: int, x_t: torch.Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError

    def to_config(self) -> dict:
        return {"name": self.name, "steps": self.steps, "prediction": self.prediction, "clip": self.clip}


def _noise_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


class DDPMScheduler(Sampler):
    """Ancestral sampling with the posterior variance (Ho et al. 2020, "fixed small")."""

    name = "ddpm"

    def step(self, output, i, x_t, generator=None):
        t, s = int(self.timesteps[i]), self.previous(i)
        x0, _ = self.x0_eps(output, x_t, t)
        mean, var = self.schedule.posterior(x0, x_t, t, s)
        if s < 0:
            return mean
        return mean + var.sqrt() * _noise_like(x_t, generator)


class DDIMScheduler(Sampler):
    """DDIM (Song et al. 2021): ``eta=0`` deterministic, ``eta=1`` DDPM-like noise."""

    name = "ddim"

    def __init__(self, schedule, steps=None, prediction="v", clip=None, eta: float = 0.0):
        super().__init__(schedule, steps, prediction, clip)
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = float(eta)

    def step(self, output, i, x_t, generator=None):
        t, s = int(self.timesteps[i]), self.previous(i)
        x0, eps = self.x0_eps(output, x_t, t)
        a_t, a_s = self.schedule.abar(t, x_t), self.schedule.abar(s, x_t)
        sigma = self.eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).clamp(min=0).sqrt()
        out = a_s.sqrt() * x0 + (1 - a_s - sigma**2).clamp(min=0).sqrt() * eps
        if self.eta > 0 and s >= 0:
            out = out + sigma * _noise_like(x_t, generator)
        return out

    def to_config(self) -> dict:
        return {**super().to_config(), "eta": self.eta}


_SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def make_sampler(name: str, schedule: NoiseSchedule, steps: int | None = None, prediction: str = "v",
                 clip: float | None = None, eta: float = 0.0) -> Sampler:
    """A sampler by name (``"ddpm"`` or ``"ddim"``); ``eta`` only applies to DDIM."""
    if name not in _SAMPLERS:
        import difflib

        close = difflib.get_close_matches(str(name), SAMPLERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown scheduler {name!r}.{hint} Choose one of {', '.join(SAMPLERS)}.")
    if name == "ddim":
        return DDIMScheduler(schedule, steps, prediction, clip, eta=eta)
    return DDPMScheduler(schedule, steps, prediction, clip)


def field_generator(seed: int, index: int) -> torch.Generator:
    """The sampling generator of field ``index`` under ``seed``: a field's samples do not depend
    on the batch size or on the other fields."""
    state = np.random.SeedSequence((int(seed), int(index))).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
