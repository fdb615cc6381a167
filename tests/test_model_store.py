"""The model store: tests never touch the user's store; ``models --prune`` drops unusable entries."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xdownscale import model_store
from xdownscale.cli import main
from xdownscale.engine.checkpoint import sha256


def test_tests_use_a_private_model_store(tmp_path_factory):
    import platformdirs

    home = model_store.home().resolve()
    assert home != Path(platformdirs.user_cache_dir("xdownscale")).resolve()
    assert tmp_path_factory.getbasetemp().resolve() in home.parents
    assert os.environ["XDOWNSCALE_HOME"] == str(model_store.home())  # inherited by subprocesses too


def _ckpt(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_models_prune_drops_gone_replaced_duplicate_and_unreadable_entries(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    good = _ckpt(tmp_path / "ckpts" / "good.pt", b"good weights")
    gone = _ckpt(tmp_path / "pytest-123" / "gone.pt", b"temporary")
    replaced = _ckpt(tmp_path / "ckpts" / "replaced.pt", b"first weights")
    twice = _ckpt(tmp_path / "ckpts" / "twice.pt", b"twice")
    for p, var in ((good, "tas"), (gone, "tas"), (replaced, "pr"), (twice, "psl"), (twice, "psl")):
        model_store.register(p, variable=var, model="cnn", factor=4, constraint="none", sha256=sha256(p))
    index = model_store.models_dir() / "index.jsonl"
    with open(index, "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    gone.unlink()
    replaced.write_bytes(b"other weights")
    unindexed = _ckpt(model_store.models_dir() / "orphan.pt", b"no entry")

    assert main(["models", "--prune"]) == 0
    out = capsys.readouterr().out
    kept = [json.loads(line)["path"] for line in index.read_text().splitlines()]
    assert kept == [str(good.resolve()), str(twice.resolve())]
    assert "file is gone" in out and "SHA-256 differs" in out and "unreadable" in out and "listed again" in out
    assert "4 entries removed, 2 kept" in out and str(unindexed) in out
    # checkpoint files are never deleted, and the kept entries still resolve
    assert replaced.exists() and unindexed.exists() and good.exists()
    assert model_store.find_latest("tas", "cnn", 4) == good.resolve()
    # a second prune has nothing left to do and does not rewrite the index
    before = index.stat().st_mtime_ns
    assert main(["models", "--prune"]) == 0
    assert "0 entries removed, 2 kept" in capsys.readouterr().out
    assert index.stat().st_mtime_ns == before


def test_models_without_prune_still_lists_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "removed" not in out
    assert not (tmp_path / "store").exists()  # listing writes nothing


def test_tests_keep_cartopy_downloads_in_the_temporary_folder(tmp_path_factory):
    cartopy = pytest.importorskip("cartopy")
    base = tmp_path_factory.getbasetemp().resolve()
    assert base in Path(os.environ["XDG_DATA_HOME"]).resolve().parents
    assert base in Path(cartopy.config["data_dir"]).resolve().parents
