"""Atomic outputs: write to a hidden sibling, then move it onto the target in one step."""
from __future__ import annotations

import glob
import logging
import os
import pathlib
import re
import secrets
import shutil

log = logging.getLogger("xdownscale")


def remove(p: pathlib.Path) -> None:
    """Remove a file or directory tree if it exists, ignoring errors."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError:
        pass


def sibling(path: pathlib.Path, tag: str) -> pathlib.Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def commit(tmp: pathlib.Path, path: pathlib.Path, overwrite: bool) -> None:
    """Move the finished temporary output onto ``path``."""
    exists = path.exists() or path.is_symlink()
    if exists and not overwrite:
        raise FileExistsError(f'{str(path)!r} already exists; pass mode="w" to overwrite it')
    if not tmp.is_dir() and not (exists and path.is_dir()):
        if not exists:
            try:  # no-clobber: fails if someone created ``path`` meanwhile
                os.link(tmp, path)
                tmp.unlink()
                return
            except FileExistsError:
                if not overwrite:
                    raise FileExistsError(
                        f'{str(path)!r} already exists; pass mode="w" to overwrite it') from None
            except OSError:
                pass  # no hard links on this filesystem: plain rename below
        os.replace(tmp, path)
        return
    if not exists:
        os.rename(tmp, path)
        return
    # a directory on either side: move the old one aside, rename, then delete the old one
    aside = sibling(path, "old")
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise
    remove(aside)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: pathlib.Path) -> list[pathlib.Path]:
    """Delete the temporaries (``.<name>.tmp-<pid>-<hex>``) that earlier, killed writes of
    ``path`` left beside it; those of a process still running (a concurrent write) are kept.
    Returns the paths removed."""
    prefix = f".{path.name}.tmp-"
    removed = []
    for p in sorted(pathlib.Path(path.parent).glob(glob.escape(prefix) + "*")):
        m = re.fullmatch(r"(\d+)-[0-9a-f]+", p.name[len(prefix):])
        if m is None or process_alive(int(m.group(1))):
            continue
        remove(p)
        if not (p.exists() or p.is_symlink()):
            removed.append(p)
            log.info("removed %s, left by an interrupted write of %s", p, path)
    return removed
