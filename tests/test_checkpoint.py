"""Checkpoints load without running code: a file that holds pickled objects is refused."""
from __future__ import annotations

import pytest
import torch

import xdownscale as xds
from xdownscale.engine.checkpoint import FORMAT, FORMAT_VERSION, read_checkpoint


class _OpensAFile:
    """Unpickling this calls open(path, "w"): the file appears only if the pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled_checkpoint(tmp_path):
    marker = tmp_path / "code-ran"
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "network": {"model": "cnn", "factor": 4},
               "state_dict": {"w": torch.zeros(2)}, "extra": _OpensAFile(marker)}
    path = tmp_path / "pickled.pt"
    torch.save(payload, path)
    return path, marker


def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    path, marker = _pickled_checkpoint(tmp_path)
    with pytest.raises(xds.CheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert "pickled Python objects" in msg and "open" in msg and "\n" not in msg
    # torch's own advice (turn weights_only off) is exactly what must not be done: not repeated
    assert "weights_only" not in msg and "False" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__  # not shown in the traceback either
    with pytest.raises(xds.CheckpointError, match="pickled Python objects"):
        xds.load(path)
    assert not marker.exists()


def test_cli_refuses_a_pickled_checkpoint_in_one_line(tmp_path, capsys):
    from xdownscale.cli import main
    from xdownscale.testing import synthetic_field

    path, marker = _pickled_checkpoint(tmp_path)
    coarse = tmp_path / "coarse.nc"
    xds.write(synthetic_field("tcwv", times=1, ny=16, nx=16), coarse)
    assert main(["predict", str(coarse), "--model", str(path), "--out", str(tmp_path / "fine.nc"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickled Python objects" in err[0] and "weights_only" not in err[0]
    assert not marker.exists() and not (tmp_path / "fine.nc").exists()
