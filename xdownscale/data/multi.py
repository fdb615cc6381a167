"""Several target variables from several coarse inputs: the pair and its patch stream.

The inputs are coarse fields on the grid nested in the targets' fine grid: read from a real
coarse Dataset (``lr``; an offset grid is regridded conservatively onto the nested one by
:func:`~xdownscale.data.pairs.make_pair`, input by input), or made by the exact area-weighted
coarsening of ``hr``'s own variables. Every check names the variable at fault.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from ..errors import DataError
from ..grid.cf import GridAxes, find_axes
from ..grid.coarsen import coarsen
from ..grid.regrid import nested_offset
from .fill import fill_nearest
from .pairs import fine_row_weights, make_pair, with_time
from .patches import PatchDataset


@dataclass
class MultiPair:
    """``targets``: fine (time, y, x) fields; ``inputs``: coarse (time, y/f, x/f) fields, all on
    one time axis. ``real``: the inputs come from another source (``lr=``), not from ``hr``."""

    targets: list[xr.DataArray]
    inputs: list[xr.DataArray]
    target_names: list[str]
    input_names: list[str]
    factor: int
    axes: GridAxes
    row_weights: np.ndarray
    real: bool
    offset: tuple[float, float] | None = None  # the coarse input grid's offset from the fine blocks (cells)

    @property
    def hr(self) -> xr.DataArray:  # the first target drives windows and shapes (PatchDataset)
        return self.targets[0]

    @property
    def n_times(self) -> int:
        return self.hr.sizes[self.axes.time] if self.axes.time else 1


def gridded_names(ds: xr.Dataset) -> list[str]:
    """The numeric data variables of ``ds`` that span its horizontal grid."""
    axes = find_axes(ds)
    return [str(n) for n, v in ds.data_vars.items()
            if set(axes.spatial) <= set(v.dims) and np.issubdtype(v.dtype, np.number)]


def require(ds: xr.Dataset, name: str, role: str, where: str, fix: str) -> xr.DataArray:
    """``ds[name]``, or one line naming the missing variable, what ``ds`` holds and the fix."""
    if name not in ds.data_vars:
        held = [str(n) for n in ds.data_vars]
        close = difflib.get_close_matches(name, held, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"{role} {name!r} is not in {where}{hint}; it holds {held}: {fix}")
    return ds[name]


def check_same_times(hr_field: xr.DataArray, field: xr.DataArray, name: str) -> None:
    """Refuse an input whose time steps differ from the targets' (naming the input)."""
    th, tl = find_axes(hr_field).time, find_axes(field).time
    if th is None and tl is None:
        return
    if (th is None) != (tl is None):
        raise DataError(f"input {name!r} {'has no' if tl is None else 'has a'} time axis but the targets "
                        f"{'do' if tl is None else 'do not'}: give both the same time steps")
    a = hr_field[th].values if th in hr_field.coords else np.arange(hr_field.sizes[th])
    b = field[tl].values if tl in field.coords else np.arange(field.sizes[tl])
    if a.shape != b.shape or not np.array_equal(a, b):
        first = f", first {b[0]} vs {a[0]}" if a.size and b.size else ""
        raise DataError(f"input {name!r} has time steps that do not match the targets' ({b.size} vs {a.size}{first}): "
                        "align them first, e.g. hr, lr = xr.align(hr, lr, join='inner')")


def like_grid(da: xr.DataArray, ref: xr.DataArray, axes: GridAxes) -> xr.DataArray:
    """``da`` (another fine field of the same Dataset) cropped and ordered as ``ref``."""
    if any(da.sizes[d] != ref.sizes[d] for d in axes.spatial):
        da = da.sel({d: ref[d].values for d in axes.spatial})
    return with_time(da, axes)


def make_multi_pair(hr, targets: list[str], *, lr=None, predictors: list[str] | None = None,
                    factor: int | None = None, trim: bool = False) -> MultiPair:
    """The training pair of several targets. Inputs: with ``lr``, ``predictors`` or else every
    gridded variable of ``lr``; without, the targets coarsened from ``hr`` plus ``predictors``
    (variables of ``hr``, fine or coarse)."""
    if not isinstance(hr, xr.Dataset):
        raise DataError("several targets (var=[...]) need hr as a Dataset that holds them, e.g. ds[['msl', 'tp']]")
    fields = [require(hr, t, "target", "hr", "pass var= names of hr variables") for t in targets]
    if lr is None:
        names = list(targets) + [p for p in (predictors or []) if p not in targets]
        first = make_pair(fields[0], factor, None, trim=trim)
    else:
        if not isinstance(lr, xr.Dataset):
            raise DataError("lr= with several targets must be a Dataset of the coarse inputs")
        names = list(predictors) if predictors else gridded_names(lr)
        if not names:
            raise DataError("lr holds no gridded variable to use as an input: pass a Dataset of coarse fields")
        for p in names:
            check_same_times(fields[0], require(lr, p, "predictor", "lr", "pass predictors= names of lr variables"), p)
        first = make_pair(fields[0], factor, lr[names[0]], trim=trim)
    f, axes, ref = first.factor, first.axes, first.hr
    target_fields = [ref] + [like_grid(da, ref, axes) for da in fields[1:]]
    inputs = []
    for p in names:
        if lr is not None:
            if p == names[0]:
                coarse = first.lr
            else:  # the same grid as the first input: its regridding warning has been given once
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    coarse = make_pair(fields[0], f, lr[p], trim=trim).lr
            assert coarse is not None  # a pair made with lr= holds it
        else:
            da = require(hr, p, "predictor", "hr", "pass predictors= names of hr variables (or give lr=)")
            if all(da.sizes[d] == ref.sizes[d] for d in axes.spatial) or p in targets:
                coarse = coarsen(like_grid(da, ref, axes), f, axes=axes)
            elif all(da.sizes.get(d) == ref.sizes[d] // f for d in axes.spatial):
                coarse = da
            else:
                raise DataError(f"predictor {p!r} is neither on the fine grid nor on the coarse grid x{f}: regrid it "
                                "first (xds.regrid) or pass it in lr=")
        inputs.append(with_time(coarse, find_axes(coarse)).rename(p))
    tdim = axes.time
    inputs = [i.rename({find_axes(i).time: tdim}) if tdim and find_axes(i).time != tdim else i for i in inputs]
    # against the fine field as paired (trimmed to whole blocks): the offset is a fraction of a cell
    offset = nested_offset(lr[names[0]], ref, f) if lr is not None else None
    return MultiPair(target_fields, inputs, list(targets), names, f, axes, fine_row_weights(ref, axes),
                     real=lr is not None, offset=offset)


class MultiPatchDataset(PatchDataset):
    """Random (inputs, targets, weights, conserved fields) samples of a :class:`MultiPair`.

    ``x``: (C, p/f, p/f) normalised inputs and folded covariates; ``y``: (K, p, p) physical
    targets; ``w``: (1, p, 1); ``c``: (K, p/f, p/f) the physical source field each target
    conserves (``sources[k]``: its input index; zeros where it has none)."""

    def __init__(self, pair: MultiPair, input_stats: list, sources: list, times, *, patch_size: int,
                 n_samples: int, seed: int, covariates: np.ndarray | None = None, fixed: bool = False):
        super().__init__(pair, {}, times, patch_size=patch_size, n_samples=n_samples, seed=seed,  # type: ignore[arg-type]
                         covariates=covariates, fixed=fixed)
        self.multi, self.input_stats, self.sources = pair, list(input_stats), list(sources)

    def __getitem__(self, index: int):
        t, y0, x0 = self.window(index)
        f, (py, px) = self.factor, self.patch
        ys, xs = slice(y0, y0 + py), slice(x0, x0 + px)
        cys, cxs = slice(y0 // f, (y0 + py) // f), slice(x0 // f, (x0 + px) // f)
        w = self.multi.row_weights[ys]
        y = np.stack([self._read(f"target{k}", da, t, ys, xs) for k, da in enumerate(self.multi.targets)])
        phys = [self._read(f"input{j}", da, t, cys, cxs) for j, da in enumerate(self.multi.inputs)]
        # missing cells filled as every prediction path fills them (data/fill.py)
        x = np.nan_to_num(fill_nearest(np.stack([(v - s["mean"]) / s["std"] for v, s in zip(phys, self.input_stats)])),
                          nan=0.0)
        if self.covariates is not None:
            x = np.concatenate([x, self.covariates[:, cys, cxs]], axis=0)
        c = np.stack([np.nan_to_num(phys[s], nan=self.input_stats[s]["mean"]) if s is not None
                      else np.zeros_like(phys[0]) for s in self.sources])
        return (torch.from_numpy(x.astype("float32")), torch.from_numpy(y.astype("float32")),
                torch.from_numpy(w[None, :, None].astype("float32")), torch.from_numpy(c.astype("float32")))
