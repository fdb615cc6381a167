"""Where trained checkpoints are remembered, so ``predict(model="cnn", factor=4)`` finds them.

The store is ``$XDOWNSCALE_HOME`` (default: the user cache dir,
e.g. ``~/.cache/xdownscale``). Every checkpoint written by ``fit`` is listed
in ``models/index.jsonl`` there, wherever the file itself lives.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .errors import ModelNotFoundError


def home() -> Path:
    env = os.environ.get("XDOWNSCALE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xdownscale"))


def models_dir() -> Path:
    return home() / "models"


def default_path(variable: str | None, model: str, factor: int) -> Path:
    """A new checkpoint path in the store; ``factor=0`` marks a scale-free model (``_xany``)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return models_dir() / f"{variable or 'field'}_{model}_x{factor or 'any'}_{stamp}_{os.getpid()}.pt"


def register(path: Path, *, variable: str | None, model: str, factor: int, constraint: str, sha256: str) -> None:
    index = models_dir() / "index.jsonl"
    index.parent.mkdir(parents=True, exist_ok=True)
    entry = {"path": str(Path(path).resolve()), "variable": variable, "model": model, "factor": int(factor),
             "constraint": constraint, "sha256": sha256, "time": time.time()}
    with open(index, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def entries() -> list[dict]:
    index = models_dir() / "index.jsonl"
    if not index.exists():
        return []
    out = []
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [e for e in out if Path(e["path"]).exists()]


def find_latest(variable: str | None, model: str, factor: float | None) -> Path:
    """The most recent checkpoint for (variable, model, factor), or an error saying which fit to run.

    Checkpoints registered with factor 0 are scale-free (arbitrary-scale models) and match any factor."""
    found = [e for e in entries() if e["model"] == model
             and (factor is None or e["factor"] == 0 or float(e["factor"]) == float(factor))
             and (variable is None or e["variable"] == variable)]
    if not found:
        f = factor if factor is not None else 4
        raise ModelNotFoundError(
            f"no trained {model!r} x{f} checkpoint for variable {variable!r} in the model store {str(models_dir())!r}. "
            f"Train one first: hr.downscale.fit(model={model!r}, factor={f}) on the high-resolution field "
            f"(CLI: xdownscale fit DATA --var {variable or 'NAME'} --model {model} --factor {f} --out CKPT), "
            "or pass a checkpoint path as model=..."
        )
    return Path(max(found, key=lambda e: e["time"])["path"])
