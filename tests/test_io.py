"""CF metadata and atomic NetCDF/Zarr writing (xdownscale.io)."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xdownscale.errors import DataError
from xdownscale.grid import coarsen
from xdownscale.io import add_bounds, add_cf_attrs, fine_coordinates, to_cf_dataset, write


# ----------------------------------------------------------------------------- helpers
def coarse_field(lat=(60.0, 50.0, 40.0), lon=(45.0, 135.0, 225.0, 315.0), nt=2, dask_chunks=None):
    lat, lon = np.asarray(lat), np.asarray(lon)
    rng = np.random.default_rng(0)
    data = (270 + 10 * rng.random((nt, lat.size, lon.size))).astype("float32")
    da = xr.DataArray(
        data, dims=("time", "lat", "lon"), name="tas",
        coords={"time": pd.date_range("2001-01-01", periods=nt, freq="6h"),
                "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"units": "K", "standard_name": "air_temperature", "long_name": "near-surface air temperature",
               "history": "2020-01-01T00:00:00Z created by a test"},
    )
    return da.chunk(dask_chunks) if dask_chunks else da


def downscaled(factor=4, nt=3, lazy=False):
    """A downscaled-looking field on a fine descending-lat, 0..360-lon grid."""
    lr = coarse_field(lat=np.arange(55.0, 35.0, -5.0), lon=np.arange(2.5, 40.0, 5.0), nt=nt)
    coords = fine_coordinates(lr, factor)
    shape = (nt, lr.sizes["lat"] * factor, lr.sizes["lon"] * factor)
    rng = np.random.default_rng(1)
    vals = (275 + 5 * rng.random(shape)).astype("float32")
    data = dsa.from_array(vals, chunks=(1, shape[1] // 2, shape[2] // 2)) if lazy else vals
    hr = xr.DataArray(data, dims=lr.dims, coords={"time": lr.time, **coords}, name="tas")
    return add_cf_attrs(hr, source=lr, model="espcn", factor=factor, constraint="mass",
                        checkpoint_hash="ab" * 32), lr


def leftovers(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith("."))


# ----------------------------------------------------------------------------- coordinates and bounds
def test_fine_coordinates_descending_latitude_and_0_360_longitude():
    lr = coarse_field(lat=(60.0, 50.0, 40.0), lon=(45.0, 135.0, 225.0, 315.0))
    c = fine_coordinates(lr, 2)
    np.testing.assert_allclose(c["lat"].values, [62.5, 57.5, 52.5, 47.5, 42.5, 37.5])
    np.testing.assert_allclose(c["lon"].values, [22.5, 67.5, 112.5, 157.5, 202.5, 247.5, 292.5, 337.5])
    assert c["lat"].attrs["units"] == "degrees_north" and c["lat"].attrs["axis"] == "Y"
    assert c["lon"].attrs["standard_name"] == "longitude" and c["lon"].attrs["axis"] == "X"
    # -180..180 longitude and an odd factor
    lr2 = coarse_field(lon=(-135.0, -45.0, 45.0, 135.0))
    c2 = fine_coordinates(lr2, 3)
    np.testing.assert_allclose(c2["lon"].values[:4], [-165.0, -135.0, -105.0, -75.0])
    np.testing.assert_allclose(c2["lon"].values[-1], 165.0)


def test_fine_coordinates_coarsen_back_to_the_coarse_grid():
    lr = coarse_field(lat=np.arange(88.75, -90, -2.5), lon=np.arange(1.25, 360, 2.5), nt=1)
    c = fine_coordinates(lr, 5)
    assert c["lat"].min() > -90 and c["lat"].max() < 90
    hr = xr.DataArray(np.ones((1, lr.sizes["lat"] * 5, lr.sizes["lon"] * 5)), dims=lr.dims,
                      coords={"time": lr.time, **c})
    back = coarsen(hr, 5)
    np.testing.assert_allclose(back.lat.values, lr.lat.values, atol=1e-9)
    np.testing.assert_allclose(back.lon.values, lr.lon.values, atol=1e-9)


def test_fine_coordinates_projected_keeps_units():
    x = xr.DataArray(np.arange(4) * 4000.0 + 2000, dims="x", attrs={"units": "m"})
    y = xr.DataArray(np.arange(3) * -4000.0, dims="y", attrs={"units": "m"})
    lr = xr.DataArray(np.zeros((3, 4)), dims=("y", "x"), coords={"y": y, "x": x})
    c = fine_coordinates(lr, 4)
    np.testing.assert_allclose(c["x"].values[:4], [500, 1500, 2500, 3500])
    np.testing.assert_allclose(c["y"].values[:4], [1500, 500, -500, -1500])
    assert c["x"].attrs["units"] == "m" and c["x"].attrs["standard_name"] == "projection_x_coordinate"


def test_add_bounds_descending_latitude_clipped_and_0_360_longitude():
    lr = coarse_field(lat=(80.0, 40.0, 0.0, -40.0, -80.0), lon=(0.0, 90.0, 180.0, 270.0))
    ds = add_bounds(lr.to_dataset())
    assert ds["lat"].attrs["bounds"] == "lat_bnds" and ds["lon"].attrs["bounds"] == "lon_bnds"
    assert ds["lat_bnds"].dims == ("lat", "bnds")
    np.testing.assert_allclose(ds["lat_bnds"].values,
                               [[90, 60], [60, 20], [20, -20], [-20, -60], [-60, -90]])
    np.testing.assert_allclose(ds["lon_bnds"].values, [[-45, 45], [45, 135], [135, 225], [225, 315]])
    # contiguous cells, each containing its centre
    for name in ("lat", "lon"):
        b = ds[f"{name}_bnds"].values
        np.testing.assert_allclose(b[1:, 0], b[:-1, 1])
        c = ds[name].values
        assert np.all((c - b[:, 0]) * (c - b[:, 1]) <= 0)
    assert "lat_bnds" not in lr.coords and "bounds" not in lr.lat.attrs  # input untouched


# ----------------------------------------------------------------------------- attributes
def test_history_line_and_provenance_attrs():
    hr, lr = downscaled()
    lines = hr.attrs["history"].split("\n")
    assert lines[0] == lr.attrs["history"]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ xdownscale \d+\.\d+\.\d+\S*: downscaled x4 with model=espcn "
        r"constraint=mass checkpoint_sha256=(ab){32}", lines[1]), lines[1]
    assert hr.attrs["xdownscale_model"] == "espcn" and hr.attrs["xdownscale_factor"] == 4
    assert hr.attrs["xdownscale_constraint"] == "mass"
    assert hr.attrs["standard_name"] == "air_temperature" and hr.attrs["units"] == "K"
    assert hr.attrs["long_name"] == "near-surface air temperature"
    assert hr.attrs["cell_methods"] == "area: mean"
    assert all(isinstance(v, (str, int, np.integer)) for v in hr.attrs.values())


def test_add_cf_attrs_does_not_invent_a_standard_name():
    lr = coarse_field()
    lr.attrs = {"units": "mm/day", "cell_methods": "time: mean", "grid_mapping": "crs"}
    lr.name = "precip"
    out = add_cf_attrs(lr * 1, source=lr, model="bicubic", factor=2, constraint="none",
                       checkpoint_hash=None, extra={"flag": True, "cfg": {"a": 1}, "gone": None})
    assert "standard_name" not in out.attrs
    assert out.attrs["long_name"] == "precip"
    assert out.attrs["cell_methods"] == "time: mean area: mean"
    assert out.attrs["grid_mapping"] == "crs"
    assert out.attrs["xdownscale_checkpoint_sha256"] == "none"
    assert out.attrs["history"].endswith("checkpoint_sha256=none")
    assert out.attrs["flag"] == 1 and json.loads(out.attrs["cfg"]) == {"a": 1} and "gone" not in out.attrs


def test_to_cf_dataset_needs_a_name_and_sets_globals():
    da = coarse_field().rename(None)
    with pytest.raises(DataError, match="name"):
        to_cf_dataset(da)
    ds = to_cf_dataset(downscaled()[0])
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["source"].startswith("xdownscale ")
    assert "downscaled x4" in ds.attrs["history"] and ds.attrs["title"]
    assert ds["time"].attrs["standard_name"] == "time"


# ----------------------------------------------------------------------------- round trips
def test_netcdf_round_trip(tmp_path):
    hr, _ = downscaled()
    p = write(hr, tmp_path / "out.nc")
    assert p == tmp_path / "out.nc" and p.is_file()
    with xr.open_dataset(p) as ds:
        back = ds["tas"].load()
        assert ds["tas"].encoding["zlib"] and ds["tas"].encoding["complevel"] == 4
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds["lat_bnds"].dims == ("lat", "bnds")
    expected = to_cf_dataset(hr)["tas"]
    xr.testing.assert_identical(back, expected)
    np.testing.assert_array_equal(back.values, hr.values)
    assert back.attrs == {k: v for k, v in hr.attrs.items()}
    assert leftovers(tmp_path) == []


def test_zarr_round_trip_streams_dask_chunks_without_loading(tmp_path, monkeypatch):
    hr, _ = downscaled(lazy=True)
    chunks = hr.chunks
    # any attempt to materialise the dask array as a whole fails the test
    orig_values = xr.DataArray.values

    def guarded(self):
        if isinstance(self.variable._data, dsa.Array):
            raise AssertionError("write() called .values on a dask-backed array")
        return orig_values.fget(self)

    monkeypatch.setattr(xr.DataArray, "values", property(guarded, orig_values.fset))
    for cls in (xr.DataArray, xr.Dataset):
        monkeypatch.setattr(cls, "load", lambda self, **kw: pytest.fail("write() loaded the data"))
    calls = []
    lazy = hr.copy(data=hr.data.map_blocks(lambda b: (calls.append(1) if b.size else None) or b, dtype=hr.dtype))
    with dask.config.set(scheduler="synchronous"):
        p = write(lazy, tmp_path / "out.zarr")
    monkeypatch.undo()
    assert len(calls) == np.prod([len(c) for c in chunks])  # each chunk computed once, streamed
    assert isinstance(lazy.data, dsa.Array)  # the input is still lazy
    with xr.open_zarr(p) as ds:
        assert tuple(ds["tas"].encoding["chunks"]) == tuple(c[0] for c in chunks)
        back = ds["tas"].load()
    xr.testing.assert_identical(back, to_cf_dataset(hr)["tas"].compute())
    assert leftovers(tmp_path) == []


def test_netcdf_writes_dask_input_lazily(tmp_path):
    hr, _ = downscaled(lazy=True)
    calls = []
    lazy = hr.copy(data=hr.data.map_blocks(lambda b: (calls.append(1) if b.size else None) or b, dtype=hr.dtype))
    with dask.config.set(scheduler="synchronous"):
        write(lazy, tmp_path / "out.nc4", progress=True)
    assert len(calls) == lazy.data.npartitions
    with xr.open_dataset(tmp_path / "out.nc4") as ds:
        np.testing.assert_array_equal(ds["tas"].values, hr.values)


# ----------------------------------------------------------------------------- modes and errors
@pytest.mark.parametrize("name", ["out.nc", "out.zarr"])
def test_mode_w_dash_refuses_overwrite_and_w_replaces(tmp_path, name):
    hr, _ = downscaled(nt=1)
    write(hr, tmp_path / name)
    with pytest.raises(FileExistsError, match='mode="w"'):
        write(hr, tmp_path / name)
    write(hr + 1, tmp_path / name, mode="w")
    with xr.open_dataset(tmp_path / name, engine="zarr" if name.endswith("zarr") else None) as ds:
        np.testing.assert_allclose(ds["tas"].values, hr.values + 1)
    assert leftovers(tmp_path) == []


def test_unknown_suffix_and_bad_mode(tmp_path):
    hr, _ = downscaled(nt=1)
    with pytest.raises(DataError, match=r"\.nc.*\.zarr"):
        write(hr, tmp_path / "out.grib")
    with pytest.raises(DataError, match="mode"):
        write(hr, tmp_path / "out.nc", mode="a")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- atomicity
def _partial_then_fail(kind):
    def fake(self, path, *args, **kwargs):
        if kind == "zarr":
            os.makedirs(path)
            with open(os.path.join(path, "zarr.json"), "w") as f:
                f.write("{")
        else:
            with open(path, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n partial")
        raise RuntimeError("disk full (simulated)")

    return fake


@pytest.mark.parametrize("name,method", [("out.nc", "to_netcdf"), ("out.zarr", "to_zarr")])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, name, method):
    hr, _ = downscaled(nt=1)
    monkeypatch.setattr(xr.Dataset, method, _partial_then_fail("zarr" if method == "to_zarr" else "nc"))
    with pytest.raises(RuntimeError, match="simulated"):
        write(hr, tmp_path / name)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name,method", [("out.nc", "to_netcdf"), ("out.zarr", "to_zarr")])
def test_failed_overwrite_keeps_existing_destination(tmp_path, monkeypatch, name, method):
    hr, _ = downscaled(nt=1)
    dest = write(hr, tmp_path / name)
    engine = "zarr" if method == "to_zarr" else None
    with xr.open_dataset(dest, engine=engine) as ds:
        before = ds.load()
    monkeypatch.setattr(xr.Dataset, method, _partial_then_fail("zarr" if method == "to_zarr" else "nc"))
    with pytest.raises(RuntimeError, match="simulated"):
        write(hr + 100, dest, mode="w")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [name]
    with xr.open_dataset(dest, engine=engine) as ds:
        xr.testing.assert_identical(ds.load(), before)


# ----------------------------------------------------------------------------- CF compliance
def projected_downscaled():
    """A downscaled field on a Lambert conformal y/x grid with a grid-mapping variable."""
    crs = xr.DataArray(0, attrs={"grid_mapping_name": "lambert_conformal_conic", "standard_parallel": [30.0, 60.0],
                                 "longitude_of_central_meridian": 10.0, "latitude_of_projection_origin": 45.0})
    lr = xr.DataArray(
        np.random.default_rng(3).random((2, 6, 8)).astype("float32"), dims=("time", "y", "x"), name="pr",
        coords={"time": pd.date_range("2000-01-01", periods=2), "crs": crs,
                "y": ("y", np.arange(6) * 4000.0, {"units": "m"}), "x": ("x", np.arange(8) * 4000.0, {"units": "m"})},
        attrs={"units": "kg m-2 s-1", "standard_name": "precipitation_flux", "grid_mapping": "crs"})
    hr = xr.DataArray(np.zeros((2, 24, 32), "float32"), dims=lr.dims, name="pr",
                      coords={"time": lr.time, **fine_coordinates(lr, 4)})
    return add_cf_attrs(hr, source=lr, model="unet", factor=4, constraint="none", checkpoint_hash=None)


def cf_check(path, tmp_path):
    runner = pytest.importorskip("compliance_checker.runner")
    with warnings.catch_warnings():  # its deprecated ioos_sos plugin warns on import
        warnings.simplefilter("ignore", DeprecationWarning)
        runner.CheckSuite.load_all_available_checkers()
    report = tmp_path / "cf.json"
    runner.ComplianceChecker.run_checker(str(path), ["cf:1.8"], verbose=0, criteria="normal",
                                         output_filename=str(report), output_format="json")
    return json.loads(report.read_text())["cf:1.8"]


def _failed(result, levels):
    return [f"{level} {c['name']}: {c['msgs']}" for level in levels for c in result[level]
            if c["value"][0] < c["value"][1]]


def test_cf_compliance_checker_has_no_high_priority_failures(tmp_path):
    hr, _ = downscaled(factor=4, nt=3)
    assert hr.dims == ("time", "lat", "lon") and hr.dtype == np.float32
    assert hr.attrs["units"] == "K" and hr.attrs["standard_name"] == "air_temperature"
    result = cf_check(write(hr, tmp_path / "tas_downscaled.nc"), tmp_path)
    failed = _failed(result, ["high_priorities"])
    assert result["high_count"] == 0 and not failed, "\n".join(failed)
    # the lower priorities are clean too (bounds without _FillValue, etc.)
    soft = _failed(result, ["medium_priorities", "low_priorities"])
    assert not soft, "\n".join(soft)


def test_cf_compliance_projected_grid_with_grid_mapping(tmp_path):
    p = write(projected_downscaled(), tmp_path / "pr_downscaled.nc")
    result = cf_check(p, tmp_path)
    failed = _failed(result, ["high_priorities", "medium_priorities", "low_priorities"])
    assert result["high_count"] == 0 and not failed, "\n".join(failed)
    with xr.open_dataset(p, decode_coords="all") as ds:
        assert ds["pr"].encoding["grid_mapping"] == "crs" and "crs" in ds.coords
        assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["units"] == "m"


# ----------------------------------------------------------------------------- CF compliance of GRIB-sourced products
def _open_grib(path):
    pytest.importorskip("cfgrib")
    if not path.exists():
        pytest.skip(f"{path} not found")
    return xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})


def _grib_product(da, tmp_path, name="out.nc"):
    """``da`` (a cfgrib field, small window) downscaled x2 with bicubic and written with xds.write."""
    import xdownscale as xds

    sr = xds.predict(da.isel(latitude=slice(0, 24), longitude=slice(0, 24)), model="bicubic", factor=2)
    return xds.write(sr, tmp_path / name)


def _assert_cf_clean(path, tmp_path, levels=("high_priorities", "medium_priorities", "low_priorities")):
    result = cf_check(path, tmp_path)
    failed = _failed(result, levels)
    assert result["high_count"] == 0 and not failed, "\n".join(failed)


@pytest.mark.realdata
@pytest.mark.parametrize("time_as_dim", [False, True], ids=["scalar-time", "time-dim"])
def test_era5_grib_product_passes_the_cf_checker(data_dir, tmp_path, time_as_dim):
    """cfgrib labels ERA5 analysis time ``forecast_reference_time`` (with ``step`` and ``valid_time``), writes
    ``standard_name: unknown`` and 64-bit integers: the product must still have 0 CF-1.8 errors."""
    src = _open_grib(data_dir / "era5-samples" / "era5-single-level-scalar-time.grib")["t2m"]
    assert src["time"].attrs["standard_name"] == "forecast_reference_time"  # the case this test is about
    if time_as_dim:
        src = src.expand_dims("time")
    p = _grib_product(src, tmp_path)
    _assert_cf_clean(p, tmp_path)
    with xr.open_dataset(p) as ds:
        assert ds["t2m"].attrs.get("standard_name") is None  # "unknown" is not a name
        assert ds["t2m"].attrs["units"] == "K"
        # an analysis: the valid time is the reference time, and it is what the product's time holds
        assert ds["time"].values.ravel()[0] == src["valid_time"].values
        if time_as_dim:
            assert ds["time"].attrs["standard_name"] == "time" and ds["t2m"].dims[0] == "time"


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["steps", "run-dim-scalar-step", "runs-x-steps"])
def test_meteonet_grib_product_passes_the_cf_checker(data_dir, tmp_path, case):
    """MeteoNet ARPEGE forecasts: steps along ``step``, the run time scalar or along ``time``."""
    src = _open_grib(data_dir / "meteonet-nw" / "arpege_2m_NW_20180501000000.grib")["t2m"]
    if case == "steps":
        da = src.isel(step=slice(0, 3))
    elif case == "run-dim-scalar-step":  # one run along time, 6 h ahead: time must become the valid time
        da = src.isel(step=6).expand_dims("time")
    else:  # runs x steps: the valid time is 2-D, so `time` is a run axis, not a time axis
        da = src.isel(step=slice(0, 2)).expand_dims("time")
    p = _grib_product(da, tmp_path)
    # runs x steps: the checker also recommends (medium) putting `step` left of the run axis; not an error
    _assert_cf_clean(p, tmp_path, ["high_priorities"] if case == "runs-x-steps" else
                     ["high_priorities", "medium_priorities", "low_priorities"])
    with xr.open_dataset(p) as ds:
        assert ds["t2m"].attrs["units"] == "K"
        if case == "run-dim-scalar-step":
            np.testing.assert_array_equal(ds["time"].values, [src["valid_time"].values[6]])
            np.testing.assert_array_equal(ds["forecast_reference_time"].values, [src["time"].values])
            assert ds["forecast_reference_time"].attrs["standard_name"] == "forecast_reference_time"
            assert ds["time"].values[0] - ds["forecast_reference_time"].values[0] == np.timedelta64(6, "h")
        if case == "runs-x-steps":
            assert "time" not in ds.dims and ds["t2m"].dims[:2] == ("forecast_reference_time", "step")
            np.testing.assert_array_equal(ds["forecast_reference_time"].values, [src["time"].values])


# ----------------------------------------------------------------------------- stale temporaries of killed writes
def _dead_pid() -> int:
    """A process id that no process on this machine has now."""
    pid = 2**22 - 7
    while pid > 1000:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1
    pytest.skip("no free process id found")


@pytest.mark.skipif(os.name == "nt", reason="stale temporaries are only detected on POSIX")
@pytest.mark.parametrize("name", ["out.nc", "out.zarr"])
def test_next_write_removes_stale_temporaries_of_the_same_target_only(tmp_path, name):
    hr, _ = downscaled(nt=1)
    dead, alive = _dead_pid(), os.getpid()
    stale_file = tmp_path / f".{name}.tmp-{dead}-0a1b2c3d"
    stale_file.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 4096)  # a half-written file of a killed write
    stale_dir = tmp_path / f".{name}.tmp-{dead}-deadbeef"  # a half-written Zarr store
    (stale_dir / "tas").mkdir(parents=True)
    (stale_dir / "zarr.json").write_text("{")
    running = tmp_path / f".{name}.tmp-{alive}-12345678"  # a write still going on (here: this process)
    running.write_bytes(b"busy")
    other = tmp_path / f".other.nc.tmp-{dead}-0a1b2c3d"  # another target's leftovers are not ours to judge
    other.write_bytes(b"x")
    write(hr, tmp_path / name)
    assert (tmp_path / name).exists()
    assert leftovers(tmp_path) == sorted([running.name, other.name])


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="kill -9 and stale temporaries are POSIX")
def test_rerun_after_kill_minus_9_leaves_no_temporary(tmp_path):
    """A writer killed mid-write leaves ``.out.nc.tmp-*``; the rerun removes it and writes the product."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent(f"""
        import time, numpy as np, pandas as pd, xarray as xr
        from xdownscale.io import write
        def slow(self, path, *a, **k):
            with open(path, "wb") as f:
                f.write(b"\\x89HDF\\r\\n\\x1a\\n" + b"\\0" * 100000)
            time.sleep(600)
        xr.Dataset.to_netcdf = slow
        da = xr.DataArray(np.zeros((1, 8, 8), "float32"), dims=("time", "lat", "lon"), name="tas",
                          coords={{"time": pd.date_range("2000", periods=1), "lat": np.arange(8.0),
                                  "lon": np.arange(8.0)}})
        write(da, {str(tmp_path / "out.nc")!r})
    """)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 120
        while not leftovers(tmp_path) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert leftovers(tmp_path), "the writer never started its temporary"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert leftovers(tmp_path)[0].startswith(".out.nc.tmp-")
    hr, _ = downscaled(nt=1)
    write(hr, tmp_path / "out.nc")
    assert os.listdir(tmp_path) == ["out.nc"]
