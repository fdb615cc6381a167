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


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints are identified by it)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def prune(*, check_hash: bool = True) -> dict:
    """Remove the index entries that can no longer be used and return what was done.

    An entry is dropped when its checkpoint file is gone (e.g. it was written into a temporary
    folder that has since been deleted), when the file at its path no longer has the recorded
    SHA-256 (it was replaced by another file; ``check_hash=False`` skips reading the files),
    when a later entry names the same file, or when its line cannot be read. Checkpoint files
    are never deleted; files in the store folder that no entry names are listed under
    ``"unindexed"`` so that they can be removed by hand. Returns ``{"kept": int, "removed":
    [(path or line, reason), ...], "unindexed": [path, ...]}``.
    """
    index = models_dir() / "index.jsonl"
    text = index.read_text(encoding="utf-8") if index.exists() else ""
    parsed: list[tuple[str, dict | None]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ValueError("no path")
        except ValueError:
            entry = None
        parsed.append((line, entry))
    last = {e["path"]: i for i, (_, e) in enumerate(parsed) if e is not None}
    keep, removed = [], []
    for i, (line, e) in enumerate(parsed):
        if e is None:
            removed.append((line[:80], "unreadable index line"))
        elif last[e["path"]] != i:
            removed.append((e["path"], "listed again later"))
        elif not Path(e["path"]).is_file():
            removed.append((e["path"], "file is gone"))
        elif check_hash and e.get("sha256") and file_sha256(e["path"]) != e["sha256"]:
            removed.append((e["path"], "file was replaced (SHA-256 differs)"))
        else:
            keep.append(line)
    if removed:
        current = index.read_text(encoding="utf-8")
        added = current[len(text):] if current.startswith(text) else ""  # entries a fit appended meanwhile
        tmp = index.with_name(f".{index.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(k + "\n" for k in keep) + added, encoding="utf-8")
        os.replace(tmp, index)
    indexed = {str(Path(e["path"]).resolve()) for _, e in parsed if e is not None}
    unindexed = sorted(str(p) for p in models_dir().glob("*.pt") if str(p.resolve()) not in indexed) \
        if models_dir().is_dir() else []
    return {"kept": len(keep), "removed": removed, "unindexed": unindexed}
