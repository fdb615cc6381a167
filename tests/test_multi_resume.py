"""``resume=`` on the paths of several targets or predictors, as for one target.

Pinned public API:
    xds.fit(hr_ds, model=..., var=["t2m", "tp"], checkpoint="b.pt")              # saves every round
    xds.fit(hr_ds, model=..., var=["t2m", "tp"], checkpoint="c.pt", resume="b.pt")  # continues it

A run of two rounds and a run stopped after its first round, then resumed for the second, end on
the same weights; a checkpoint of other targets, inputs, constraints, covariates or options is
refused in one line (:func:`xdownscale.engine.multi_setup.read_resume`).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.engine.checkpoint import read_checkpoint
from xdownscale.engine.multi_setup import MultiSetup
from xdownscale.errors import DataError
from xdownscale.testing import another_model, synthetic_pair

F = 4
TRAIN = dict(epochs=2, patience=10, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2, progress=False,
             seed=3, ema=0.5)
OPTIONS = {
    "cnn": dict(width=8, n_blocks=1),
    "convgru": dict(channels=4, residual_blocks=1, window=3),
    "flowconvgru": dict(channels=4, residual_blocks=1, window=3, flow_channels=4, time_factor=2),
    "gan": dict(width=8, n_blocks=1, content_members=2, val_members=2),
    "rnngan": dict(width=8, n_blocks=1, noise_channels=2, window=2, content_members=2, val_members=2),
    "liif": dict(width=4, n_blocks=1, hidden=8, queries=32, lr_patch=4, scales=(2.0, 4.0)),
    "diffusion": dict(base_channels=4, channel_mults=(1,), patch=16, timesteps=10, sample_steps=2),
}
CONSTRAINT = {"t2m": "add", "tp": "softmax"}

pytestmark = pytest.mark.usefixtures("own_store")


class Crash(BaseException):
    """The run 'dies' right after its first round is saved."""


def _crash_after_first_round(original):
    def save_then_crash(self, state):
        original(self, state)
        if state["epoch"] == 0:
            raise Crash

    return save_then_crash


def _recording(original, rounds: list):
    def save_and_record(self, state):
        rounds.append(state["epoch"])
        original(self, state)

    return save_and_record


@pytest.fixture(scope="module")
def fine():
    return synthetic_pair()


def straight_and_resumed(tmp_path, monkeypatch, **kw):
    """Two rounds straight, and one round (then a crash) resumed for the second; both Downscalers."""
    straight = xds.fit(checkpoint=tmp_path / "a.pt", **kw)
    with monkeypatch.context() as m:
        m.setattr(MultiSetup, "save_epoch", _crash_after_first_round(MultiSetup.save_epoch))
        with pytest.raises(Crash):
            xds.fit(checkpoint=tmp_path / "b.pt", **kw)
    assert read_checkpoint(tmp_path / "b.pt")["resume"]["epoch"] == 0
    rounds = []
    with monkeypatch.context() as m:
        m.setattr(MultiSetup, "save_epoch", _recording(MultiSetup.save_epoch, rounds))
        resumed = xds.fit(checkpoint=tmp_path / "c.pt", resume=tmp_path / "b.pt", **kw)
    assert rounds == [1]  # the second round only: the first comes from the checkpoint
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in straight.history] == [0, 1]
    return straight, resumed


def assert_same_weights(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)


def assert_resumes_exactly(tmp_path, monkeypatch, **kw) -> None:
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, **kw)
    assert_same_weights(straight.module.state_dict(), resumed.module.state_dict())
    last = [read_checkpoint(tmp_path / name)["resume"]["last_state_dict"] for name in ("a.pt", "c.pt")]
    assert_same_weights(*last)  # the raw weights too, not only the best ones
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history], [h["val_loss"] for h in straight.history],
                               rtol=1e-5)
    assert resumed.meta["multi_target"]["targets"] == straight.meta["multi_target"]["targets"]


def test_spatial_multi_target_resumes_to_the_same_weights(fine, tmp_path, monkeypatch):
    assert_resumes_exactly(tmp_path, monkeypatch, hr=fine, model="cnn", factor=F, var=["t2m", "tp"],
                           constraint=CONSTRAINT, **TRAIN, **OPTIONS["cnn"])


@pytest.mark.parametrize("model", ["convgru", "flowconvgru"])
def test_temporal_multi_target_resumes_to_the_same_weights(fine, model, tmp_path, monkeypatch):
    assert_resumes_exactly(tmp_path, monkeypatch, hr=fine, model=model, factor=F, var=["t2m", "tp"],
                           constraint=CONSTRAINT, **TRAIN, **OPTIONS[model])


def test_one_target_with_predictors_resumes_to_the_same_weights(fine, tmp_path, monkeypatch):
    coarse = another_model(fine, F)
    assert_resumes_exactly(tmp_path, monkeypatch, lr=coarse, hr=fine, model="convgru", var="tp",
                           predictors=["tp", "q"], constraint="softmax", **TRAIN, **OPTIONS["convgru"])


@pytest.mark.parametrize("model", ["gan", "rnngan"])
def test_adversarial_multi_target_resumes_to_the_same_weights(fine, model, tmp_path, monkeypatch):
    assert_resumes_exactly(tmp_path, monkeypatch, hr=fine, model=model, factor=F, var=["t2m", "tp"],
                           constraint=CONSTRAINT, **TRAIN, **OPTIONS[model])


def test_liif_and_diffusion_multi_target_resume_to_the_same_weights(fine, tmp_path, monkeypatch):
    assert_resumes_exactly(tmp_path / "liif", monkeypatch, hr=fine, model="liif", var=["t2m", "tp"], **TRAIN,
                           **OPTIONS["liif"])
    coarse = another_model(fine, F)  # liif on a real pair: one scale
    assert_resumes_exactly(tmp_path / "pair", monkeypatch, lr=coarse[["t2m", "tp"]], hr=fine, model="liif",
                           var=["t2m", "tp"], **TRAIN, **{k: v for k, v in OPTIONS["liif"].items() if k != "scales"})
    assert_resumes_exactly(tmp_path / "diffusion", monkeypatch, hr=fine, model="diffusion", factor=F,
                           var=["t2m", "tp"], constraint={"t2m": "add"}, **TRAIN, **OPTIONS["diffusion"])


def test_resuming_another_run_is_refused_in_one_line(fine, tmp_path):
    kw = dict(model="cnn", factor=F, **dict(TRAIN, epochs=1), **OPTIONS["cnn"])
    ck = tmp_path / "m.pt"
    xds.fit(fine, var=["t2m", "tp"], constraint=CONSTRAINT, checkpoint=ck, **kw)
    coarse = another_model(fine, F)
    orog = fine["t2m"].isel(time=0, drop=True).rename("orog")
    cases = [
        (dict(hr=fine, var=["tp", "t2m"], constraint=CONSTRAINT),
         r"trained with targets \['t2m', 'tp'\], not \['tp', 't2m'\]; resume with the var="),
        (dict(hr=fine, var=["t2m"], constraint="add"), r"trained with targets \['t2m', 'tp'\], not \['t2m'\]"),
        (dict(lr=coarse, hr=fine, var=["t2m", "tp"], predictors=["t2m", "tp", "q"], constraint=CONSTRAINT),
         r"trained with inputs \['t2m', 'tp'\], not \['t2m', 'tp', 'q'\]"),
        (dict(hr=fine, var=["t2m", "tp"], constraint="add"), r"trained with constraints .*'tp': 'softmax'"),
        (dict(hr=fine, var=["t2m", "tp"], constraint=CONSTRAINT, covariates=orog),
         r"trained with covariates \[\], not \['orog'\]"),
        (dict(hr=fine, var=["t2m", "tp"], constraint=CONSTRAINT, width=16),
         r"trained with width=8, not width=16; resume with the options"),
        (dict(hr=fine["t2m"], constraint="add"),  # one target from a checkpoint of several
         r"trained on the targets \['t2m', 'tp'\] from the inputs \['t2m', 'tp'\], not on 't2m' alone"),
    ]
    for args, message in cases:
        with pytest.raises(DataError, match=message) as err:
            xds.fit(checkpoint=tmp_path / "other.pt", resume=ck, **{**kw, **args})
        assert "\n" not in str(err.value) and str(ck) in str(err.value)
    one = tmp_path / "one.pt"
    xds.fit(fine["t2m"], constraint="add", checkpoint=one, **kw)
    with pytest.raises(DataError, match=r"trained on the one target 't2m', not on the targets \['t2m', 'tp'\]"):
        xds.fit(fine, var=["t2m", "tp"], constraint=CONSTRAINT, resume=one, **kw)
    with pytest.raises(DataError, match=r"holds 'cnn' x4, not 'convgru' x4"):
        xds.fit(fine, model="convgru", factor=F, var=["t2m", "tp"], constraint=CONSTRAINT, resume=ck,
                **dict(TRAIN, epochs=1), **OPTIONS["convgru"])


def test_nproc_on_the_multi_target_path_checks_the_batch_split_and_the_family(fine):
    """Several targets train data-parallel (tests/test_ddp.py); the checks before any process starts
    apply to them too, and the families with loops of their own still refuse nproc."""
    with pytest.raises(DataError, match=r"batch_size=7 does not split over nproc=2 processes"):
        xds.fit(fine, model="cnn", factor=F, var=["t2m", "tp"], nproc=2, **{**TRAIN, "batch_size": 7})
    with pytest.raises(DataError, match=r"^nproc=2: data-parallel training is available for the models trained by "
                                        r"fit's own loop; 'convgru' has its own training"):
        xds.fit(fine, model="convgru", factor=F, var=["t2m", "tp"], nproc=2, **TRAIN)
