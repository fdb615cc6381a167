"""The ``xdownscale`` command line, run in-process through ``main([...])``."""
from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):  # before ecCodes is loaded: see xdownscale.cli._import_pyproj_first
    import pyproj  # noqa: F401

import csv
import importlib.util
import re

import numpy as np
import pytest
import xarray as xr

import xdownscale as xd
from xdownscale.cli import main
from xdownscale.testing import synthetic_field

TINY = ["--epochs", "1", "--width", "8", "--n-blocks", "1", "--patch-size", "16", "--batch-size", "8", "-q"]


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


@pytest.fixture
def files(tmp_path):
    """hr.nc (6 x 32 x 48 TCWV), its x4 coarsening lr.nc, and a two-variable file."""
    hr = synthetic_field("tcwv", times=6, ny=32, nx=48, seed=3)
    hr.to_dataset().to_netcdf(tmp_path / "hr.nc")
    xd.coarsen(hr, 4).to_dataset().to_netcdf(tmp_path / "lr.nc")
    t2m = synthetic_field("t2m", times=6, ny=32, nx=48, seed=4)
    xr.Dataset({"tcwv": hr, "t2m": t2m}).to_netcdf(tmp_path / "two.nc")
    return tmp_path


def _one_error_line(capsys, *hints):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("xdownscale: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for hint in hints:
        assert hint in errors[0], errors[0]
    return errors[0]


def _listing(path):
    return sorted(p.name for p in path.iterdir())


# -- happy path --------------------------------------------------------------------------------
def test_fit_predict_evaluate_round_trip(files, capsys):
    ckpt = files / "model.pt"
    rc = main(["fit", str(files / "hr.nc"), "--var", "tcwv", "--model", "cnn", "--factor", "4",
               "--constraint", "softmax", "--seed", "1", "--out", str(ckpt), *TINY])
    assert rc == 0, capsys.readouterr().err
    assert ckpt.is_file()
    assert re.search(r"saved cnn x4 .*best validation loss \S+ at epoch \d+ \(the skip interpolation alone: \S+\)",
                     capsys.readouterr().out)

    pred = files / "pred.nc"
    rc = main(["predict", str(files / "lr.nc"), "--model", str(ckpt), "--out", str(pred), "-q"])
    assert rc == 0, capsys.readouterr().err
    with xr.open_dataset(pred) as ds:
        assert ds["tcwv"].shape == (6, 32, 48)
        assert ds["tcwv"].attrs["units"] == "kg m-2"
        assert ds["tcwv"].attrs["xdownscale_model"] == "cnn"
        assert float(ds["tcwv"].min()) >= 0  # softmax constraint

    # the same through the model store: a trainable name finds the latest checkpoint
    zpred = files / "pred.zarr"
    rc = main(["predict", str(files / "lr.nc"), "--model", "cnn", "--var", "tcwv", "--factor", "4",
               "--chunks", "8", "--out", str(zpred), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert zpred.is_dir()

    capsys.readouterr()
    out_csv = files / "metrics.csv"
    rc = main(["evaluate", str(pred), str(files / "hr.nc"), "--lr", str(files / "lr.nc"), "--out", str(out_csv)])
    assert rc == 0
    out = capsys.readouterr().out
    for name in ("rmse", "ssim", "mass_violation"):
        assert name in out
    rows = {r["metric"]: r for r in csv.DictReader(out_csv.open())}
    assert float(rows["mass_violation"]["value"]) < 1e-3  # hard constraint
    assert float(rows["rmse"]["value"]) > 0

    rc = main(["evaluate", str(zpred), str(files / "hr.nc"), "--per-time"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("2020-01-01") == 6 and "rmse" in out


def test_predict_baseline_from_netcdf_and_zarr(files, capsys):
    out = files / "bicubic.nc"
    assert main(["predict", str(files / "lr.nc"), "--model", "bicubic", "--factor", "4", "--out", str(out), "-q"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds["tcwv"].shape == (6, 32, 48)
    # Zarr input works like NetCDF
    xr.open_dataset(files / "lr.nc").to_zarr(files / "lr.zarr", consolidated=False)
    out2 = files / "bicubic2.nc"
    assert main(["predict", str(files / "lr.zarr"), "--model", "bicubic", "--factor", "4", "--out", str(out2),
                 "-q"]) == 0
    np.testing.assert_allclose(xr.open_dataset(out2)["tcwv"].values, xr.open_dataset(out)["tcwv"].values)


def test_models_lists_cnn_and_bicubic(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "cnn" in lines and "bicubic" in lines
    assert "yes" in lines["cnn"] and "powers of two" in lines["cnn"]
    assert "no" in lines["bicubic"] and "baseline" in lines["bicubic"]


@pytest.mark.parametrize("command", [[], ["fit"], ["predict"], ["evaluate"], ["models"], ["demo"]])
def test_help_exits_zero(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: xdownscale" in out
    if command and command[0] != "models":
        assert "example" in out


def test_verbose_logs_to_stderr(files, capsys):
    rc = main(["-v", "predict", str(files / "lr.nc"), "--model", "bicubic", "--factor", "4",
               "--out", str(files / "b.nc"), "-q"])
    assert rc == 0
    assert "xdownscale: writing" in capsys.readouterr().err


# -- bad input: exit 2, one line, the hint, no output file ---------------------------------------
def test_missing_file(files, capsys):
    out = files / "p.nc"
    assert main(["predict", str(files / "nope.nc"), "--model", "bicubic", "--factor", "4", "--out", str(out)]) == 2
    _one_error_line(capsys, "nope.nc", "does not exist")
    assert not out.exists()


def test_unknown_variable_suggests_close_name(files, capsys):
    out = files / "p.nc"
    assert main(["predict", str(files / "lr.nc"), "--var", "tcvw", "--model", "bicubic", "--factor", "4",
                 "--out", str(out)]) == 2
    _one_error_line(capsys, "'tcvw'", "Did you mean 'tcwv'")
    assert not out.exists()
    ckpt = files / "m.pt"
    assert main(["fit", str(files / "two.nc"), "--var", "t2", "--factor", "4", "--out", str(ckpt), *TINY]) == 2
    _one_error_line(capsys, "'t2'", "'t2m'")
    assert not ckpt.exists()


def test_several_variables_need_var(files, capsys):
    ckpt = files / "m.pt"
    assert main(["fit", str(files / "two.nc"), "--factor", "4", "--out", str(ckpt), *TINY]) == 2
    _one_error_line(capsys, "--var", "t2m", "tcwv")
    assert not ckpt.exists()


def test_unknown_model_suggests_close_names(files, capsys):
    out = files / "p.nc"
    assert main(["predict", str(files / "lr.nc"), "--model", "bicubc", "--factor", "4", "--out", str(out)]) == 2
    _one_error_line(capsys, "'bicubc'", "Did you mean 'bicubic'")
    assert not out.exists()
    ckpt = files / "m.pt"
    assert main(["fit", str(files / "hr.nc"), "--model", "cnnn", "--factor", "4", "--out", str(ckpt), *TINY]) == 2
    _one_error_line(capsys, "'cnnn'", "'cnn'")
    assert not ckpt.exists()


def test_factor_that_does_not_divide_mentions_trim(files, capsys):
    hr = xr.open_dataset(files / "hr.nc")["tcwv"].isel(lon=slice(0, 46))
    hr.to_dataset().to_netcdf(files / "odd.nc")
    ckpt = files / "m.pt"
    assert main(["fit", str(files / "odd.nc"), "--factor", "4", "--out", str(ckpt), *TINY]) == 2
    _one_error_line(capsys, "divisible", "--trim")
    assert not ckpt.exists()
    # and --trim fixes it
    assert main(["fit", str(files / "odd.nc"), "--factor", "4", "--trim", "--out", str(ckpt), *TINY]) == 0
    assert ckpt.is_file()


def test_all_nan_input(files, capsys):
    hr = xr.open_dataset(files / "hr.nc")["tcwv"]
    (hr * np.nan).to_dataset().to_netcdf(files / "nan.nc")
    ckpt = files / "m.pt"
    assert main(["fit", str(files / "nan.nc"), "--factor", "4", "--out", str(ckpt), *TINY]) == 2
    _one_error_line(capsys, "NaN everywhere")
    assert not ckpt.exists()
    out = files / "p.nc"
    assert main(["predict", str(files / "nan.nc"), "--model", "bicubic", "--factor", "4", "--out", str(out)]) == 2
    _one_error_line(capsys, "NaN everywhere")
    assert not out.exists()


def test_existing_output_is_not_overwritten(files, capsys):
    out = files / "p.nc"
    out.write_text("keep me")
    assert main(["predict", str(files / "lr.nc"), "--model", "bicubic", "--factor", "4", "--out", str(out)]) == 2
    _one_error_line(capsys, "already exists", "--overwrite")
    assert out.read_text() == "keep me"
    assert main(["predict", str(files / "lr.nc"), "--model", "bicubic", "--factor", "4", "--out", str(out),
                 "--overwrite", "-q"]) == 0
    with xr.open_dataset(out) as ds:
        assert "tcwv" in ds


def test_bad_option_value_is_a_usage_error(files, capsys):
    assert main(["fit", str(files / "hr.nc"), "--factor", "four", "--out", str(files / "m.pt")]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert not (files / "m.pt").exists()


def test_debug_shows_the_traceback(files):
    with pytest.raises(FileNotFoundError):
        main(["predict", str(files / "nope.nc"), "--model", "bicubic", "--factor", "4",
              "--out", str(files / "p.nc"), "--debug"])


@pytest.mark.realdata
def test_predict_and_evaluate_real_grib(data_dir, tmp_path, capsys):
    grib = data_dir / "era5-samples" / "era5-single-level-scalar-time.grib"
    if not grib.exists():
        pytest.skip(f"{grib} not found")
    # only look for cfgrib: importing it here, before the CLI imports pyproj, would load ecCodes' own PROJ
    # first, which crashes the interpreter at exit (see xdownscale.cli._import_pyproj_first)
    if importlib.util.find_spec("cfgrib") is None:
        pytest.skip("cfgrib is not installed")
    out = tmp_path / "t2m_x2.nc"
    assert main(["predict", str(grib), "--model", "bilinear", "--factor", "2", "--out", str(out), "-q"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds["t2m"].shape == (242, 402)
        assert ds["t2m"].attrs["units"] == "K"
    capsys.readouterr()
    assert main(["predict", str(grib), "--var", "t2", "--model", "bilinear", "--factor", "2",
                 "--out", str(tmp_path / "x.nc")]) == 2
    _one_error_line(capsys, "Did you mean 't2m'")
