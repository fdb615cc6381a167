"""The family contract: options dataclasses, the typed model record and its migration, lazy torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.engine.checkpoint import read_checkpoint, read_record
from xdownscale.engine.contract import NoOptions, options_help, parse_options
from xdownscale.engine.record import RECORD_VERSION, ModelRecord, migrate
from xdownscale.models import family_of
from xdownscale.testing import synthetic_field

DATA = Path(__file__).parent / "data"
OLD_CNN = DATA / "checkpoint_v1_cnn.pt"  # written by xdownscale before the record (format version 1)


pytestmark = pytest.mark.usefixtures("own_store")


def test_every_family_answers_the_protocol():
    for name in xds.list_models():
        family = family_of(name)
        assert family.name == xds.model_info(name)["family"]
        for options in (family.fit_options(name), family.predict_options(name)):
            options()  # every option has a default
            assert all(line.split(" ")[0].isidentifier() for line in options_help(options))


def test_unknown_options_are_named_with_the_accepted_ones():
    with pytest.raises(xds.DataError, match=r"'widht'.*Did you mean 'width'.*n_blocks"):
        xds.fit(synthetic_field(times=2, ny=16, nx=16), model="cnn", factor=4, widht=4)
    opts = family_of("convgru").fit_options("convgru")
    with pytest.raises(xds.DataError, match=r"predict\(\) got an unknown option 'time_factor'.*channels"):
        parse_options(opts, {"time_factor": 2}, model="convgru", call="predict")
    with pytest.raises(xds.DataError, match="takes no options of its own"):
        parse_options(NoOptions, {"members": 2}, model="cnn", call="predict")
    # values are checked by the dataclass itself
    with pytest.raises(xds.DataError, match="window must be >= 2"):
        parse_options(family_of("rnngan").fit_options("rnngan"), {"window": 1}, model="rnngan")


def test_options_help_shows_type_default_and_help():
    lines = options_help(family_of("diffusion").predict_options("diffusion"))
    assert "members (int, default 1): samples per field" in lines
    spatial = options_help(family_of("espcn").fit_options("espcn"))
    assert any(line.startswith("width (int, default ") for line in spatial)


def test_cli_lists_the_options_of_a_model(capsys):
    from xdownscale.cli import main

    assert main(["models", "--options", "gan"]) == 0
    out = capsys.readouterr().out
    assert "fit options of 'gan'" in out and "content_members" in out and "predict options" in out
    assert "members (int, default 10)" in out


def test_a_format_1_checkpoint_loads_and_predicts_as_it_did(tmp_path):
    raw = torch.load(OLD_CNN, weights_only=True)
    assert raw["format_version"] == 1 and "record" not in raw  # the stored file really is the old layout
    m = xds.load(OLD_CNN)
    assert (m.model_name, m.factor, m.constraint, m.variable) == ("cnn", 2, "add", "tcwv")
    lr = xds.coarsen(synthetic_field(times=2, ny=32, nx=32, seed=1), 2)
    expected = np.load(DATA / "checkpoint_v1_cnn_prediction.npy")
    np.testing.assert_allclose(m.predict(lr).values, expected, rtol=1e-6, atol=1e-6)
    record = read_record(OLD_CNN)
    assert isinstance(record, ModelRecord) and record.variable == "tcwv" and record.network["model"] == "cnn"
    # saved again, it is written in the current format and reads back the same
    m.save(tmp_path / "new.pt")
    raw = torch.load(tmp_path / "new.pt", weights_only=True)
    assert raw["format_version"] == RECORD_VERSION and raw["record"]["network"] == record.network
    again = xds.load(tmp_path / "new.pt")
    assert again.meta == m.meta
    np.testing.assert_allclose(again.predict(lr).values, expected, rtol=1e-6, atol=1e-6)


def test_resume_state_of_an_old_checkpoint_survives_migration():
    payload = read_checkpoint(OLD_CNN)
    assert payload["resume"]["epoch"] == 0 and "state_dict" in payload


def test_family_sections_round_trip_through_the_record():
    meta = {"network": {"model": "convgru", "factor": 4, "in_channels": 1, "constraint": "add"},
            "variable": "t2m", "temporal": {"window": 3, "time_factor": 1}}
    record = ModelRecord.from_meta(meta)
    assert record.sections == {"temporal": {"window": 3, "time_factor": 1}}
    assert record.to_meta()["temporal"] == meta["temporal"]
    assert ModelRecord(**migrate({"format": "xdownscale-checkpoint", "format_version": 1, **meta})["record"]) \
        == record


def test_a_record_without_network_facts_is_refused():
    with pytest.raises(xds.CheckpointError, match="no network factor"):
        ModelRecord(network={"model": "cnn", "in_channels": 1, "constraint": "none"})


@pytest.mark.slow
def test_import_and_light_functions_never_load_torch(tmp_path):
    code = f"""
import sys
import numpy as np
import xdownscale as xds
from xdownscale.testing import synthetic_field
hr = synthetic_field(times=2, ny=16, nx=16)
lr = xds.coarsen(hr, 4)
up = xds.regrid(lr, hr)
xds.evaluate(up, hr)
xds.write(up, {str(tmp_path / 'up.nc')!r})
hr.downscale.coarsen(2)
assert "torch" not in sys.modules, "torch was imported"
xds.fit  # attribute access loads the training code, and torch with it
assert "torch" in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def _tiny_cnn(hr, path):
    return xds.fit(hr, model="cnn", factor=2, epochs=1, batch_size=2, patch_size=16, samples_per_epoch=2,
                   val_samples=2, width=4, n_blocks=1, progress=False, checkpoint=path)


def test_a_model_refuses_another_variable_units_or_spacing(tmp_path):
    hr = synthetic_field(times=3, ny=16, nx=16)  # tcwv, kg m-2, 2 x 2.667 deg
    m = _tiny_cnn(hr, tmp_path / "m.pt")
    lr = xds.coarsen(hr, 2)
    xds.predict(lr, model=m)  # the data it was trained for
    other = lr.rename("pr").assign_attrs(units="kg m-2 s-1")
    with pytest.raises(xds.DataError, match=r"variable 'pr', not 'tcwv'; units 'kg m-2 s-1'.*allow_other_variable"):
        xds.predict(other, model=m)
    with pytest.raises(xds.DataError, match="units 'g m-2', not 'kg m-2'"):
        xds.predict(lr.assign_attrs(units="g m-2"), model=tmp_path / "m.pt")
    finer = xds.coarsen(synthetic_field(times=3, ny=32, nx=32, lat=(60.0, 52.0), lon=(-40.0, -32.0)), 2)
    with pytest.raises(xds.DataError, match=r"grid spacing 0.5161 x 0.5161, not the 4 x 5.333"):
        xds.predict(finer, model=m)
    with pytest.warns(UserWarning, match="allowed by allow_other_variable=True"):
        out = xds.predict(other, model=m, allow_other_variable=True)
    assert out.shape == (3, 16, 16)


def test_cli_refuses_another_variable_unless_forced(tmp_path, capsys):
    from xdownscale.cli import main

    hr = synthetic_field(times=3, ny=16, nx=16)
    _tiny_cnn(hr, tmp_path / "m.pt")
    xds.coarsen(hr, 2).rename("pr").to_netcdf(tmp_path / "pr.nc")
    argv = ["predict", str(tmp_path / "pr.nc"), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o.nc")]
    assert main(argv) == 2
    assert "variable 'pr', not 'tcwv'" in capsys.readouterr().err and not (tmp_path / "o.nc").exists()
    assert main(argv + ["--force"]) == 0
    assert "allowed by allow_other_variable=True" in capsys.readouterr().err


def test_a_baseline_constraint_fits_the_input():
    t = synthetic_field(times=2, ny=16, nx=16) - 40.0  # reaches below zero
    lr = xds.coarsen(t, 4)
    assert float(lr.min()) < 0
    with pytest.raises(xds.DataError, match="'softmax' needs a non-negative field"):
        xds.predict(lr, model="bicubic", factor=4, constraint="softmax")
    out = xds.predict(lr, model="bicubic", factor=4, constraint="scadd").compute()  # bounds from the input
    from xdownscale.testing import assert_conserves

    assert_conserves(out, lr, 4, rtol=1e-5)


def test_a_lazy_all_nan_input_is_refused_when_computed():
    lr = xds.coarsen(synthetic_field(times=2, ny=16, nx=16), 4)
    lazy_nan = (lr * np.nan).chunk({"time": 1})
    out = xds.predict(lazy_nan, model="bicubic", factor=4)  # building the graph computes nothing
    with pytest.raises(xds.DataError, match="NaN everywhere"):
        out.compute()
    half = lr.where(lr.time == lr.time[0]).chunk({"time": 1})  # one valid field is enough
    assert np.isfinite(xds.predict(half, model="bicubic", factor=4).isel(time=0).values).all()


def test_cli_coarsen_writes_the_exact_block_mean(tmp_path):
    from xdownscale.cli import main

    hr = synthetic_field(times=2, ny=16, nx=16)
    hr.to_dataset().to_netcdf(tmp_path / "fine.nc")
    assert main(["coarsen", str(tmp_path / "fine.nc"), "--factor", "4", "--out", str(tmp_path / "c.nc")]) == 0
    import xarray as xr

    with xr.open_dataset(tmp_path / "c.nc") as c:
        np.testing.assert_allclose(c["tcwv"].values, xds.coarsen(hr, 4).values, rtol=1e-6)
        assert c["tcwv"].attrs["units"] == "kg m-2"
    assert main(["coarsen", str(tmp_path / "fine.nc"), "--factor", "5", "--out", str(tmp_path / "d.nc")]) == 2
    assert not (tmp_path / "d.nc").exists()


@pytest.mark.parametrize("model,options", [
    ("cnn", dict(width=4, n_blocks=1)),
    ("gan", dict(width=4, n_blocks=1, noise_channels=1, content_members=2, val_members=2)),
])
def test_outside_a_terminal_progress_is_one_line_per_epoch(model, options, tmp_path, capsys):
    hr = synthetic_field(times=4, ny=16, nx=16)
    xds.fit(hr, model=model, factor=4, epochs=2, batch_size=2, patch_size=16, samples_per_epoch=4, val_samples=2,
            progress=True, checkpoint=tmp_path / "m.pt", **options)
    err = capsys.readouterr().err
    assert "\r" not in err  # no carriage-return bars in a log file
    lines = [ln for ln in err.splitlines() if ln.startswith("xdownscale: ") and "validation" in ln]
    assert len(lines) == 2, err  # one per epoch (a validation round each), nothing per batch


def test_the_gan_loop_honours_an_update_budget(tmp_path):
    hr = synthetic_field(times=4, ny=16, nx=16)
    m = xds.fit(hr, model="gan", factor=4, max_updates=3, batch_size=2, patch_size=16, samples_per_epoch=8,
                val_samples=2, width=4, n_blocks=1, noise_channels=1, content_members=2, val_members=2,
                progress=False, checkpoint=tmp_path / "g.pt")
    # the shared recipe: the update budget, not the 4-batch epoch, sets the rounds (ceil(3 / 20) = 1 update each)
    assert [h["updates"] for h in m.history] == [1, 2, 3]


def test_training_defaults_are_the_family_s_then_the_model_s(capsys):
    from xdownscale.cli import main

    assert xds.training_defaults("diffusion") == {"patch_size": 128, "max_updates": 300}
    assert xds.training_defaults("gan") == {"max_updates": 600}
    assert xds.training_defaults("rnngan") == {"max_updates": 300}  # its own, over its family's 600
    assert xds.training_defaults("maunet") == {"learning_rate": 2e-3} and xds.training_defaults("cnn") == {}
    assert main(["models", "--options", "rnngan"]) == 0
    assert "max_updates=300" in capsys.readouterr().out
