"""Atomic outputs: write to a hidden sibling, then move it onto the target in one step."""
from __future__ import annotations

import os
import pathlib
import secrets
import shutil


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
