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


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


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
