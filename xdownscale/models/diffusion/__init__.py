"""Diffusion probabilistic downscaling (DPDM, Ling et al. 2024; residual mode as NVIDIA's CorrDiff).

Registers ``diffusion``: a conditional DDPM whose U-Net denoiser
(:mod:`.denoiser`) is trained on random fine patches and sampled with a
scheduler kept apart from it (:mod:`.schedulers`: DDPM ancestral sampling or
DDIM with few steps). ``xds.fit(hr, model="diffusion", factor=4, ...)`` trains
it (:mod:`.training`); ``xds.predict(lr, model=..., members=10, steps=10,
seed=0, scheduler="ddim")`` returns an ensemble with a ``member`` dimension
(:mod:`.sampling`). The hooks are named as strings, so importing this package
stays light and cycle-free.
"""
from .._registry import register_model
from .denoiser import UNetDenoiser
from .schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedule, make_sampler

register_model(
    "diffusion",
    family="diffusion",
    probabilistic=True,
    description="DPDM-style conditional diffusion (U-Net denoiser, DDPM/DDIM samplers, patch blending, ensembles)",
    factors="any integer (2, 3, 4, 8, ...)",
    wrapper="xdownscale.models.diffusion.network:DiffusionNet",
)(UNetDenoiser)

__all__ = ["DDIMScheduler", "DDPMScheduler", "NoiseSchedule", "UNetDenoiser", "make_sampler"]
