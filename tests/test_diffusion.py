"""Diffusion downscaling: scheduler math, training/sampling through the public API, ensembles,
checkpoints with another scheduler, per-member conservation, seamless patch blending."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.families.diffusion.predict import conserve
from xdownscale.models import model_info
from xdownscale.models.diffusion import (
    DDIMScheduler,
    DDPMScheduler,
    NoiseSchedule,
    UNetDenoiser,
    make_sampler,
)
from xdownscale.models.diffusion.network import blend_window, tile_starts
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(base_channels=8, channel_mults=(1, 2), patch=16, epochs=2, batch_size=8, samples_per_epoch=32,
            timesteps=100, sample_steps=4, progress=False, seed=0)


# ------------------------------------------------------------------ scheduler math
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_is_a_valid_noising_process(kind):
    s = NoiseSchedule(kind, 1000)
    a = s.alphas_cumprod
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert (a[1:] < a[:-1]).all() and a[0] > 0.99 and a[-1] < 0.01
    x0, noise = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    xt = s.q_sample(x0, t, noise)
    for pred in ("epsilon", "v"):  # the network target converts back to (x0, eps) exactly
        x0_back, eps_back = s.split(pred, s.target(pred, x0, t, noise), xt, t)
        torch.testing.assert_close(x0_back, x0)
        torch.testing.assert_close(eps_back, noise)


def test_ddpm_posterior_matches_ho_et_al_algorithm_2():
    s = NoiseSchedule("linear", 1000)
    x0, eps = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    for t in (1, 50, 999):
        xt = s.q_sample(x0, t, eps)
        mean, var = s.posterior(x0, xt, t, t - 1)
        beta, abar = s.betas[t], s.alphas_cumprod[t]
        ho = (xt - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()
        torch.testing.assert_close(mean, ho)
        torch.testing.assert_close(var.reshape(-1)[0], beta * (1 - s.alphas_cumprod[t - 1]) / (1 - abar))


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_step_counts_and_order(steps):
    sched = NoiseSchedule("cosine", 50)
    for sampler in (DDIMScheduler(sched, steps), DDPMScheduler(sched, steps)):
        ts = sampler.timesteps
        assert len(ts) == steps == sampler.steps and int(ts[0]) == 49
        assert (ts[1:] < ts[:-1]).all() and (steps == 1 or int(ts[-1]) == 0)
    with pytest.raises(ValueError, match="steps must be between 1"):
        DDIMScheduler(sched, 51)
    with pytest.raises(ValueError, match="Did you mean 'ddim'"):
        make_sampler("dim", sched)


@pytest.mark.parametrize("name,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", None)])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_an_oracle_denoiser_recovers_the_clean_field(name, eta, prediction):
    """With the exact noise/velocity, every sampler lands on x0 in any number of steps."""
    s = NoiseSchedule("linear", 200)
    x0 = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    sampler = make_sampler(name, s, 5, prediction, eta=eta or 0.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    for i, t in enumerate(sampler.timesteps):
        a = s.abar(t, x)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        out = eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
        x = sampler.step(out, i, x, gen)
    torch.testing.assert_close(x, x0)


@pytest.mark.parametrize("name,steps", [("ddpm", 1000), ("ddim", 200)])
def test_samplers_reproduce_a_gaussian_data_distribution(name, steps):
    """Data N(0, s^2) has the exact denoiser E[eps | x_t] = sqrt(1-a) x_t / (a s^2 + 1 - a).
    Both samplers under-disperse with few steps (each step's Var(x_s) <= the true one by
    Cauchy-Schwarz), so this is checked with many steps; the DDIM error shrinks with steps."""
    sd, s = 0.5, NoiseSchedule("linear", 1000)
    sampler = make_sampler(name, s, steps, "epsilon")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20000, dtype=torch.float64, generator=gen)
    for i, t in enumerate(sampler.timesteps):
        a = s.abar(t, x)
        x = sampler.step((1 - a).sqrt() * x / (a * sd**2 + 1 - a), i, x, gen)
    assert abs(float(x.std()) - sd) < 0.01 and abs(float(x.mean())) < 0.02


def test_ddim_eta0_is_deterministic_and_ddpm_is_not():
    s = NoiseSchedule("cosine", 100)
    x = torch.randn(1, 1, 4, 4)
    out = torch.zeros_like(x)
    ddim = [make_sampler("ddim", s, 5).step(out, 2, x, torch.Generator().manual_seed(k)) for k in (0, 1)]
    ddpm = [make_sampler("ddpm", s, 5).step(out, 2, x, torch.Generator().manual_seed(k)) for k in (0, 1)]
    assert torch.equal(ddim[0], ddim[1]) and not torch.equal(ddpm[0], ddpm[1])


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("kind,steps,i", [("cosine", 10, 3), ("linear", 25, 0), ("cosine", 1000, 500)])
def test_ddim_eta1_step_equals_the_ddpm_ancestral_step(prediction, kind, steps, i):
    """Song et al. (2021), eq. 16: with eta=1, sigma^2 is the DDPM posterior variance and the DDIM mean
    sqrt(a_s) x0 + sqrt(1 - a_s - sigma^2) eps equals the posterior mean, so one DDIM step and one DDPM
    step from the same x_t, network output and noise draw agree to round-off."""
    s = NoiseSchedule(kind, 1000)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 1, 5, 6, dtype=torch.float64, generator=g)
    out = torch.randn(x.shape, dtype=torch.float64, generator=g)  # any network output
    ddim = make_sampler("ddim", s, steps, prediction, eta=1.0)
    ddpm = make_sampler("ddpm", s, steps, prediction)
    a = ddim.step(out, i, x, torch.Generator().manual_seed(3))
    b = ddpm.step(out, i, x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # eta changes the draw: eta=0 is the noise-free mean, eta=0.5 lies between
    a0 = make_sampler("ddim", s, steps, prediction, eta=0.0).step(out, i, x, torch.Generator().manual_seed(3))
    a5 = make_sampler("ddim", s, steps, prediction, eta=0.5).step(out, i, x, torch.Generator().manual_seed(3))
    assert (a - a0).abs().max() > 1e-3 and (a5 - a0).abs().max() > 1e-4 and (a5 - a).abs().max() > 1e-4
    # the same eta and seed give the same draw; another seed another one
    again = make_sampler("ddim", s, steps, prediction, eta=1.0).step(out, i, x, torch.Generator().manual_seed(3))
    other = make_sampler("ddim", s, steps, prediction, eta=1.0).step(out, i, x, torch.Generator().manual_seed(4))
    assert torch.equal(a, again) and (a - other).abs().max() > 1e-3


def test_denoiser_shapes_and_time_dependence():
    net = UNetDenoiser(cond_channels=3, base_channels=8, channel_mults=(1, 2, 2))
    torch.manual_seed(0)
    for p in net.parameters():  # the residual branches start at zero; give them weights
        torch.nn.init.normal_(p, std=0.2)
    x, c = torch.randn(2, 1, 21, 30), torch.randn(2, 3, 21, 30)  # not a multiple of the stride
    a, b = net(x, torch.tensor([1, 1]), c), net(x, torch.tensor([900, 900]), c)
    assert a.shape == (2, 1, 21, 30) and not torch.allclose(a, b)


def test_blend_weights_sum_to_one_and_cover_the_domain():
    assert tile_starts(100, 32, 8) == sorted(set(tile_starts(100, 32, 8)))
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))
    w = blend_window(32, 8, at_start=False, at_end=True)
    assert w[0] < 0.05 and w[-1] == 1 and torch.all(w[8:] == 1)


# ------------------------------------------------------------------ through the public API
@pytest.fixture(scope="module")
def data():
    hr = synthetic_field("t2m", times=10, ny=32, nx=48, seed=3)
    return hr.isel(time=slice(0, 8)), hr.isel(time=slice(8, 10))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, _ = data
    path = tmp_path_factory.mktemp("diff") / "diffusion.pt"
    return xds.fit(train, model="diffusion", factor=4, checkpoint=path, **TINY)


def test_registered_as_a_probabilistic_family():
    info = model_info("diffusion")
    assert info["probabilistic"] and info["trainable"] and info["family"] == "diffusion"


def test_ensemble_has_members_and_cf_metadata(trained, data):
    _, test = data
    lr = test.downscale.coarsen(4)
    out = xds.predict(lr, model=trained, members=3, steps=3, seed=0, like=test)
    assert out.dims == ("member", "time", "lat", "lon") and out.shape == (3, 2, 32, 48)
    assert np.isfinite(out.values).all() and (out.lat.values == test.lat.values).all()
    assert out.attrs["units"] == "K" and out.attrs["standard_name"] == "air_temperature"
    assert "model=diffusion" in out.attrs["history"] and int(out.attrs["xdownscale_members"]) == 3
    assert out.attrs["xdownscale_sampler"] == "ddim steps=3 eta=0"
    assert float(out.std("member").mean()) > 0  # members differ
    scores = xds.evaluate(out, test, member_dim="member")
    assert float(scores.crps) > 0


def test_seed_reproducibility_independent_of_batching(trained, data):
    lr = data[1].downscale.coarsen(4)
    a = xds.predict(lr, model=trained, members=2, steps=3, seed=5)
    b = xds.predict(lr, model=trained, members=2, steps=3, seed=5, batch_size=1)
    c = xds.predict(lr, model=trained, members=2, steps=3, seed=6)
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-4)
    assert not np.allclose(a.values, c.values)


def test_checkpoint_round_trip_with_another_scheduler(trained, data):
    lr = data[1].downscale.coarsen(4)
    loaded = xds.load(trained.checkpoint)
    assert loaded.meta["network"]["schedule"]["timesteps"] == 100
    assert loaded.meta["network"]["sampler"]["name"] == "ddim"
    for opts in ({"scheduler": "ddpm", "steps": 6}, {"scheduler": "ddim", "steps": 2, "eta": 0.5}, {}):
        a = xds.predict(lr, model=trained, members=2, seed=1, **opts)
        b = xds.predict(lr, model=str(trained.checkpoint), members=2, seed=1, **opts)
        np.testing.assert_array_equal(a.values, b.values)
    assert "ddpm steps=6" in xds.predict(lr, model=loaded, scheduler="ddpm", steps=6).attrs["xdownscale_sampler"]


@pytest.mark.parametrize("constraint", ["add", "mult", "softmax"])
def test_every_member_conserves_under_a_hard_constraint(trained, data, constraint):
    lr = data[1].downscale.coarsen(4)
    out = xds.predict(lr, model=trained, members=3, steps=3, seed=2, constraint=constraint)
    for m in range(3):
        assert_conserves(out.isel(member=m), lr, 4, rtol=2e-6)
    assert out.attrs["xdownscale_constraint"] == constraint
    free = xds.predict(lr, model=trained, members=3, steps=3, seed=2)
    with pytest.raises(AssertionError):
        assert_conserves(free.isel(member=0), lr, 4, rtol=2e-6)
    np.testing.assert_allclose(conserve(free, lr, constraint).values, out.values, rtol=1e-5)


def test_a_domain_larger_than_the_training_patch_has_no_seams(trained):
    big = synthetic_field("t2m", times=2, ny=96, nx=128, seed=9)
    lr = big.downscale.coarsen(4)
    # the larger synthetic domain has another grid spacing; what is tested here is the tiling
    out = xds.predict(lr, model=trained, members=2, steps=4, seed=0, tile=32, overlap=8, constraint="add",
                      allow_other_variable=True)
    assert out.shape == (2, 2, 96, 128) and np.isfinite(out.values).all()
    assert_conserves(out.isel(member=1), lr, 4, rtol=2e-6)
    # the residual the sampler added: its x-gradient at the tile borders vs everywhere else
    base = xds.predict(lr, model="bicubic", factor=4)
    resid = (out - base.values).values
    grad = np.abs(np.diff(resid, axis=-1)).mean(axis=(0, 1, 2))  # per column pair
    borders = set()
    for x0 in tile_starts(128, 32, 8):
        borders |= {x0 - 1, x0 + 31}
    borders = sorted(b for b in borders if 0 <= b < 127)
    inside = np.delete(grad, borders)
    assert grad[borders].max() <= 1.5 * np.percentile(inside, 95)
    # tiles walk one shared sample: the tiled draw is the whole-domain draw from the same noise,
    # up to a small fraction of the difference between two draws
    whole = xds.predict(lr, model=trained, members=2, steps=4, seed=0, tile=128, constraint="add",
                        allow_other_variable=True)
    other = xds.predict(lr, model=trained, members=2, steps=4, seed=1, tile=128, constraint="add",
                        allow_other_variable=True)
    assert float(abs(out - whole).mean()) < 0.2 * float(abs(other - whole).mean())


def test_residual_mode_over_a_cnn_base(data, tmp_path):
    train, test = data
    cnn = xds.fit(train, model="cnn", factor=4, constraint="add", epochs=1, width=8, n_blocks=1, patch_size=16,
                  batch_size=8, samples_per_epoch=16, progress=False, checkpoint=tmp_path / "cnn.pt")
    opts = {k: v for k, v in TINY.items() if k != "epochs"}
    diff = xds.fit(train, model="diffusion", factor=4, base=cnn, epochs=1, checkpoint=tmp_path / "d.pt", **opts)
    assert diff.meta["network"]["base_network"]["model"] == "cnn"
    lr = test.downscale.coarsen(4)
    a = xds.predict(lr, model=diff, members=2, steps=2, seed=0)
    b = xds.predict(lr, model=tmp_path / "d.pt", members=2, steps=2, seed=0)
    np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(DataError, match="x2 but the diffusion model is trained for x4"):
        cnn2 = xds.fit(train, model="cnn", factor=2, epochs=1, width=8, n_blocks=1, patch_size=16, batch_size=8,
                       samples_per_epoch=8, progress=False, checkpoint=tmp_path / "cnn2.pt")
        xds.fit(train, model="diffusion", factor=4, base=cnn2, epochs=1, checkpoint=tmp_path / "e.pt", **opts)


def test_covariates_condition_on_the_fine_grid(tmp_path):
    hr = synthetic_field("t2m", times=6, ny=32, nx=48, seed=4)
    orog = (hr.isel(time=0, drop=True) * 0 + np.linspace(0, 500, 48)).rename("orog")
    m = xds.fit(hr, model="diffusion", factor=4, covariates=orog, checkpoint=tmp_path / "c.pt",
                **{**TINY, "epochs": 1})
    assert m.meta["network"]["n_covariates"] == 1 and m.meta["covariates"] == ["orog"]
    lr = hr.isel(time=[5]).downscale.coarsen(4)
    assert xds.predict(lr, model=m, covariates=orog, steps=2).shape == (1, 1, 32, 48)
    with pytest.raises(DataError, match="covariates"):
        xds.predict(lr, model=m, steps=2)


def test_bad_options_are_named(trained, data):
    train, test = data
    lr = test.downscale.coarsen(4)
    with pytest.raises(DataError, match="'member'.*Did you mean 'members'"):
        xds.predict(lr, model=trained, member=3)
    with pytest.raises(DataError, match="members must be >= 1"):
        xds.predict(lr, model=trained, members=0)
    with pytest.raises(DataError, match="'base_chanels'.*Did you mean 'base_channels'"):
        xds.fit(train, model="diffusion", factor=4, base_chanels=8)
    with pytest.raises(DataError, match="hard constraint"):
        xds.fit(train, model="diffusion", factor=4, constraint="soft")
    with pytest.raises(ValueError, match="unknown scheduler"):
        xds.predict(lr, model=trained, scheduler="euler")


def test_training_is_bounded_by_updates_and_resumable(data, tmp_path):
    train, _ = data
    opts = {**TINY, "epochs": 5}
    m = xds.fit(train, model="diffusion", factor=4, max_updates=3, checkpoint=tmp_path / "u.pt", **opts)
    assert m.meta["training"]["updates"] == 3 and m.meta["training"]["stopped_by_time"]
    # the shared recipe: max_updates wins over epochs, in rounds of ceil(3 / 20) = 1 update
    assert [h["updates"] for h in m.history] == [1, 2, 3]
    r = xds.fit(train, model="diffusion", factor=4, resume=tmp_path / "u.pt", max_updates=6,
                checkpoint=tmp_path / "u.pt", **opts)
    assert r.meta["training"]["updates"] == 6 and [h["updates"] for h in r.history] == [1, 2, 3, 4, 5, 6]


class _Budget(Exception):
    pass


@pytest.mark.parametrize("given, expected", [({}, (None, 300)), ({"epochs": 2}, (2, None))])
def test_diffusion_trains_on_300_updates_unless_a_budget_is_given(data, tmp_path, monkeypatch, given, expected):
    from xdownscale.families.diffusion import fit as diffusion_fit

    def stop(net, train_ds, val_ds, cfg, *args):
        raise _Budget((cfg.epochs, cfg.max_updates))

    monkeypatch.setattr(diffusion_fit, "_train", stop)
    opts = {k: v for k, v in TINY.items() if k != "epochs"}
    with pytest.raises(_Budget) as budget:
        xds.fit(data[0], model="diffusion", factor=4, checkpoint=tmp_path / "d.pt", **opts, **given)
    assert budget.value.args[0] == expected


def test_diffusion_early_stopping_waits_for_half_its_budget(data, tmp_path, monkeypatch):
    from xdownscale.families.diffusion import fit as diffusion_fit

    scores = iter(range(1, 100))  # the validation loss never improves after the first round
    monkeypatch.setattr(diffusion_fit, "_val_loss", lambda *a, **k: float(next(scores)))
    m = xds.fit(data[0], model="diffusion", factor=4, checkpoint=tmp_path / "d.pt", patience=1,
                **{**TINY, "epochs": 6})
    assert len(m.history) == 3  # patience alone stops after round 2
