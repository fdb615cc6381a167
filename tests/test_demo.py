"""``run_demo`` (and ``xdownscale demo``) in a reduced, fast configuration."""
from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):  # before ecCodes is loaded: see xdownscale.cli._import_pyproj_first
    import pyproj  # noqa: F401

import csv

import pytest
import xarray as xr

from xdownscale.cli import main
from xdownscale.demo import PRODUCTS, run_demo
from xdownscale.testing import synthetic_field

FAST = dict(times=8, ny=48, nx=64, epochs=1, width=8, n_blocks=1, patch_size=32, batch_size=8,
            samples_per_epoch=32, progress=False)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


def test_run_demo_writes_all_products(tmp_path, capsys, monkeypatch):
    import xdownscale.plot

    titles = []
    compare = xdownscale.plot.compare

    def recording_compare(*args, **kwargs):
        fig = compare(*args, **kwargs)
        titles.append((fig._suptitle.get_text(), args[0]))
        return fig

    monkeypatch.setattr(xdownscale.plot, "compare", recording_compare)
    out = tmp_path / "demo"
    res = run_demo(out, seed=0, **FAST)
    # the map says which time step it shows
    (title, lr), = titles
    assert title.endswith(" at " + str(lr["time"].values[0])[:19]), title
    for key, name in PRODUCTS.items():
        assert res[key] == out / name and (out / name).exists(), name
    assert (out / "prediction.zarr").is_dir()
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with xr.open_dataset(out / "prediction.nc") as ds:
        da = ds["tcwv"]
        assert ds.attrs["Conventions"].startswith("CF-")
        assert da.attrs["units"] == "kg m-2"
        assert da.attrs["standard_name"] == "atmosphere_mass_content_of_water_vapor"
        assert "area: mean" in da.attrs["cell_methods"]
        assert da.attrs["xdownscale_model"] == "cnn" and da.attrs["xdownscale_constraint"] == "softmax"
        assert ds["lat"].attrs["units"] == "degrees_north" and "bounds" in ds["lat"].attrs
        assert da.sizes["time"] == 2 and (da.sizes["lat"], da.sizes["lon"]) == (48, 64)  # last 25% of 8 steps
        assert float(da.min()) >= 0
    with xr.open_zarr(out / "prediction.zarr") as z:
        assert z["tcwv"].shape == (2, 48, 64)

    rows = list(csv.reader((out / "metrics.csv").open()))
    names = [r[0] for r in rows[1:]]
    assert names == ["cnn+softmax", "bicubic"]
    assert any(h.startswith("RMSE") for h in rows[0]) and "negative pixels" in rows[0]
    md = (out / "metrics.md").read_text()
    assert "| cnn+softmax |" in md and "| bicubic |" in md
    assert set(res["metrics"]) == {"cnn+softmax", "bicubic"}
    # the hard constraint conserves the coarse input; bicubic does not
    assert res["metrics"]["cnn+softmax"]["mass violation"] < 1e-3 < res["metrics"]["bicubic"]["mass violation"]
    printed = capsys.readouterr().out
    assert "cnn+softmax" in printed and "bicubic" in printed and str(out / "prediction.nc") in printed


def test_run_demo_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "metrics.csv").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(out, verbose=False, **FAST)
    assert (out / "metrics.csv").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]  # nothing trained or written
    res = run_demo(out, overwrite=True, verbose=False, **FAST)
    assert (out / "metrics.csv").read_text() != "old" and res["metrics_csv"].exists()


def test_run_demo_on_user_file_trims_and_splits(tmp_path, capsys):
    # a non-divisible grid with negative values (degC): trimmed, trained with the 'add' constraint
    t = synthetic_field("t2m", times=6, ny=42, nx=50, seed=5) - 273.15
    t.attrs["units"] = "degC"
    t.to_dataset().to_netcdf(tmp_path / "t2m.nc")
    with pytest.warns(UserWarning) as record:
        res = run_demo(tmp_path / "out", data=tmp_path / "t2m.nc", var="t2m", verbose=False, **FAST)
    messages = " ".join(str(w.message) for w in record)
    assert "trimmed" in messages and "'add'" in messages
    assert set(res["metrics"]) == {"cnn+add", "bicubic"}
    with xr.open_dataset(res["prediction_nc"]) as ds:
        assert ds["t2m"].shape == (2, 40, 48)  # round(0.25 * 6) = 2 test steps, grid trimmed to x4


def test_run_demo_single_time_step_warns(tmp_path):
    one = synthetic_field("tcwv", times=1, ny=32, nx=32, seed=6).isel(time=0)
    with pytest.warns(UserWarning, match="single time step"):
        res = run_demo(tmp_path / "out", data=one.to_dataset(), verbose=False, **FAST)
    assert res["prediction_nc"].exists()


def test_cli_demo_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--data", str(tmp_path / "missing.nc"), "--var", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xdownscale: error:") and "missing.nc" in err[0]
    assert not out.exists()


def test_cli_demo_var_needs_data(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), "--var", "tcwv"]) == 2
    assert "--var goes with --data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
