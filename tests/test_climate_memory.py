"""The climate suite on Dask input never holds the whole input at once (issue 16: larger than memory)."""
from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from dask.callbacks import Callback

import xdownscale as xds
from xdownscale.metrics import common, passes


class HeldBytes(Callback):
    """The most bytes of task results the scheduler held at once, over every compute in the block."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.peak = max(self.peak, sum(getattr(v, "nbytes", 0) for v in state["cache"].values()))


def _lazy_pair(nt=24 * 30, ny=24, nx=32):
    """Hourly fields chunked by day, as files are stored: 4.4 MB per array in 30 chunks."""
    rng = dsa.random.default_rng(3)
    coords = {"time": pd.date_range("2001-01-01", periods=nt, freq="h"),
              "lat": ("lat", np.linspace(50, 58, ny), {"units": "degrees_north"}),
              "lon": ("lon", np.linspace(-6, 2, nx), {"units": "degrees_east"})}
    dims = ("time", "lat", "lon")
    truth = xr.DataArray(280 + rng.normal(0, 3, (nt, ny, nx), chunks=(24, ny, nx)), dims=dims, coords=coords,
                         attrs={"units": "K", "standard_name": "air_temperature"}, name="tas")
    noise = xr.DataArray(rng.normal(0.2, 1, (nt, ny, nx), chunks=(24, ny, nx)), dims=dims, coords=coords)
    return (truth + noise).assign_attrs(truth.attrs), truth


def test_climate_suite_on_dask_holds_a_bounded_part_of_the_input(monkeypatch):
    # small chunks and blocks, so that a 9 MB input is several blocks of many chunks
    monkeypatch.setattr(common, "CHUNK_BYTES", 2**17)
    monkeypatch.setattr(passes, "BLOCK_BYTES", 2**21)
    pred, truth = _lazy_pair()
    size = pred.nbytes + truth.nbytes
    with dask.config.set(scheduler="threads", num_workers=2), HeldBytes() as held:
        lazy = xds.evaluate(pred, truth, suite="climate")
    # one graph with both the per-field and the per-cell scores, a lazy data range, or a centred
    # correlation in two passes each hold every chunk of the input (peak >= size)
    assert held.peak < size / 2, f"held {held.peak / 1e6:.1f} MB at once of a {size / 1e6:.1f} MB input"
    eager = xds.evaluate(pred.compute(), truth.compute(), suite="climate")
    assert list(lazy.data_vars) == list(eager.data_vars) and "wasserstein" in lazy and "txx_bias" in lazy
    xr.testing.assert_allclose(lazy, eager, rtol=1e-9)
    for k in lazy.data_vars:
        assert lazy[k].attrs == eager[k].attrs, k
