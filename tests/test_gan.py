"""Stochastic models `gan` and `rnngan`: ensembles, exact conservation per member, seeds, tiles,
checkpoints, resuming, option errors."""
import numpy as np
import pandas as pd
import pytest
import torch

import xdownscale as xds
from xdownscale.errors import DataError
from xdownscale.models.gan import PatchDiscriminator, StochasticNet
from xdownscale.models.rnngan import (
    RecurrentStochasticNet,
    SequenceDiscriminator,
    trailing_windows,
)
from xdownscale.nn.constraints import CONSTRAINTS, HARD_CONSTRAINTS, block_mean
from xdownscale.testing import assert_conserves, synthetic_field

TINY = dict(epochs=1, batch_size=4, patch_size=16, width=8, n_blocks=1, progress=False, samples_per_epoch=8,
            val_samples=4, content_members=2, val_members=2)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def hr():
    return synthetic_field("tcwv", times=6, ny=16, nx=24, seed=1)


@pytest.fixture(scope="module")
def gan_model(hr, tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "gan.pt"
    return xds.fit(hr, model="gan", factor=4, constraint="softmax", checkpoint=path, **TINY)


@pytest.mark.parametrize("constraint", ["add", "softmax", "scadd"])
def test_every_gan_member_conserves_exactly(hr, constraint, tmp_path):
    m = xds.fit(hr, model="gan", factor=4, constraint=constraint, checkpoint=tmp_path / "g.pt", **TINY)
    lr = hr.downscale.coarsen(4)
    ens = xds.predict(lr, model=m, members=3, seed=5)
    assert ens.dims == ("member",) + hr.dims and ens.sizes["member"] == 3
    ens = ens.compute()
    for k in range(3):
        assert_conserves(ens.isel(member=k), lr, 4, rtol=1e-5)
    assert_conserves(xds.ensemble_mean(ens), lr, 4, rtol=1e-5)
    assert float(ens.std("member").max()) > 0  # the noise reaches the output
    if constraint in ("softmax", "scadd"):
        assert float(ens.min()) >= 0


def test_members_are_seeded_reproducible_and_independent_of_tiles(gan_model, hr):
    lr = hr.downscale.coarsen(4)
    a = xds.predict(lr, model=gan_model, members=3, seed=11).compute()
    b = xds.predict(lr, model=gan_model, members=2, seed=11, chunks=2).compute()  # tiles with halos
    np.testing.assert_allclose(b.values, a.isel(member=slice(0, 2)).values, atol=1e-4, rtol=0)
    c = xds.predict(lr, model=gan_model, members=3, seed=12).compute()
    assert float(abs(c - a).max()) > 0
    assert not np.allclose(a.isel(member=0), a.isel(member=1))


def test_gan_trains_with_its_lighter_adversarial_weight_unless_given(gan_model, hr, tmp_path):
    assert gan_model.meta["training"]["adversarial"]["adv_weight"] == pytest.approx(0.01)
    m = xds.fit(hr, model="gan", factor=4, adv_weight=0.2, checkpoint=tmp_path / "g.pt", **TINY)
    assert m.meta["training"]["adversarial"]["adv_weight"] == pytest.approx(0.2)


def test_ensemble_metadata_and_mean(gan_model, hr):
    lr = hr.downscale.coarsen(4)
    ens = lr.downscale.predict(model=gan_model, members=4, seed=3)
    assert ens.attrs["units"] == hr.attrs["units"] and ens.attrs["ensemble_members"] == 4
    assert ens.attrs["ensemble_seed"] == 3 and list(ens["member"].values) == [0, 1, 2, 3]
    mean = xds.ensemble_mean(ens)
    np.testing.assert_allclose(mean.values, ens.mean("member").values, rtol=1e-6)
    assert "member: mean" in mean.attrs["cell_methods"]


def test_checkpoint_round_trip_gives_the_same_members(gan_model, hr):
    lr = hr.downscale.coarsen(4)
    loaded = xds.Downscaler.load(gan_model.checkpoint)
    assert isinstance(loaded.module, StochasticNet) and loaded.module.noise_channels == 8
    a = xds.predict(lr, model=gan_model, members=2, seed=1).values
    b = xds.predict(lr, model=loaded, members=2, seed=1).values
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ema", [0.99, 0.5])  # 0.5: the generator's average is ready after 2 updates
def test_wgan_gp_resume_continues_exactly(hr, tmp_path, ema):
    kw = dict(TINY, mode="wgan-gp", n_critic=2, lr_schedule="constant", constraint="add", factor=4, ema=ema)
    straight = xds.fit(hr, model="gan", checkpoint=tmp_path / "a.pt", **dict(kw, epochs=2))
    xds.fit(hr, model="gan", checkpoint=tmp_path / "b.pt", **kw)
    resumed = xds.fit(hr, model="gan", checkpoint=tmp_path / "c.pt", resume=tmp_path / "b.pt", **dict(kw, epochs=2))
    assert len(resumed.history) == 2
    # the generator's weight average resumes too (it is scored in every round once ready)
    if ema == 0.5:
        assert resumed.history[-1]["val_average"] == pytest.approx(straight.history[-1]["val_average"], rel=1e-5)
    else:  # 4 updates in all: the average is not ready, so only the raw weights are scored
        assert resumed.history[-1]["val_average"] is None
    for (k, va), vb in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k


class _Budget(Exception):
    pass


@pytest.mark.parametrize("given, expected", [({}, (None, 600, None)), ({"epochs": 3}, (3, None, None)),
                                             ({"max_minutes": 2.0}, (None, None, 2.0)),
                                             ({"max_updates": 50}, (None, 50, None))])
def test_gan_trains_on_an_update_budget_of_its_own_unless_one_is_given(hr, tmp_path, monkeypatch, given, expected):
    from xdownscale.families.stochastic import fit as stochastic_fit

    def stop(gen, disc, train_ds, val_ds, cfg, *args, **kwargs):
        raise _Budget((cfg.epochs, cfg.max_updates, cfg.max_minutes))

    monkeypatch.setattr(stochastic_fit, "train_adversarial", stop)
    opts = {k: v for k, v in TINY.items() if k != "epochs"}
    with pytest.raises(_Budget) as budget:
        xds.fit(hr, model="gan", factor=4, checkpoint=tmp_path / "g.pt", **opts, **given)
    assert budget.value.args[0] == expected


def test_rnngan_builds_its_measured_defaults_and_trains_on_300_updates(tmp_path, monkeypatch):
    from xdownscale.families.stochastic import fit as stochastic_fit

    def stop(gen, disc, train_ds, val_ds, cfg, *args, **kwargs):
        raise _Budget(gen, cfg)

    monkeypatch.setattr(stochastic_fit, "train_adversarial", stop)
    hr = synthetic_field("tcwv", times=8, ny=16, nx=16, seed=4)
    opts = {k: v for k, v in TINY.items() if k not in ("epochs", "width", "n_blocks")}
    with pytest.raises(_Budget) as caught:
        xds.fit(hr, model="rnngan", factor=4, checkpoint=tmp_path / "r.pt", **opts)
    gen, cfg = caught.value.args
    assert (cfg.epochs, cfg.max_updates) == (None, 300)
    assert (gen.body.cell.hidden_channels, gen.body.n_blocks, gen.noise_channels, gen.window) == (64, 4, 8, 4)


def test_an_rnngan_checkpoint_without_its_generator_size_loads_as_the_former_default(tmp_path):
    """Checkpoints written before rnngan's defaults were measured recorded no width or blocks."""
    hr = synthetic_field("tcwv", times=8, ny=16, nx=16, seed=4)
    m = xds.fit(hr, model="rnngan", factor=4, checkpoint=tmp_path / "r.pt", noise_channels=4, window=8,
                **dict(TINY, width=32, n_blocks=2, batch_size=2))
    payload = torch.load(tmp_path / "r.pt", weights_only=True)
    for key in ("width", "n_blocks"):
        del payload["record"]["network"][key]
    torch.save(payload, tmp_path / "old.pt")
    lr = hr.downscale.coarsen(4)
    old = xds.predict(lr, model=xds.Downscaler.load(tmp_path / "old.pt"), members=2, seed=0)
    np.testing.assert_array_equal(old.values, xds.predict(lr, model=m, members=2, seed=0).values)


def test_early_stopping_cannot_end_an_adversarial_run_before_half_its_budget(hr, tmp_path, monkeypatch):
    from xdownscale.families.stochastic import adversarial

    scores = iter(range(1, 100))  # validation never improves after the first round
    monkeypatch.setattr(adversarial, "validate", lambda *a, **k: {"val_crps": float(next(scores)), "val_mse": 1.0})
    m = xds.fit(hr, model="gan", factor=4, constraint="add", checkpoint=tmp_path / "g.pt",
                **dict(TINY, epochs=6, patience=1, ema=0))
    assert len(m.history) == 3  # patience alone stops after round 2; min_fraction 0.5 of 6 epochs holds it to 3


def test_the_averaged_generator_is_kept_when_it_validates_better(hr, tmp_path, monkeypatch):
    from xdownscale.families.stochastic import adversarial

    scored = []

    def score(gen, *args, **kwargs):  # raw weights first, then (once ready) the average, each round
        scored.append({k: v.clone() for k, v in gen.state_dict().items()})
        return {"val_crps": 1.0 if len(scored) % 2 else 0.5, "val_mse": 1.0}

    monkeypatch.setattr(adversarial, "validate", score)
    m = xds.fit(hr, model="gan", factor=4, constraint="add", checkpoint=tmp_path / "g.pt",
                **dict(TINY, epochs=2, ema=0.5))  # 2 updates a round: the average is ready in round 1
    assert len(scored) == 4
    assert m.history[0]["val_raw"] == 1.0 and m.history[0]["val_average"] == 0.5
    raw, averaged = scored[0], scored[1]
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, averaged[k]), k


def test_adversarial_validation_draws_fixed_noise_outside_the_training_stream(gan_model):
    from xdownscale.config import TrainConfig
    from xdownscale.families.stochastic.adversarial import AdversarialConfig, validate

    gen, f = gan_model.module, 4
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, gen.data_channels, 4, 4, generator=g), torch.randn(4, 1, 4 * f, 4 * f, generator=g)
    data = torch.utils.data.TensorDataset(x, y, torch.ones(4, 1, 4 * f, 1), x[:, :1] * gen.std + gen.mean)
    cfg, adv = TrainConfig(batch_size=2, seed=5), AdversarialConfig(val_members=3)
    torch.manual_seed(0)
    first = validate(gen, data, cfg, adv, torch.device("cpu"))
    after_one = torch.rand(1)
    torch.manual_seed(0)
    again = validate(gen, data, cfg, adv, torch.device("cpu"))
    assert first == again
    assert torch.equal(torch.rand(1), after_one)  # the training stream continues as if not validated
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_one)
    other = validate(gen, data, TrainConfig(batch_size=2, seed=6), adv, torch.device("cpu"))
    assert other["val_crps"] != first["val_crps"]  # the draws follow the run's seed


def test_gan_option_errors(hr):
    with pytest.raises(DataError, match="adv_weight"):
        xds.fit(hr, model="gan", factor=4, adv_wieght=1.0, **TINY)
    with pytest.raises(DataError, match="mode must be one of"):
        xds.fit(hr, model="gan", factor=4, mode="lsgan", **TINY)
    with pytest.raises(DataError, match="generator body"):
        xds.fit(hr, model="gan", factor=4, body="unet", **TINY)


def test_members_needs_a_stochastic_model(hr, tmp_path):
    m = xds.fit(hr, model="espcn", factor=4, epochs=1, batch_size=4, patch_size=16, width=8, n_blocks=1,
                progress=False, checkpoint=tmp_path / "e.pt")
    with pytest.raises(DataError, match="does not take"):
        xds.predict(hr.downscale.coarsen(4), model=m, members=3)


@pytest.mark.parametrize("shape", [(5, 7), (11, 3)])
def test_generator_and_critic_take_any_size(shape):
    torch.manual_seed(0)
    net = StochasticNet("gan", 4, in_channels=2, noise_channels=3, constraint="add", width=8, n_blocks=1)
    x = torch.randn(2, 2, *shape)
    out = net(x)
    assert out.shape == (2, 1, shape[0] * 4, shape[1] * 4)
    assert torch.allclose(out.view(2, 1, shape[0], 4, shape[1], 4).mean((3, 5)), x[:, :1], atol=1e-5)
    disc = PatchDiscriminator(2, 4, 0.0, 1.0, 1.0, width=8)
    assert disc(out, x, x[:, :1]).ndim == 4
    with pytest.raises(DataError, match="data channels"):
        net(torch.randn(2, 4, *shape))


def test_trailing_windows_repeat_edges_and_never_bridge_gaps():
    t = pd.date_range("2020-01-01", periods=5, freq="h").append(pd.date_range("2020-01-02", periods=3, freq="h"))
    with pytest.warns(UserWarning, match="gap"):
        idx = trailing_windows(t.values, 3)
    assert idx.shape == (8, 3) and (idx[:, -1] == np.arange(8)).all()
    assert idx[0].tolist() == [0, 0, 0] and idx[4].tolist() == [2, 3, 4]
    assert idx[5].tolist() == [5, 5, 5] and idx[6].tolist() == [5, 5, 6]  # no window spans the gap


def test_recurrent_net_runs_longer_sequences_on_larger_domains_and_conserves():
    torch.manual_seed(0)
    net = RecurrentStochasticNet("rnngan", 3, in_channels=1, noise_channels=2, window=3, constraint="mult",
                                 mean=5.0, std=2.0, width=8, n_blocks=1)
    x = torch.randn(2, 7, 1, 6, 9)  # longer than the window, any size
    out = net(x)
    assert out.shape == (2, 7, 1, 18, 27)
    phys = x * 2.0 + 5.0
    np.testing.assert_allclose(out.view(2, 7, 1, 6, 3, 9, 3).mean((4, 6)).detach().numpy(), phys.numpy(), atol=1e-4)
    disc = SequenceDiscriminator(1, 3, 5.0, 2.0, 1.0, width=8)
    assert disc(out, x, phys).shape[:2] == (2, 7)


def test_rnngan_ensemble_conserves_and_matches_across_tiles(tmp_path):
    hr = synthetic_field("tcwv", times=8, ny=16, nx=16, seed=4)
    m = xds.fit(hr, model="rnngan", factor=4, constraint="softmax", window=3, checkpoint=tmp_path / "r.pt",
                **dict(TINY, batch_size=2))
    lr = hr.downscale.coarsen(4)
    ens = xds.predict(lr, model=m, members=2, seed=0).compute()
    assert ens.shape == (2,) + hr.shape
    for k in range(2):
        assert_conserves(ens.isel(member=k), lr, 4, rtol=1e-5)
    assert m.meta["training"]["adversarial"]["adv_weight"] == pytest.approx(0.01)  # rnngan: the light term too
    # tiles: a domain wider than two halos, and stirred weights (the zero-started last layer of a
    # briefly trained generator barely shows its inputs, so equal tiles would prove little)
    loaded = xds.Downscaler.load(tmp_path / "r.pt")
    with torch.no_grad():
        for p in loaded.module.body.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    halo = loaded.module.receptive_radius
    big = synthetic_field("tcwv", times=5, ny=4 * (2 * halo + 8), nx=4 * (2 * halo + 8), seed=5).downscale.coarsen(4)
    kw = dict(model=loaded, members=2, seed=0, allow_other_variable=True)  # another grid spacing: tiling is tested
    whole = xds.predict(big, **kw).compute()
    tiled = xds.predict(big, chunks=halo + 4, **kw)
    assert tiled.data.npartitions > 1
    np.testing.assert_allclose(tiled.compute().values, whole.values, atol=1e-4 * float(abs(whole).max()), rtol=0)
    with pytest.raises(DataError, match="window= applies to recurrent"):
        xds.predict(lr, model=xds.fit(hr, model="gan", factor=4, checkpoint=tmp_path / "g.pt", **TINY), window=4)


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("constraint", CONSTRAINTS)
@pytest.mark.parametrize("model", ["gan", "rnngan"])
def test_wrappers_every_constraint_and_factor(model, constraint, factor):
    """The equivalent, for the stochastic wrappers, of the every-model test in test_constraints.py:
    cos-lat weighted conservation of every sample (frames too), bounds, finite gradients."""
    torch.manual_seed(0)
    kwargs = {"constraint_kwargs": {"lower": 200.0, "upper": 360.0}} if constraint == "scadd" else {}
    cls = StochasticNet if model == "gan" else RecurrentStochasticNet
    net = cls(model, factor, in_channels=2, noise_channels=2, noise_at=1, constraint=constraint, mean=280.0,
              std=10.0, width=8, n_blocks=1, **kwargs)
    shape = (2, 2, 5, 6) if model == "gan" else (2, 3, 2, 5, 6)
    x = torch.randn(*shape)
    lat = np.deg2rad(35.0 + np.arange(5 * factor) + 0.5)
    w = torch.from_numpy(np.cos(lat).astype("float32")).view(1, 1, -1, 1).expand(2, 1, -1, 1)
    out = net(x, w)
    assert out.shape == shape[:-3] + (1, 5 * factor, 6 * factor) and torch.isfinite(out).all()
    phys = x[..., :1, :, :] * 10.0 + 280.0
    if constraint in HARD_CONSTRAINTS:
        flat_w = w if model == "gan" else w[:, None].expand(2, 3, 1, -1, 1).flatten(0, 1)
        got = block_mean(out.reshape(-1, 1, *out.shape[-2:]), factor, flat_w)
        torch.testing.assert_close(got, phys.reshape(-1, 1, 5, 6), rtol=1e-5, atol=1e-5 * float(phys.abs().max()))
    if constraint == "softmax":
        assert (out >= 0).all()
    if constraint == "scadd":
        assert out.min() >= 200.0 - 1e-3 and out.max() <= 360.0 + 1e-3
    ((out - 280.0) ** 2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_tight_memory_budget_gives_the_same_members(gan_model, hr):
    lr = hr.downscale.coarsen(4)
    loose = xds.predict(lr, model=gan_model, members=3, seed=2, max_memory="4GB")
    budget, tight = 4 << 30, loose
    while True:  # the smallest power-of-two budget that still fits one tile
        try:
            tight = xds.predict(lr, model=gan_model, members=3, seed=2, max_memory=budget // 2)
        except DataError:
            break
        budget //= 2
    assert tight.data.npartitions > loose.data.npartitions
    np.testing.assert_allclose(tight.values, loose.values, rtol=0, atol=1e-5)
