"""The tutorials run end to end (fast mode)."""
import runpy
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
@pytest.mark.slow  # trains and predicts end to end
def test_tutorial_runs(script, tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_TUTORIAL_FAST", "1")
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "out")])
    runpy.run_path(str(script), run_name="__main__")
    assert any((tmp_path / "out").iterdir())
