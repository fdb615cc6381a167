"""Resumable products and resumable training: kill, rerun, and get what an uninterrupted run gives."""
import os
import signal
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
import xdownscale.engine.setup
from xdownscale.downscaler import Downscaler
from xdownscale.engine.checkpoint import read_checkpoint
from xdownscale.io.resumable import partial_path, progress_path, store_status
from xdownscale.models import DownscalingNet
from xdownscale.prediction import baseline
from xdownscale.testing import synthetic_field

TINY = dict(batch_size=8, patch_size=32, width=8, n_blocks=1, progress=False)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def untrained_checkpoint(path, width=24, n_blocks=2):
    """A seeded, untrained CNN checkpoint: as costly to run as a trained one, made in milliseconds."""
    torch.manual_seed(0)
    meta = baseline("bicubic", 4).meta
    network = dict(meta["network"], model="cnn", constraint="softmax", skip="bicubic", mean=20.0, std=5.0,
                   width=width, n_blocks=n_blocks)
    meta = dict(meta, network=network, variable="tcwv", attrs={"units": "kg m-2"},
                normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
    return Downscaler(DownscalingNet(**network), meta).save(path)


def test_resumable_write_equals_plain_write_and_is_marked_complete(tmp_path):
    sr = synthetic_field("tcwv", times=3, ny=48, nx=64, seed=0).chunk({"time": 1, "lat": 16, "lon": 32})
    xds.write(sr, tmp_path / "plain.zarr")
    assert xds.write(sr, tmp_path / "r.zarr", resume=True) == tmp_path / "r.zarr"
    a, b = xr.open_zarr(tmp_path / "r.zarr"), xr.open_zarr(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(a["tcwv"].values, b["tcwv"].values)
    assert a.attrs["xdownscale_complete"] is True
    assert store_status(tmp_path / "r.zarr") == {"complete": True, "partial": None, "regions_done": 0}
    assert not partial_path(tmp_path / "r.zarr").exists() and not progress_path(tmp_path / "r.zarr").exists()
    # a complete product is not recomputed; different data under the same name is refused
    assert xds.write(sr, tmp_path / "r.zarr", resume=True) == tmp_path / "r.zarr"
    with pytest.raises(FileExistsError, match="already exists"):
        xds.write(sr.isel(time=slice(0, 2)), tmp_path / "r.zarr", resume=True)
    with pytest.raises(xds.DataError, match="Zarr"):
        xds.write(sr, tmp_path / "r.nc", resume=True)


def test_regions_along_time_only(tmp_path):
    from xdownscale.io import to_cf_dataset
    from xdownscale.io.resumable import write_resumable

    sr = synthetic_field("tcwv", times=3, ny=48, nx=64, seed=0).chunk({"time": 1, "lat": 16, "lon": 32})
    rep = write_resumable(to_cf_dataset(sr), tmp_path / "t.zarr", overwrite=False, region_dims=("time",))
    assert (rep.regions, rep.computed, rep.reused) == (3, 3, 0)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "t.zarr")["tcwv"].values, sr.values)
    assert xr.open_zarr(tmp_path / "t.zarr")["tcwv"].encoding["chunks"] == (1, 16, 32)
    with pytest.raises(xds.DataError, match="not dimensions"):
        write_resumable(to_cf_dataset(sr), tmp_path / "u.zarr", overwrite=False, region_dims=("hour",))


def test_partial_store_for_other_data_is_refused(tmp_path):
    sr = synthetic_field("tcwv", times=2, ny=32, nx=32, seed=0).chunk({"time": 1})
    out = tmp_path / "p.zarr"
    from xdownscale.io import to_cf_dataset
    from xdownscale.io.resumable import _fingerprint, _initialise

    _initialise(to_cf_dataset(sr), partial_path(out), _fingerprint(to_cf_dataset(sr)))
    status = store_status(out)
    assert status["complete"] is False and status["partial"] == partial_path(out)
    with pytest.raises(xds.DataError, match="different data"):
        xds.write(sr.chunk({"time": 2}), out, resume=True)


def _interrupted(sr, out, done=2):
    """``sr`` as a Dask array whose chunks of the second time step raise, like a run killed halfway,
    once the ``done`` regions of the first time step are marked finished (so the partial store is
    the same on a slow machine)."""
    import dask.array as dsa

    def block(x, block_id=None):
        if block_id is not None and block_id[0] == 1:
            deadline = time.time() + 60
            while len(list(progress_path(out).glob("*.done"))) < done and time.time() < deadline:
                time.sleep(0.05)
            raise RuntimeError("killed (simulated)")
        return x

    return sr.copy(data=dsa.map_blocks(block, sr.data, dtype=sr.dtype, meta=np.array((), sr.dtype)))


@pytest.mark.parametrize("shift", [{"lon": 1.0}, {"lat": -1.0}, {"time": np.timedelta64(1, "h")}],
                         ids=["lon+1deg", "lat-1deg", "time+1h"])
def test_resume_refuses_a_partial_store_of_a_shifted_grid(tmp_path, shift):
    """Same variable, shape, chunks, dtype and attributes, but coordinates shifted: the unfinished product
    belongs to other data and must not be completed with this one."""
    sr = synthetic_field("tcwv", times=2, ny=16, nx=16, seed=0).chunk({"time": 1, "lat": 8})
    out = tmp_path / "p.zarr"
    with dask.config.set(scheduler="threads", num_workers=4), pytest.raises(RuntimeError, match="simulated"):
        xds.write(_interrupted(sr, out), out, resume=True)
    assert store_status(out)["regions_done"] == 2 and not out.exists()
    (dim, delta), = shift.items()
    moved = sr.assign_coords({dim: sr[dim] + delta})
    with pytest.raises(xds.DataError, match="different data"):
        xds.write(moved, out, resume=True)
    assert store_status(out)["regions_done"] == 2  # the refused run touched nothing
    # the same data resumes: 2 regions reused, 2 computed, and the product is the uninterrupted one
    from xdownscale.io import to_cf_dataset
    from xdownscale.io.resumable import write_resumable

    rep = write_resumable(to_cf_dataset(sr), out, overwrite=False)
    assert (rep.reused, rep.computed) == (2, 2)
    np.testing.assert_array_equal(xr.open_zarr(out)["tcwv"].values, sr.values)


def _predict_cmd(coarse, ckpt, out, *extra):
    return [sys.executable, "-m", "xdownscale.cli", "predict", str(coarse), "--model", str(ckpt), "--out", str(out),
            "--chunks", "16", "-q", *extra]


def _chunk_key(marker: str) -> str:
    """'time-0-4_lat-64-128_lon-0-64.done' -> '0/1/0': the Zarr chunk a region marker stands for
    (4 time steps, 64x64 fine cells a chunk)."""
    starts = [int(part.split("-")[1]) for part in marker[: -len(".done")].split("_")]
    return "/".join(str(v // size) for v, size in zip(starts, (4, 64, 64)))


@pytest.mark.slow  # spawns processes
def test_sigkill_then_resume_completes_without_recomputing(tmp_path):
    """Kill the CLI with SIGKILL after some regions are done, rerun it: only the missing regions are
    computed (count printed by the CLI, markers untouched), and the product equals an uninterrupted run."""
    ckpt = untrained_checkpoint(tmp_path / "m.pt")
    coarse = synthetic_field("tcwv", times=4, ny=384, nx=384, seed=3).downscale.coarsen(4)
    coarse.to_netcdf(tmp_path / "coarse.nc")
    out = tmp_path / "out.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(_predict_cmd(tmp_path / "coarse.nc", ckpt, out, "--resume"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    markers = progress_path(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.glob("*.done"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run must not leave a product under the final name"
    assert store_status(out)["complete"] is False and partial_path(out).exists()
    done = [p.name for p in markers.glob("*.done")]
    written = {key: (partial_path(out) / "tcwv" / "c" / key).stat().st_mtime_ns for key in map(_chunk_key, done)}
    regions = 6 * 6  # 96x96 coarse cells in tiles of 16 (--chunks), the 4 time steps in one chunk
    assert 3 <= len(done) < regions
    rerun = subprocess.run(_predict_cmd(tmp_path / "coarse.nc", ckpt, out, "--resume"), env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} reused from an earlier run, {regions - len(done)} computed now" in rerun.stdout
    assert out.exists() and not partial_path(out).exists() and not markers.exists()
    # the chunks of regions finished before the kill were not rewritten (the rename keeps mtimes)
    assert {key: (out / "tcwv" / "c" / key).stat().st_mtime_ns for key in written} == written
    # the uninterrupted run, in this process with the CLI's tiling: 16x16 coarse tiles, 4 time steps a chunk
    with xr.open_dataset(tmp_path / "coarse.nc") as src:
        full = xds.predict(src["tcwv"].load().chunk({"time": 4}), model=str(ckpt), chunks=16).values
    a = xr.open_zarr(out)
    np.testing.assert_array_equal(a["tcwv"].values, full)
    assert a.attrs["xdownscale_complete"] is True


def _stop_after(epoch_to_stop):
    """A TrainingSetup.save_epoch that saves, then 'crashes' once epoch ``epoch_to_stop`` is saved."""
    original = xdownscale.engine.setup.TrainingSetup.save_epoch

    def save_then_crash(self, state):
        original(self, state)
        if state["epoch"] == epoch_to_stop:
            raise KeyboardInterrupt("simulated crash")

    return save_then_crash


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    hr = synthetic_field("tcwv", times=8, ny=32, nx=48, seed=1)
    # ema=0.5: the weight average is in use from the second update on, so a resume that lost it
    # would end on other weights
    kw = dict(model="cnn", factor=4, constraint="add", seed=5, epochs=4, patience=10, ema=0.5, **TINY)
    full = xds.fit(hr, checkpoint=tmp_path / "full.pt", **kw)
    with monkeypatch.context() as m:
        m.setattr(xdownscale.engine.setup.TrainingSetup, "save_epoch", _stop_after(1))
        with pytest.raises(KeyboardInterrupt):
            xds.fit(hr, checkpoint=tmp_path / "cut.pt", **kw)
    state = read_checkpoint(tmp_path / "cut.pt")["resume"]
    assert state["epoch"] == 1 and set(state["rng"]) == {"torch", "numpy", "python"}
    resumed = xds.fit(hr, checkpoint=tmp_path / "cut.pt", resume=tmp_path / "cut.pt", **kw)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for (ka, va), (kb, vb) in zip(full.module.state_dict().items(), resumed.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    last_full = read_checkpoint(tmp_path / "full.pt")["resume"]
    last_cut = read_checkpoint(tmp_path / "cut.pt")["resume"]
    for k in last_full["last_state_dict"]:
        assert torch.equal(last_full["last_state_dict"][k], last_cut["last_state_dict"][k]), k
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    assert torch.equal(last_full["rng"]["torch"], last_cut["rng"]["torch"])


def test_cli_refuses_to_read_an_unfinished_product(tmp_path, capsys):
    from xdownscale.cli import main
    from xdownscale.io import to_cf_dataset
    from xdownscale.io.resumable import _fingerprint, _initialise

    sr = to_cf_dataset(synthetic_field("tcwv", times=2, ny=32, nx=32, seed=0).chunk({"time": 1}))
    _initialise(sr, tmp_path / "half.zarr", _fingerprint(sr))
    assert main(["evaluate", str(tmp_path / "half.zarr"), str(tmp_path / "half.zarr")]) == 2
    assert "unfinished resumable product" in capsys.readouterr().err
