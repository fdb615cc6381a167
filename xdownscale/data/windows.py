"""Windows of consecutive time steps, built from the time coordinate.

Temporal models (``convgru``, ``flowconvgru``, ``rnngan``) see a few
consecutive time steps at once. This module turns a time coordinate into
integer frame indices; it never looks at the data.

Rules (the same for training and prediction):

- **Regular step.** The step is the smallest positive difference between
  consecutive times (or ``step=`` given explicitly). Times must be strictly
  increasing; duplicates or unsorted times raise :class:`DataError`.
- **Gaps are never bridged.** A difference larger than the step (or not a
  multiple of it) is a gap. ``gaps="error"`` raises a :class:`DataError`
  naming the first gaps; ``gaps="split"`` (default) warns and splits the
  series into contiguous *segments*; no window ever spans two segments.
- **Edge padding by repetition.** A window that reaches beyond the first or
  last time step of its segment repeats the edge frame (index clipping), so
  every time step, including the first and last, gets a full window.
- **Stitching.** :func:`stitch` puts per-window outputs back on the time axis
  so that every time step gets exactly one value (the one from the window in
  which it lies most centrally).

Main functions::

    step = time_step(times)                        # np.timedelta64
    segs = segments(times, gaps="split")           # [slice(0, 100), slice(100, 744)]
    idx = centred_windows(times, window=3)         # (n_times, 3) int, idx[:, 1] == arange(n)
    starts = window_starts(n, length=8, overlap=2) # window starts covering 0..n-1
    full = stitch([out0, out1, ...], starts, n)    # (n, ...) from (length, ...) blocks
    t_new = dense_times(times, time_factor=3)      # input times plus 2 new steps per interval

For a window of ``w`` steps centred on time ``t`` the offsets are
``arange(w) - w // 2`` (for even ``w`` one more step before than after).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataError

__all__ = ["centred_windows", "dense_times", "segment_ids", "segments", "stitch", "time_step", "window_offsets",
           "window_starts"]
GAP_POLICIES = ("split", "error")


def _as_times(times) -> np.ndarray:
    values = np.asarray(getattr(times, "values", times))
    if values.ndim != 1:
        raise DataError(f"the time coordinate must be 1-D, got shape {values.shape}")
    if values.size and not (np.issubdtype(values.dtype, np.datetime64) or np.issubdtype(values.dtype, np.number)
                            or np.issubdtype(values.dtype, np.timedelta64)):
        # cftime objects: differences are datetime.timedelta; convert to seconds
        values = np.array([(v - values[0]).total_seconds() for v in values], dtype="float64")
    return values


def time_step(times, step=None):
    """The regular time step: ``step`` if given, else the smallest positive difference.

    Raises :class:`DataError` for fewer than two times, duplicated or unsorted times.
    """
    t = _as_times(times)
    if step is not None:
        if isinstance(step, str):
            import pandas as pd

            return np.timedelta64(int(pd.Timedelta(step).value), "ns")
        return step
    if t.size < 2:
        raise DataError(f"{t.size} time step(s): a temporal model needs a series of at least 2 consecutive times")
    diffs = np.diff(t)
    zero = diffs[0] * 0
    if np.any(diffs <= zero):
        bad = int(np.argmax(diffs <= zero))
        raise DataError(f"times must be strictly increasing; {t[bad]} is followed by {t[bad + 1]}: "
                        "sort with .sortby('time') and drop duplicates first")
    return diffs.min()


def _fmt(step) -> str:
    if isinstance(step, np.timedelta64):
        import pandas as pd

        return str(pd.Timedelta(step))
    return str(step)


def segment_ids(times, *, step=None, gaps: str = "split") -> np.ndarray:
    """An integer segment label per time step (0, 0, ..., 1, 1, ...); see :func:`segments`."""
    if gaps not in GAP_POLICIES:
        raise DataError(f"gaps={gaps!r}: use one of {GAP_POLICIES}")
    t = _as_times(times)
    if t.size < 2:
        time_step(t)  # raises the clear error
    dt = time_step(t, step)
    diffs = np.diff(t)
    is_gap = diffs != dt
    if is_gap.any():
        where = np.flatnonzero(is_gap)
        listed = ", ".join(f"{t[i]} -> {t[i + 1]}" for i in where[:3]) + (" ..." if where.size > 3 else "")
        msg = f"{where.size} gap(s) in the time coordinate (step {_fmt(dt)}): {listed}"
        if gaps == "error":
            raise DataError(f"{msg}. Fill the missing times, or pass gaps='split' to treat each contiguous "
                            "run as its own series (windows never bridge a gap)")
        warnings.warn(f"{msg}; splitting into {where.size + 1} contiguous segments", stacklevel=3)
    return np.concatenate([[0], np.cumsum(is_gap)]).astype(int)


def segments(times, *, step=None, gaps: str = "split") -> list[slice]:
    """Contiguous runs of the time axis (``slice`` objects into it)."""
    ids = segment_ids(times, step=step, gaps=gaps)
    bounds = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [ids.size]])
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def window_offsets(window: int) -> np.ndarray:
    """Offsets of a window centred on its target step: ``arange(window) - window // 2``."""
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise DataError(f"window must be a positive integer, got {window!r}")
    return np.arange(window) - window // 2


def centred_windows(times, window: int, *, step=None, gaps: str = "split", bounds=None) -> np.ndarray:
    """``(n_times, window)`` indices: the window centred on every time step.

    Indices stay inside the segment of their centre (edge frames repeated).
    ``bounds`` (optional): an ``(n_times,)`` label array of further boundaries
    a window must not cross (e.g. a train/validation split).
    """
    offsets = window_offsets(window)
    ids = segment_ids(times, step=step, gaps=gaps)
    if bounds is not None:
        ids = np.unique(np.stack([ids, np.asarray(bounds)], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    n = ids.size
    lo, hi = _segment_limits(ids)
    centre = np.arange(n)
    return np.clip(centre[:, None] + offsets[None, :], lo[:, None], hi[:, None])


def _segment_limits(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of the segment of every position."""
    n = ids.size
    change = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [n]]) - 1
    which = np.searchsorted(starts, np.arange(n), side="right") - 1
    return starts[which], stops[which]


def window_starts(n: int, length: int, overlap: int = 0) -> np.ndarray:
    """Starts of windows of ``length`` steps covering ``0..n-1`` with at least ``overlap``
    shared steps between neighbours; the last window ends at ``n`` (shorter series: one
    window starting at 0, to be edge-padded by the caller)."""
    if length < 1 or not 0 <= overlap < length:
        raise DataError(f"need length >= 1 and 0 <= overlap < length, got length={length}, overlap={overlap}")
    if n <= length:
        return np.array([0])
    stride = length - overlap
    starts = list(range(0, n - length, stride)) + [n - length]
    return np.array(sorted(set(starts)))


def stitch(blocks, starts, n: int) -> np.ndarray:
    """Put window outputs ``blocks[k]`` (``(length, ...)``, covering ``starts[k]..``) on a
    ``(n, ...)`` time axis; every step gets exactly one value, taken from the window in which
    it lies furthest from an edge (ties: the earlier window). Raises if a step is uncovered."""
    starts = np.asarray(starts, dtype=int)
    if len(blocks) != starts.size or starts.size == 0:
        raise DataError(f"stitch needs one start per block: {len(blocks)} blocks, {starts.size} starts")
    length = blocks[0].shape[0]
    t = np.arange(n)
    pos = t[None, :] - starts[:, None]  # (k, n) position of t inside window k
    inside = (pos >= 0) & (pos < length)
    if not inside.any(axis=0).all():
        raise DataError(f"windows starting at {starts.tolist()} with length {length} do not cover 0..{n - 1}")
    margin = np.where(inside, np.minimum(pos, length - 1 - pos), -1)
    owner = np.argmax(margin, axis=0)
    out = np.empty((n,) + tuple(blocks[0].shape[1:]), dtype=np.asarray(blocks[0]).dtype)
    for k in np.unique(owner):
        sel = np.flatnonzero(owner == k)
        out[sel] = np.asarray(blocks[k])[sel - starts[k]]
    return out


def dense_times(times, time_factor: int, *, step=None, gaps: str = "split") -> tuple[np.ndarray, np.ndarray]:
    """Output times when ``time_factor - 1`` new steps are put between each pair of inputs.

    Returns ``(new_times, source)`` where ``source[j] = (i, k)``: output ``j`` lies ``k /
    time_factor`` of a step after input ``i`` (``k == 0``: an input time). Within each
    segment the output runs from its first to its last input time (no extrapolation);
    no new step is put across a gap.
    """
    if not isinstance(time_factor, (int, np.integer)) or time_factor < 1:
        raise DataError(f"time_factor must be a positive integer, got {time_factor!r}")
    t = _as_times(times)
    segs = segments(t, step=step, gaps=gaps) if t.size > 1 else [slice(0, t.size)]
    out_t, src = [], []
    for seg in segs:
        idx = np.arange(seg.start, seg.stop)
        for a, i in enumerate(idx):
            ks = range(time_factor) if a < idx.size - 1 else range(1)
            for k in ks:
                src.append((i, k))
                out_t.append(t[i] + (t[i + 1] - t[i]) * k / time_factor if k else t[i])
    return np.array(out_t, dtype=t.dtype), np.array(src, dtype=int).reshape(-1, 2)
