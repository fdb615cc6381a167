"""Progress that suits where it goes: a tqdm bar on a terminal or in a notebook, one plain line
per epoch in a batch log (SLURM, nohup, CI), where carriage-return bars become thousands of lines."""
from __future__ import annotations

import sys


def interactive() -> bool:
    """stderr is a terminal, or we run in a Jupyter kernel."""
    if getattr(sys.stderr, "isatty", lambda: False)():
        return True
    return "ipykernel" in sys.modules


def bar(iterable, *, enabled: bool, **kwargs):
    """A tqdm bar over ``iterable`` when ``enabled`` and interactive; else a silent tqdm (its
    ``set_postfix`` and ``update`` still work, nothing is printed)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and interactive()), **kwargs)


def line(message: str, *, enabled: bool) -> None:
    """One line per epoch (or step) outside a terminal; on a terminal the bar says it already."""
    if enabled and not interactive():
        print(f"xdownscale: {message}", file=sys.stderr, flush=True)
