"""Ensembles from stochastic models: ``predict(lr, model="gan", members=N, seed=s)``.

The noise that drives a stochastic generator is a seeded, lazy Dask array on
the *coarse* grid (:func:`seeded_noise`). It is passed to
:func:`xdownscale.engine.infer.tiled_predict` as further input channels, next
to the variable and its predictors, so tiles and their halos read the same
noise as a single-chunk run would: the result does not depend on the chunking.
The noise at a coarse cell depends only on ``(seed, member, time index, cell)``
(it is drawn in fixed 32x32-cell tiles), so member ``k`` of seed ``s`` is the
same field whether 2 or 20 members are asked for.

The result has a leading ``member`` dimension; the ensemble mean is
``ens.mean("member")`` (or :func:`ensemble_mean`, which keeps the attributes).
Constraint layers act on every member: each one conserves the coarse field.
"""
from __future__ import annotations

import itertools

import dask.array as dsa
import numpy as np
import xarray as xr

from .errors import DataError

NOISE_TILE = 32  # coarse cells per side of an independently seeded noise tile
MEMBER_DIM = "member"


def _noise_block(seed: int, channels: int, tile: int, block_info=None) -> np.ndarray:
    info = block_info[None]
    loc = info["array-location"]
    (y0, y1), (x0, x1) = loc[-2], loc[-1]
    lead = loc[1:-2]
    out = np.empty(info["chunk-shape"], dtype="float32")
    for pos in itertools.product(*[range(a, b) for a, b in lead]):
        rel = tuple(p - a for p, (a, _) in zip(pos, lead))
        for ty in range(y0 // tile, (y1 - 1) // tile + 1):
            for tx in range(x0 // tile, (x1 - 1) // tile + 1):
                rng = np.random.default_rng([seed, *pos, ty, tx])
                values = rng.standard_normal((channels, tile, tile), dtype="float32")
                ys = slice(max(y0, ty * tile), min(y1, (ty + 1) * tile))
                xs = slice(max(x0, tx * tile), min(x1, (tx + 1) * tile))
                out[(slice(None), *rel, slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))] = \
                    values[:, ys.start - ty * tile: ys.stop - ty * tile, xs.start - tx * tile: xs.stop - tx * tile]
    return out


def seeded_noise(shape: tuple[int, ...], *, channels: int, seed: int, chunks=None, tile: int = NOISE_TILE) -> dsa.Array:
    """Standard-normal noise ``(channels, *shape)`` as a lazy Dask array.

    ``shape`` is ``(*lead, ny, nx)``, with the member index first among the
    lead dims. Values depend only on ``(seed, lead index, tile of the cell)``,
    never on ``chunks`` (which default to one chunk per lead index).
    """
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    full = (int(channels),) + tuple(int(s) for s in shape)
    if chunks is None:
        chunks = (-1,) + (1,) * (len(shape) - 2) + (-1, -1)
    else:
        chunks = (-1,) + tuple(chunks)
    norm = dsa.core.normalize_chunks(chunks, full, dtype="float32")
    return dsa.map_blocks(_noise_block, int(seed), int(channels), int(tile), chunks=norm, dtype="float32",
                          meta=np.empty((0,) * len(full), dtype="float32"))


def ensemble_mean(ens: xr.DataArray, member_dim: str = MEMBER_DIM) -> xr.DataArray:
    """The ensemble mean ``ens.mean(member_dim)``, attributes kept (it conserves when the members do)."""
    if member_dim not in ens.dims:
        raise DataError(f"no ensemble dimension {member_dim!r} in dims {tuple(ens.dims)}")
    out = ens.mean(member_dim, keep_attrs=True)
    out.attrs["cell_methods"] = (str(out.attrs.get("cell_methods", "")) + f" {member_dim}: mean").strip()
    return out
