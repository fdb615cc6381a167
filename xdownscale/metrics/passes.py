"""Computing the climate suite on Dask input in bounded memory.

The suite needs the input in two shapes: the per-field scores (SSIM, spectra, the
grid means) gather the grid of each time step, the per-cell distribution scores
(sorts, histograms, quantiles) gather the whole time axis of each cell. One Dask
graph holding both keeps every input chunk alive until both are done, i.e. the
whole input (measured: 10-14 times the input size, ``benchmarks/climate_rss.py``).
So the two are computed apart, and the per-cell part block by block over rows of
the grid: a block's graph reads the input afresh (from its file, or regenerates
it) and keeps only that block's cells whole in time. The price is reading the
input once per block; the peak follows the block size, not the input size.
"""
from __future__ import annotations

import xarray as xr

from .climate import describe
from .distribution import summarise_cells

BLOCK_BYTES = 128 * 2**20  # input bytes (both arrays) whose cells are made whole in time at once


def row_blocks(cells: dict[str, xr.DataArray], dim, input_bytes: int, block_bytes: int) -> list[slice]:
    """Slices of ``dim`` holding about ``block_bytes`` of the input each, whole Dask chunks of the cell maps."""
    n = next(iter(cells.values())).sizes[dim]
    chunk = max((max(c.chunksizes[dim]) for c in cells.values() if c.chunks is not None), default=n)
    per_row = max(1, input_bytes // max(n, 1))
    rows = max(chunk, (block_bytes // per_row) // chunk * chunk)
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def compute_cells(cells: dict[str, xr.DataArray], dim, input_bytes: int,
                  block_bytes: int | None = None) -> dict[str, xr.DataArray]:
    """The lazy cell maps computed block by block over ``dim`` (one Dask pass per block)."""
    if not cells:
        return {}
    ds = xr.Dataset(cells)
    blocks = row_blocks(cells, dim, input_bytes, BLOCK_BYTES if block_bytes is None else block_bytes)
    parts = [ds.isel({dim: b}).compute() for b in blocks]
    done = parts[0] if len(parts) == 1 else xr.concat(parts, dim, data_vars="all", coords="minimal",
                                                       compat="override", join="override")
    return {k: done[k] for k in cells}


def compute_in_passes(ds: xr.Dataset, cells: dict[str, xr.DataArray], truth: xr.DataArray, pred: xr.DataArray,
                      *, dim, order: list, units: str, weighted: bool, member_dim: str, maps: bool) -> xr.Dataset:
    """``ds`` (the per-field entries) in one pass, then the distribution entries from ``cells``
    block by block; the result's variables in ``order`` with the distribution ones after it."""
    fields = ds.compute()
    done = compute_cells(cells, dim, int(pred.nbytes + truth.nbytes))
    summary = summarise_cells(done, truth, weighted=weighted, member_dim=member_dim, maps=maps)
    for k, v in summary.items():
        summary[k] = v.drop_vars([c for c in v.coords if c not in v.dims])
        summary[k].attrs = describe(k, units) or {}
    names = order + list(summary) + [k for k in fields.data_vars if k not in order]
    out = xr.merge([fields, xr.Dataset(summary)], combine_attrs="override")
    out.attrs = dict(fields.attrs)
    return out[names]
