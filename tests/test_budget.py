"""The memory budget of predict: parsing, planning, unchanged results, and peak RSS in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.engine.budget import ChunkGate, chunk_cost, parse_bytes, plan_memory
from xdownscale.errors import DataError
from xdownscale.testing import synthetic_field

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    from xdownscale.downscaler import Downscaler
    from xdownscale.prediction import baseline

    torch.manual_seed(0)
    meta = baseline("bicubic", 4).meta
    network = dict(meta["network"], model="cnn", constraint="softmax", skip="bicubic", mean=20.0, std=5.0,
                   width=16, n_blocks=2)
    meta = dict(meta, network=network, normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [],
                                                      "covariates": {}})
    net = xds.models.DownscalingNet(**network)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return Downscaler(net, meta)


@pytest.fixture(scope="module")
def lr():
    return synthetic_field("tcwv", times=12, ny=192, nx=160, seed=5).downscale.coarsen(4)


@pytest.mark.parametrize("text, expected", [("2GB", 2 * 10**9), ("500 MB", 500 * 10**6), ("1.5GiB", 3 << 29),
                                            (123456, 123456), ("64mib", 64 << 20), ("1e3", None)])
def test_sizes_parse(text, expected):
    if expected is None:
        with pytest.raises(DataError):
            parse_bytes(text)
    else:
        assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "", "-1GB", 0, -5, True, "2 parsecs", float("nan")])
def test_a_bad_size_is_one_clear_error(bad, model, lr):
    with pytest.raises(DataError, match=r"max_memory=.* is not a memory size: pass bytes .* '2GB'") as err:
        xds.predict(lr, model=model, max_memory=bad)
    assert "\n" not in str(err.value)


def test_a_budget_too_small_for_one_tile_names_the_fix(model, lr):
    with pytest.raises(DataError, match=r"too small for one .* fine tile .* raise max_memory to at least \d+MB"):
        xds.predict(lr, model=model, max_memory="100kB")


def test_the_plan_fits_the_budget_and_shrinks_with_it():
    common = dict(per_cell=300.0, fixed=1 << 20, factor=4, halo=12, in_channels=1, side=256, steps=200,
                  batch_size=16, threads=4)
    plans = [plan_memory(b << 20, **common) for b in (100, 300, 1000, 4000)]
    for plan in plans:
        running = plan.slots * chunk_cost(plan.side, plan.steps, plan.batch, 4, 12, 1, 300.0, 1 << 20)
        waiting = 4 * plan.steps * (plan.side * 4) ** 2 * 4
        assert running + waiting <= plan.budget
        assert 1 <= plan.batch <= 16 and 1 <= plan.slots <= 4 and plan.steps >= plan.batch
    cells = [p.slots * p.batch * p.side ** 2 for p in plans]
    assert cells == sorted(cells) and cells[0] < cells[-1]
    assert plans[0].side < 256 and plans[-1].side == 256


def test_a_gate_runs_its_slots_at_once_and_pickles_as_a_new_gate():
    import pickle
    import threading
    import time

    gate, inside, most, lock = ChunkGate(2), [0], [0], threading.Lock()

    def work(k):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return k

    results = [None] * 6

    def task(k):
        results[k] = gate.run(work, k)

    threads = [threading.Thread(target=task, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2 and results == list(range(6))
    again = pickle.loads(pickle.dumps(gate))
    assert isinstance(again, ChunkGate) and again.slots == 2 and again is not gate


@pytest.mark.parametrize("dask_input", [False, True])
def test_a_tight_budget_does_not_change_the_result(model, lr, dask_input):
    field = lr.chunk({"time": -1, "lat": -1, "lon": -1}) if dask_input else lr
    # the plan holds a chunk per Dask thread: fix their number, or one core fits all of it in 40 MB
    with dask.config.set(num_workers=2):
        loose = xds.predict(field, model=model, max_memory="4GB")
        tight = xds.predict(field, model=model, max_memory="40MB", batch_size=16)
    # smaller tiles or fewer frames per chunk (one chunk in memory is predicted at once: numpy, 1 part)
    assert tight.data.npartitions > getattr(loose.data, "npartitions", 1)
    a, b = loose.values, tight.values
    assert np.isfinite(a).all()
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * float(np.abs(a).max()))


def test_the_cli_takes_max_memory(tmp_path, monkeypatch, capsys, model, lr):
    from xdownscale.cli import main

    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    model.save(tmp_path / "m.pt")
    lr.to_dataset().to_netcdf(tmp_path / "lr.nc")
    rc = main(["predict", str(tmp_path / "lr.nc"), "--model", str(tmp_path / "m.pt"), "--out",
               str(tmp_path / "a.nc"), "--max-memory", "40MB", "-q"])
    assert rc == 0
    out = xr.open_dataset(tmp_path / "a.nc")["tcwv"]
    ref = xds.predict(lr, model=model).values
    np.testing.assert_allclose(out.values, ref, rtol=0, atol=1e-6 * float(np.abs(ref).max()))
    capsys.readouterr()
    rc = main(["predict", str(tmp_path / "lr.nc"), "--model", str(tmp_path / "m.pt"), "--out",
               str(tmp_path / "b.nc"), "--max-memory", "lots"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "--max-memory 'lots' is not a memory size" in err[0], err


def _peak(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "_budget_child.py"), *args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("path, threads", [("cli", "0"), ("dask", "4")])
def test_peak_memory_stays_under_the_budget(tmp_path, path, threads):
    """A cnn (width 64) at x4, 12 frames of 256 x 256 fine cells: with a 300 MB budget the peak RSS
    over the baseline (imports, input, model) stays under it from the CLI, and from the API with
    the whole field as one Dask chunk computed on 4 threads."""
    os.environ["XDOWNSCALE_HOME"] = str(tmp_path)
    run = _peak(path, "12", "64", "300MB", threads)
    assert run["over_baseline_mb"] <= 300, run


@pytest.mark.slow
def test_a_tight_budget_holds_and_a_loose_one_is_not_slower(tmp_path):
    os.environ["XDOWNSCALE_HOME"] = str(tmp_path)
    tight = _peak("api", "12", "64", "150MB")
    loose = _peak("api", "12", "64", "2GB")
    assert tight["over_baseline_mb"] <= 150, tight
    assert loose["over_baseline_mb"] <= 2000, loose
    assert loose["seconds"] <= 1.5 * tight["seconds"] + 5, (tight, loose)
