"""Prediction of a ``liif`` model of several targets, or of targets from other inputs
(``fit(model="liif", var=["msl", "tp"], predictors=[...])``, ``fit(lr=coarse_ds, hr=fine_ds, ...)``).

The inputs are named coarse fields (a Dataset holding each by name: the targets' own coarse
fields, then any predictors, or the variables of ``lr`` the model was trained on); the result is
a Dataset of every target on the requested grid (any scale, a target grid or points). As for one
target, the constraints are chosen here, where the target nests the source: one name for every
target or a dict by target (``{"msl": "add", "tp": "softmax"}``; unnamed targets: none). A
target conserves the input of the same name, or a named one (``"add@msl_arpege"``); a target
with no such input takes ``"none"`` only.

A model trained on a real pair (``grid["pair"] == "real"``) learnt one scale, ``factor``: its
inputs must lie on the training inputs' spacing (``allow_other_variable=True`` lets others run,
with a warning), they are moved by the training offset as for the spatial models (so the fine
grid relates to them as in training), ``factor`` defaults to the pair's, and another scale runs
with a warning that it is untested.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import xarray as xr

from ...data.multi import require
from ...engine.contract import PredictRequest, parse_options
from ...engine.multi_setup import parse_constraints, resolve_sources
from ...engine.record import MULTI_TARGET_SECTION as SECTION
from ...errors import DataError
from ...grid.cf import coordinate_values, find_axes
from ...nn.constraints import HARD_CONSTRAINTS
from ..spatial.multi import check_spacing, on_training_offset
from .options import ImplicitPredictOptions
from .predict import downscale_fields


def predict_liif_multi(request: PredictRequest, downscaler) -> xr.Dataset | xr.DataArray:
    """Every target of a multi-target ``liif`` from the coarse Dataset ``request.lr`` (module docstring)."""
    opts = parse_options(ImplicitPredictOptions, request.options, model="liif", call="predict")
    info = downscaler.meta[SECTION]
    targets = list(info["targets"])
    names = list(info.get("inputs") or targets)
    own = names == targets  # the inputs are the targets' own coarse fields
    real = downscaler.meta.get("grid", {}).get("pair") == "real"
    if request.covariates is not None:
        raise DataError("liif takes no covariates: drop covariates=")
    lr = request.lr
    one_field = isinstance(lr, xr.DataArray) and len(names) == 1 and lr.name in (None, names[0])
    if one_field:  # a model of one input (fit(lr=coarse_da, hr=fine_da)): a DataArray in, out for one target
        lr = lr.to_dataset(name=names[0])
    if not isinstance(lr, xr.Dataset):
        what = "the coarse field of each" if own else f"the inputs {names}"
        raise DataError(f"this model downscales {targets} together: pass a Dataset holding {what} "
                        "(coarse_ds.downscale.predict(model=m, factor=...))")
    given = sum(a is not None for a in (request.factor, opts.target, opts.points))
    if given == 0 and request.like is not None:
        opts = dataclasses.replace(opts, target=request.like)
    elif given == 0 and real:  # a pair's model: its one scale
        request = dataclasses.replace(request, factor=downscaler.factor)
    elif given != 1:
        raise DataError("give exactly one of factor= (e.g. 2.5), target= (a grid) or points= (stations) "
                        "to predict with 'liif'")
    choice = parse_constraints(request.constraint, targets)
    for t, (kind, _) in choice.items():
        if kind not in ("none", *HARD_CONSTRAINTS):
            raise DataError(f"constraint {kind!r} for {t!r}: at prediction liif applies a hard one: "
                            f"{', '.join(HARD_CONSTRAINTS)} (or none)")
    sources = resolve_sources(choice, targets, names)
    if own:
        fields = [require(lr, t, "target", "the coarse Dataset",
                          f"pass the coarse field of every target the model was trained on, {targets}")
                  for t in targets]
    else:
        fields = [require(lr, n, "input", "the coarse Dataset",
                          f"pass every input the model was trained on, {names} (targets {targets})") for n in names]
    ref = fields[0]
    fields = [da.transpose(*ref.dims) if set(da.dims) == set(ref.dims) else da for da in fields]
    for da in fields:
        if da.dims != ref.dims or da.shape != ref.shape:
            raise DataError(f"{da.name!r} has dims {dict(da.sizes)}, not those of {ref.name!r} {dict(ref.sizes)}: put "
                            "every input's coarse field on one grid (xds.regrid)")
    if real:
        fields = _as_in_training(fields, downscaler, request, opts)
    outputs = fields if own else [_describe(t, sources[j], fields, info) for j, t in enumerate(targets)]
    outs = downscale_fields(fields, downscaler, request, opts, [(choice[t][0], s) for t, s in zip(targets, sources)],
                            outputs)
    result = xr.Dataset({str(da.name): da for da in outs})
    result.attrs = dict(lr.attrs)
    return result[targets[0]] if one_field and len(targets) == 1 else result


def _describe(target: str, source, fields: list[xr.DataArray], info: dict) -> xr.DataArray:
    """What names and describes output ``target``: its source field (or the first input) under the
    target's name, with the CF attributes recorded for the target at training."""
    da = fields[source if source is not None else 0].rename(target)
    history = {"history": da.attrs["history"]} if "history" in da.attrs else {}
    da.attrs = {**history, **info.get("attrs", {}).get(target, {})}
    return da


def _as_in_training(fields: list[xr.DataArray], downscaler, request: PredictRequest,
                    opts: ImplicitPredictOptions) -> list[xr.DataArray]:
    """The inputs of a model trained on a real pair: checked for the training spacing and moved by
    the training offset; a warning where the asked scale is not the pair's (untested)."""
    for da in fields:
        check_spacing(downscaler, da, request.allow_other_variable)
    offset = downscaler.meta.get("grid", {}).get("input_offset")
    if offset is not None and any(abs(o) > 0 for o in offset):
        # each input keeps the cells it covers (an edge of missing values goes): the cells all cover
        fields = list(xr.align(*on_training_offset(fields, offset), join="inner"))
    f = downscaler.factor
    scale = None
    if request.factor is not None:
        scale = float(request.factor)
    elif opts.target is not None:  # the target grid's spacing against the inputs'
        axes, taxes = find_axes(fields[0]), find_axes(opts.target)
        steps = [abs(float(np.median(np.diff(coordinate_values(g, d))))) if g.sizes[d] > 1 else np.nan
                 for g, d in ((fields[0], axes.y), (opts.target, taxes.y))]
        scale = steps[0] / steps[1]
    if scale is not None and np.isfinite(scale) and abs(scale - f) > 0.01 * f:
        warnings.warn(f"this liif was trained at the single scale x{f} of its pair (lr=, hr=); scale {scale:.3g} was "
                      f"never trained and is untested: expect less skill than at x{f}", stacklevel=4)
    return fields
