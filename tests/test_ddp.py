"""Data-parallel training (DDP, gloo) on 2 CPU processes equals single-process training."""
import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.engine.checkpoint import read_checkpoint
from xdownscale.engine.trainer import ShardedBatches
from xdownscale.testing import another_model, assert_conserves, synthetic_field, synthetic_pair

KW = dict(model="cnn", factor=4, constraint="softmax", epochs=2, batch_size=8, patch_size=32, width=8, n_blocks=1,
          samples_per_epoch=32, val_samples=16, seed=7, progress=False)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def test_sharded_batches_split_each_global_batch_evenly():
    shards = [list(ShardedBatches(20, 8, rank, 2)) for rank in range(2)]
    assert shards[0] == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17]]
    assert shards[1] == [[4, 5, 6, 7], [12, 13, 14, 15], [18, 19]]
    assert list(ShardedBatches(20, 8)) == [list(range(0, 8)), list(range(8, 16)), [16, 17, 18, 19]]
    # a batch of one: one rank has it, the other skips its empty share (evaluation only)
    assert sorted([list(ShardedBatches(1, 8, r, 2)) for r in range(2)]) == [[], [[0]]]


@pytest.mark.slow  # spawns processes
def test_two_process_ddp_matches_single_process(tmp_path):
    """Same global batch (8 = 2 x 4): same weights and losses as one process, and ranks stay in sync."""
    hr = synthetic_field("tcwv", times=6, ny=32, nx=32, seed=2)
    single = xds.fit(hr, checkpoint=tmp_path / "one.pt", **KW)
    ddp = xds.fit(hr, nproc=2, **KW)  # default checkpoint path in the model store
    for (ka, va), (kb, vb) in zip(single.module.state_dict().items(), ddp.module.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(vb, va, rtol=1e-4, atol=1e-5)
    for a, b in zip(single.history, ddp.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    # the final weights of both ranks were compared tensor by tensor in the calling process
    assert ddp.meta["training"]["nproc"] == 2 and ddp.meta["training"]["ranks_in_sync"] is True
    # rank 0 wrote a loadable checkpoint holding the returned weights
    saved = xds.load(ddp.checkpoint)
    for k, v in ddp.module.state_dict().items():
        assert torch.equal(saved.module.state_dict()[k], v)
    assert read_checkpoint(ddp.checkpoint)["training"]["samples_per_epoch"] == 32
    # ... and registered it in the model store, where predict finds it by name
    lr = hr.downscale.coarsen(4)
    np.testing.assert_array_equal(lr.downscale.predict(model="cnn", factor=4).values,
                                  lr.downscale.predict(model=ddp).values)


@pytest.mark.slow  # spawns processes
def test_two_process_ddp_of_several_targets_from_another_models_fields_matches_single_process(tmp_path):
    """The multi-target path (two targets, each with its own constraint, from the inputs of a
    real pair) trains data-parallel too: the same weights and losses as one process, a loadable
    checkpoint, and a prediction that holds every target and conserves each."""
    fine = synthetic_pair(times=6, ny=32, nx=32)
    lr = another_model(fine, 4)
    kw = dict(KW, var=["t2m", "tp"], constraint={"t2m": "add", "tp": ("softmax", "tp_src")})
    kw.pop("factor")
    single = xds.fit(fine, lr=lr, checkpoint=tmp_path / "one.pt", **kw)
    ddp = xds.fit(fine, lr=lr, nproc=2, checkpoint=tmp_path / "two.pt", **kw)
    assert list(single.module.state_dict()) == list(ddp.module.state_dict())
    for k, v in single.module.state_dict().items():
        torch.testing.assert_close(ddp.module.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    assert [h["val_loss"] for h in ddp.history] == pytest.approx([h["val_loss"] for h in single.history], rel=1e-4)
    assert ddp.meta["training"]["nproc"] == 2 and ddp.meta["training"]["ranks_in_sync"] is True
    assert read_checkpoint(tmp_path / "two.pt")["training"]["samples_per_epoch"] == 32
    sr = xds.predict(lr[ddp.meta["predictors"]], model=xds.load(tmp_path / "two.pt"))
    assert set(sr.data_vars) == {"t2m", "tp"}
    assert_conserves(sr["t2m"], lr["t2m"], 4)
    assert_conserves(sr["tp"], lr["tp_src"], 4)


def test_nproc_errors_name_the_fix(tmp_path):
    hr = synthetic_field("tcwv", times=4, ny=32, nx=32, seed=2)
    with pytest.raises(xds.DataError, match="multiple of 2"):
        xds.fit(hr, checkpoint=tmp_path / "x.pt", nproc=2, **dict(KW, batch_size=7))
    with pytest.raises(xds.DataError, match="positive integer"):
        xds.fit(hr, checkpoint=tmp_path / "x.pt", nproc=0, **KW)


def test_cli_fit_nproc_checks_the_batch_split(tmp_path, capsys):
    from xdownscale.cli import main

    synthetic_field("tcwv", times=4, ny=32, nx=32, seed=2).to_netcdf(tmp_path / "hr.nc")
    status = main(["fit", str(tmp_path / "hr.nc"), "--factor", "4", "--nproc", "2", "--batch-size", "7",
                   "--out", str(tmp_path / "m.pt")])
    assert status == 2
    assert "multiple of 2" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
