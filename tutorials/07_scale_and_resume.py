"""Scaling out: data-parallel training, prediction on a dask.distributed cluster, resumable Zarr.

1. train with ``nproc=2`` (PyTorch DDP, gloo on CPU): the same global batch split over two processes;
2. predict on a ``LocalCluster`` (the same code runs on dask-jobqueue / dask-gateway clusters: only the
   ``Client`` changes): each worker loads the model once from its checkpoint and streams chunks into Zarr;
3. write a resumable product (``resume=True``): regions are marked as they finish, so a killed job
   is finished by running the same write again (``xdownscale predict ... --resume`` on the command line).

XDOWNSCALE_TUTORIAL_FAST=1 (used by the tests) trains in one process and uses a threaded cluster.

    python tutorials/07_scale_and_resume.py [OUT_DIR]
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

import xdownscale as xds
from xdownscale.io.resumable import store_status
from xdownscale.testing import synthetic_field

fast = os.environ.get("XDOWNSCALE_TUTORIAL_FAST") == "1"

if __name__ == "__main__":  # spawned training processes and cluster workers re-import this file
    out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xds-tutorial-"))
    out.mkdir(parents=True, exist_ok=True)
    hr = synthetic_field("tcwv", times=8 if fast else 32, ny=64, nx=64 if fast else 128, seed=0)
    train, test = hr.isel(time=slice(0, -2)), hr.isel(time=slice(-2, None))

    # 1. data-parallel training: batch_size is the global batch (8 per process here)
    model = xds.fit(train, model="cnn", factor=4, constraint="softmax", epochs=2 if fast else 10, batch_size=16,
                    patch_size=32, width=8 if fast else 32, n_blocks=1 if fast else 3, samples_per_epoch=64,
                    seed=0, nproc=1 if fast else 2, checkpoint=out / "cnn.pt", progress=not fast)
    print(model, "trained on", model.meta["training"].get("nproc", 1), "process(es)")

    # 2. prediction on a cluster: lazy graph, one model load per worker, chunks streamed to Zarr
    lr = test.downscale.coarsen(4).chunk({"time": 1, "lat": 8, "lon": 16})
    cluster = (LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) if fast else
               LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None))
    with cluster, Client(cluster) as client:
        print(client)
        sr = lr.downscale.predict(model=model)
        xds.write(sr, out / "tcwv_x4.zarr", mode="w")
        # 3. a resumable product: written region by region under .tcwv_x4_resumable.zarr.partial
        xds.write(sr, out / "tcwv_x4_resumable.zarr", resume=True)
    status = store_status(out / "tcwv_x4_resumable.zarr")
    print("resumable product complete:", status["complete"])
    a = xr.open_zarr(out / "tcwv_x4.zarr")["tcwv"].values
    b = xr.open_zarr(out / "tcwv_x4_resumable.zarr")["tcwv"].values
    print("both products equal:", np.array_equal(a, b))
    print("outputs in", out)
