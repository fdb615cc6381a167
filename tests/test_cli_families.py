"""The CLI drives model families with their own options (``--option``, float ``--factor``, ``--target``)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xdownscale.cli import main
from xdownscale.cli.commands import parse_options
from xdownscale.cli.files import CLIError
from xdownscale.testing import synthetic_field

TINY_LIIF = ["--option", "hidden=16", "--option", "queries=128", "--option", "lr_patch=8",
             "--option", "scales=(1.5, 4.0)", "--width", "8", "--n-blocks", "1"]


def test_parse_options_reads_literals_and_strings():
    assert parse_options(["members=10", "scales=(1.5, 8)", "scheduler=ddim", "flag=True"]) == {
        "members": 10, "scales": (1.5, 8), "scheduler": "ddim", "flag": True}
    with pytest.raises(CLIError, match="KEY=VALUE"):
        parse_options(["members"])


@pytest.fixture(scope="module")
def liif_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_liif")
    hr = synthetic_field("t2m", times=4, ny=40, nx=48, seed=1)
    hr.to_dataset(name="t2m").to_netcdf(root / "hr.nc")
    hr.isel(time=slice(-1, None)).downscale.coarsen(4).to_dataset(name="t2m").to_netcdf(root / "lr.nc")
    ckpt = root / "liif.pt"
    rc = main(["fit", str(root / "hr.nc"), "--var", "t2m", "--model", "liif", "--epochs", "1", "--batch-size", "4",
               "--samples-per-epoch", "8", "--out", str(ckpt), "-q", *TINY_LIIF])
    assert rc == 0
    return root, ckpt


def test_cli_predicts_liif_at_a_non_integer_factor(liif_files):
    root, ckpt = liif_files
    out = root / "x2_5.nc"
    assert main(["predict", str(root / "lr.nc"), "--model", str(ckpt), "--factor", "2.5", "--out", str(out), "-q"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds["t2m"].shape == (1, 25, 30)  # 10 x 12 coarse cells x 2.5
        assert np.isfinite(ds["t2m"].values).all()


def test_cli_predicts_liif_onto_a_target_grid(liif_files):
    root, ckpt = liif_files
    with xr.open_dataset(root / "lr.nc") as lr:
        lat, lon = lr["lat"].values, lr["lon"].values
    target = xr.Dataset(coords={"lat": np.linspace(lat[1], lat[-2], 17), "lon": np.linspace(lon[1], lon[-2], 21)})
    target["lat"].attrs.update(units="degrees_north", standard_name="latitude")
    target["lon"].attrs.update(units="degrees_east", standard_name="longitude")
    target.to_netcdf(root / "target.nc")
    out = root / "onto.nc"
    assert main(["predict", str(root / "lr.nc"), "--model", str(ckpt), "--target", str(root / "target.nc"),
                 "--out", str(out), "-q"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds["t2m"].shape == (1, 17, 21)


def test_cli_rejects_an_option_the_model_does_not_take(tmp_path):
    hr = synthetic_field("t2m", times=2, ny=16, nx=16, seed=2)
    hr.downscale.coarsen(4).to_dataset(name="t2m").to_netcdf(tmp_path / "lr.nc")
    rc = main(["predict", str(tmp_path / "lr.nc"), "--model", "bicubic", "--factor", "4", "--option", "members=3",
               "--out", str(tmp_path / "x.nc"), "-q"])
    assert rc == 2
    assert not (tmp_path / "x.nc").exists()


def test_cli_liif_conserves_with_a_constraint_given_at_prediction(liif_files):
    """liif is trained without one; --constraint applies it at prediction, per coarse cell."""
    root, ckpt = liif_files
    with xr.open_dataset(root / "lr.nc") as ds:
        lr = ds["t2m"].load()
    errors = {}
    for flag in ([], ["--constraint", "softmax"], ["--constraint", "add"]):
        out = root / f"x4{'_'.join(flag)}.nc"
        assert main(["predict", str(root / "lr.nc"), "--model", str(ckpt), "--factor", "4", "--out", str(out),
                     "-q", *flag]) == 0
        with xr.open_dataset(out) as ds:
            back = ds["t2m"].load().downscale.coarsen(4)
        errors[" ".join(flag)] = float(np.abs(back.values - lr.values).max() / np.abs(lr.values).max())
    assert errors[""] > 1e-4  # the plain prediction does not conserve, or the test could not tell
    assert errors["--constraint softmax"] < 1e-5 and errors["--constraint add"] < 1e-5


def test_cli_predict_rejects_a_malformed_constraint_in_one_line(liif_files, capsys):
    root, ckpt = liif_files
    out = root / "bad.nc"
    assert main(["predict", str(root / "lr.nc"), "--model", str(ckpt), "--factor", "4", "--out", str(out), "-q",
                 "--constraint", "t2m=add,tp"]) == 2
    assert "VAR=NAME pairs" in capsys.readouterr().err and not out.exists()
