"""Distributed inference on a dask.distributed LocalCluster equals single-process inference."""
import numpy as np
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.testing import synthetic_field

distributed = pytest.importorskip("distributed")


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def _cached_models():
    from xdownscale.engine.infer import _CACHE

    return len(_CACHE)


def _torch_threads():
    import torch

    return torch.get_num_threads()


@pytest.mark.slow  # spawns processes
def test_two_worker_cluster_matches_single_process_and_streams_to_zarr(tmp_path):
    hr = synthetic_field("tcwv", times=4, ny=64, nx=64, seed=1)
    m = xds.fit(hr, model="cnn", factor=4, constraint="softmax", epochs=1, batch_size=8, patch_size=32, width=8,
                n_blocks=1, progress=False, checkpoint=tmp_path / "m.pt")
    lr = hr.downscale.coarsen(4).chunk({"time": 1, "lat": 8, "lon": 8})
    local = lr.downscale.predict(model=m).compute(scheduler="sync")
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        sr = lr.downscale.predict(model=m)
        on_cluster = sr.compute()
        xds.write(sr, tmp_path / "d.zarr")
        xds.write(sr, tmp_path / "r.zarr", resume=True)
        cached = client.run(_cached_models)
        threads = client.run(_torch_threads)
    np.testing.assert_allclose(on_cluster.values, local.values, rtol=0, atol=1e-5)
    for name in ("d.zarr", "r.zarr"):
        np.testing.assert_allclose(xr.open_zarr(tmp_path / name)["tcwv"].values, local.values, rtol=0, atol=1e-5)
    # each worker process took part and loaded the model once (cached), torch runs one thread per task slot
    assert sorted(cached.values()) == [1, 1], cached
    assert set(threads.values()) == {1}
