"""The shared training recipe: budget in updates or minutes, warm-up + cosine, best weights, gated early stopping."""
import copy
import math
import warnings

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.config import TrainConfig
from xdownscale.engine.setup import prepare
from xdownscale.engine.trainer import lr_factor, masked_loss, train
from xdownscale.models import DownscalingNet
from xdownscale.testing import synthetic_field

SMALL = dict(batch_size=4, patch_size=16, width=8, n_blocks=1, progress=False, patience=100)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def _setup(tmp_path, times=6, **cfg):
    hr = synthetic_field("tcwv", times=times, ny=16, nx=16, seed=1)
    cfg = TrainConfig(**{"batch_size": 4, "patch_size": 16, "progress": False, **cfg})
    setup = prepare(hr, model="cnn", factor=4, constraint="add", cfg=cfg, checkpoint=tmp_path / "m.pt",
                    model_kwargs=dict(width=8, n_blocks=1))
    torch.manual_seed(0)
    net = DownscalingNet(**setup.network)
    train_ds, val_ds = setup.datasets()
    return net, train_ds, val_ds, cfg


def _diverge(net):
    """A training loss that moves away from the truth: the validation loss rises after every round."""
    return lambda pred, x, y, w, c: -masked_loss(pred, y, net.std, "mse")


def test_lr_factor_warms_up_linearly_then_decays_by_cosine_to_one_percent():
    cfg = TrainConfig(warmup=0.1)
    assert lr_factor(0.05, cfg) == pytest.approx(0.5)
    assert lr_factor(0.1, cfg) == pytest.approx(1.0)
    assert lr_factor(0.55, cfg) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the decay
    assert lr_factor(1.0, cfg) == pytest.approx(0.01)
    values = [lr_factor(p / 100, cfg) for p in range(1, 101)]
    assert values[:10] == sorted(values[:10]) and values[9:] == sorted(values[9:], reverse=True)
    assert lr_factor(0.5, TrainConfig(warmup=0.1, lr_schedule="constant")) == 1.0
    assert lr_factor(0.0, TrainConfig(warmup=0.0)) == pytest.approx(1.0)


def test_learning_rate_follows_the_schedule_over_the_update_budget(tmp_path):
    """Each round records the rate of its last update: base x lr_factor(updates / max_updates)."""
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_updates=40, evals=8, warmup=0.25, learning_rate=2e-3)
    out = train(net, train_ds, val_ds, cfg, torch.device("cpu"))
    assert [h["updates"] for h in out["history"]] == [5, 10, 15, 20, 25, 30, 35, 40]
    for h in out["history"]:
        assert h["lr"] == pytest.approx(2e-3 * lr_factor(h["updates"] / 40, cfg))
    assert out["history"][0]["lr"] == pytest.approx(2e-3 * 0.5)  # still warming up after 5 of 10 warm-up updates
    assert out["history"][-1]["lr"] == pytest.approx(2e-5)


def test_update_budget_is_the_same_on_a_small_and_a_large_archive(tmp_path):
    small = xds.fit(synthetic_field("tcwv", times=5, ny=16, nx=16, seed=1), factor=4, max_updates=24,
                    checkpoint=tmp_path / "s.pt", **SMALL)
    large = xds.fit(synthetic_field("tcwv", times=60, ny=16, nx=16, seed=1), factor=4, max_updates=24,
                    checkpoint=tmp_path / "l.pt", **SMALL)
    for m in (small, large):
        assert m.meta["training"]["updates"] == 24
        assert m.history[-1]["updates"] == 24 and len(m.history) == TrainConfig().evals
    # epochs are still accepted: epochs x batches per epoch updates, one validation per epoch
    m = xds.fit(synthetic_field("tcwv", times=10, ny=16, nx=16, seed=1), factor=4, epochs=3,
                samples_per_epoch=12, checkpoint=tmp_path / "e.pt", **SMALL)
    assert [h["updates"] for h in m.history] == [3, 6, 9]


def test_default_budget_counts_updates_not_epochs(tmp_path, monkeypatch):
    import xdownscale.engine.trainer as trainer

    monkeypatch.setattr(trainer, "DEFAULT_UPDATES", 30)
    for times in (3, 40):
        net, train_ds, val_ds, cfg = _setup(tmp_path, times=times, evals=5)
        assert cfg.epochs is None and cfg.max_updates is None and cfg.max_minutes is None
        out = train(net, train_ds, val_ds, cfg, torch.device("cpu"))
        assert out["updates"] == 30 and [h["updates"] for h in out["history"]] == [6, 12, 18, 24, 30]


def test_weights_worse_than_the_start_are_flagged_and_the_start_is_recorded(tmp_path):
    """The starting weights (the skip interpolation) are validated once: a run whose kept weights
    score worse warns, in one line with both losses; a run that learnt does not, and its checkpoint
    records the baseline next to the best loss."""
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_updates=8, evals=2, patience=100, ema=0.0)
    start = _start_loss(net, val_ds, cfg)
    with pytest.warns(UserWarning, match=r"worse on validation than the starting ones, the skip interpolation "
                                         r"\(\S+ against \S+\)"):
        out = train(net, train_ds, val_ds, cfg, torch.device("cpu"), loss_fn=_diverge(net))
    assert out["start_val_loss"] == pytest.approx(start) and out["best_val_loss"] > start
    hr = synthetic_field("tcwv", times=6, ny=16, nx=16, seed=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*worse on validation than the starting ones")
        m = xds.fit(hr, model="cnn", factor=4, constraint="add", max_updates=40, checkpoint=tmp_path / "ok.pt",
                    seed=0, **SMALL)
    record = xds.load(tmp_path / "ok.pt").meta["training"]
    assert record["best_val_loss"] < record["start_val_loss"] == m.meta["training"]["start_val_loss"]


def _start_loss(net, val_ds, cfg) -> float:
    from xdownscale.engine.trainer import evaluate_loss

    return evaluate_loss(net, val_ds, cfg, torch.device("cpu"))


@pytest.mark.parametrize("ema,kept", [(0.0, "last_state_dict"), (0.5, "average_state_dict"),
                                      (0.99, "last_state_dict")])
def test_best_validation_weights_are_restored(tmp_path, ema, kept):
    """The weights validated best are the ones kept: the raw ones without averaging, the moving
    average of the weights with it (never the raw weights of that round), and the raw ones while
    the average holds fewer than 1 / (1 - ema) updates (12 updates here: a 0.99 average would
    still be mostly the initial weights)."""
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_updates=12, evals=4, patience=100, ema=ema)
    states = []
    out = train(net, train_ds, val_ds, cfg, torch.device("cpu"), loss_fn=_diverge(net),
                on_epoch_end=lambda s: states.append(copy.deepcopy(s)))
    vals = [h["val_loss"] for h in out["history"]]
    assert vals == sorted(vals) and vals[0] < vals[-1]  # the weights got worse round after round
    assert out["best_epoch"] == 0 and len(states) == 4
    for k, v in net.state_dict().items():
        assert torch.equal(v, states[0][kept][k]), k
    assert not all(torch.equal(v, states[-1][kept][k]) for k, v in net.state_dict().items())
    if kept == "average_state_dict":  # the average lags the raw weights: keeping those would be another state
        assert not all(torch.equal(v, states[0]["last_state_dict"][k]) for k, v in net.state_dict().items())
    if ema:  # the average's own update count travels with it, for resuming
        assert float(states[0]["average_state_dict"]["__averaged_updates__"]) == out["history"][0]["updates"]
    else:
        assert "average_state_dict" not in states[0]


def test_raw_and_average_are_both_validated_and_the_better_is_kept(tmp_path):
    """While the training still improves, the average lags the raw weights: validating it alone
    (as before) ended short runs at the round it became ready. Each round keeps the better."""
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_updates=40, evals=8, patience=100, ema=0.9,
                                        learning_rate=3e-3)
    states = []
    out = train(net, train_ds, val_ds, cfg, torch.device("cpu"), on_epoch_end=lambda s: states.append(copy.deepcopy(s)))
    ready = [h for h in out["history"] if h["val_average"] is not None]
    assert [h["updates"] for h in ready] == [10, 15, 20, 25, 30, 35, 40]  # 1 / (1 - 0.9) updates averaged
    assert all(h["val_loss"] == min(h["val_raw"], h["val_average"]) for h in ready)
    assert any(h["val_raw"] < h["val_average"] for h in ready)  # else the test cannot tell the rules apart
    best = out["history"][out["best_epoch"]]
    kept = "last_state_dict" if best["val_average"] is None or best["val_raw"] <= best["val_average"] \
        else "average_state_dict"
    for k, v in net.state_dict().items():
        assert torch.equal(v, states[out["best_epoch"]][kept][k]), k


@pytest.mark.parametrize("min_fraction, rounds", [(0.6, 6), (0.0, 2), (1.0, 10)])
def test_early_stopping_cannot_end_a_run_before_min_fraction(tmp_path, min_fraction, rounds):
    """Patience 1 and a validation loss that only rises: stop at the first round past min_fraction."""
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_updates=20, evals=10, patience=1, min_fraction=min_fraction)
    out = train(net, train_ds, val_ds, cfg, torch.device("cpu"), loss_fn=_diverge(net))
    assert len(out["history"]) == rounds
    assert out["updates"] == 2 * rounds


def test_minutes_budget_ends_the_run_and_validates_along_the_way(tmp_path):
    net, train_ds, val_ds, cfg = _setup(tmp_path, max_minutes=0.03, evals=3)
    out = train(net, train_ds, val_ds, cfg, torch.device("cpu"))
    assert out["updates"] > 0 and math.isfinite(out["best_val_loss"])
    assert 1 <= len(out["history"]) <= 3
    assert out["train_seconds"] < 0.03 * 60 + 30  # one update and one validation past the limit at most


def test_resume_continues_the_update_count_and_schedule(tmp_path, monkeypatch):
    import xdownscale.engine.setup as fitting  # TrainingSetup lives with prepare/finish

    hr = synthetic_field("tcwv", times=6, ny=16, nx=16, seed=1)
    full = xds.fit(hr, factor=4, max_updates=20, checkpoint=tmp_path / "f.pt", **SMALL)

    class Killed(Exception):
        pass

    original = fitting.TrainingSetup.save_epoch

    def save_then_die(self, state):
        original(self, state)
        if state["epoch"] == 6:
            raise Killed

    ck = tmp_path / "r.pt"
    monkeypatch.setattr(fitting.TrainingSetup, "save_epoch", save_then_die)
    with pytest.raises(Killed):
        xds.fit(hr, factor=4, max_updates=20, checkpoint=ck, **SMALL)
    monkeypatch.setattr(fitting.TrainingSetup, "save_epoch", original)
    resumed = xds.fit(hr, factor=4, max_updates=20, checkpoint=ck, resume=ck, **SMALL)
    assert [h["updates"] for h in resumed.history] == [h["updates"] for h in full.history]
    assert [h["lr"] for h in resumed.history] == pytest.approx([h["lr"] for h in full.history])
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history], [h["val_loss"] for h in full.history],
                               rtol=1e-5)


def test_training_runs_nhwc_where_faster_and_learns_the_same_weights(tmp_path, monkeypatch):
    """The trainer puts the network and its input batches in channels-last layout (faster oneDNN
    convolutions) unless XDOWNSCALE_CHANNELS_LAST=0; the layout changes the speed, not the model."""
    hr = synthetic_field("tcwv", times=6, ny=32, nx=32, seed=1)
    nets = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("XDOWNSCALE_CHANNELS_LAST", flag)
        m = xds.fit(hr, model="cnn", factor=4, constraint="add", max_updates=6, checkpoint=tmp_path / f"{flag}.pt",
                    seed=0, **SMALL)
        nets[flag] = m.module
    convs = {flag: [p for p in net.parameters() if p.ndim == 4] for flag, net in nets.items()}
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs["1"])
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in convs["0"])
    for a, b in zip(nets["1"].state_dict().values(), nets["0"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
