"""Shared by the benchmarks that train each network once per seed: merging parts, table cells."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def merge_parts(results: Path, stems: str) -> tuple[list[dict], dict]:
    """The rows of the comma-separated result ``stems`` (one row per model and seed: a network
    measured in several parts counts once) and the last part's saved arguments."""
    rows, args = [], {}
    for stem in stems.split(","):
        part = json.loads((results / f"{stem}.json").read_text())
        rows += [r for r in part["rows"] if not any(q["model"] == r["model"] and q.get("seed") == r.get("seed")
                                                    for q in rows)]
        args = dict(part["args"])
    return rows, args


def seed_cell(rows: list[dict], key: str, fmt: str) -> str:
    """One value, or the mean over seeds followed by the per-seed values in brackets."""
    v = np.array([r[key] for r in rows])
    if len(v) == 1:
        return format(v[0], fmt)
    return f"{format(v.mean(), fmt)} ({', '.join(format(x, fmt) for x in v)})"
