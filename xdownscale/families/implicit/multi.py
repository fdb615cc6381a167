"""Prediction of a ``liif`` model of several targets (``fit(model="liif", var=["msl", "tp"])``).

The inputs are the targets' own coarse fields (a Dataset holding each by name); the result is a
Dataset of every target on the requested grid (any scale, a target grid or points). As for one
target, the constraints are chosen here, where the target nests the source: one name for every
target or a dict by target (``{"msl": "add", "tp": "softmax"}``; unnamed targets: none).
"""
from __future__ import annotations

import dataclasses

import xarray as xr

from ...data.multi import require
from ...engine.contract import PredictRequest, parse_options
from ...engine.multi_setup import parse_constraints, resolve_sources
from ...engine.record import MULTI_TARGET_SECTION as SECTION
from ...errors import DataError
from ...nn.constraints import HARD_CONSTRAINTS
from .options import ImplicitPredictOptions
from .predict import downscale_fields


def predict_liif_multi(request: PredictRequest, downscaler) -> xr.Dataset:
    """Every target of a multi-target ``liif`` from the coarse Dataset ``request.lr``."""
    opts = parse_options(ImplicitPredictOptions, request.options, model="liif", call="predict")
    targets = list(downscaler.meta[SECTION]["targets"])
    if request.covariates is not None:
        raise DataError("liif takes its targets only: drop covariates=")
    if not isinstance(request.lr, xr.Dataset):
        raise DataError(f"this model downscales {targets} together: pass a Dataset holding the coarse field of "
                        "each (coarse_ds.downscale.predict(model=m, factor=...))")
    given = sum(a is not None for a in (request.factor, opts.target, opts.points))
    if given == 0 and request.like is not None:
        opts = dataclasses.replace(opts, target=request.like)
    elif given != 1:
        raise DataError("give exactly one of factor= (e.g. 2.5), target= (a grid) or points= (stations) "
                        "to predict with 'liif'")
    choice = parse_constraints(request.constraint, targets)
    for t, (kind, _) in choice.items():
        if kind not in ("none", *HARD_CONSTRAINTS):
            raise DataError(f"constraint {kind!r} for {t!r}: at prediction liif applies a hard one: "
                            f"{', '.join(HARD_CONSTRAINTS)} (or none)")
    sources = resolve_sources(choice, targets, targets)  # the inputs are the targets' coarse fields
    fields = [require(request.lr, t, "target", "the coarse Dataset",
                      f"pass the coarse field of every target the model was trained on, {targets}") for t in targets]
    ref = fields[0]
    fields = [da.transpose(*ref.dims) if set(da.dims) == set(ref.dims) else da for da in fields]
    for da in fields:
        if da.dims != ref.dims or da.shape != ref.shape:
            raise DataError(f"{da.name!r} has dims {dict(da.sizes)}, not those of {ref.name!r} {dict(ref.sizes)}: put "
                            "every target's coarse field on one grid (xds.regrid)")
    outs = downscale_fields(fields, downscaler, request, opts,
                            [(choice[t][0], s) for t, s in zip(targets, sources)])
    result = xr.Dataset({str(da.name): da for da in outs})
    result.attrs = dict(request.lr.attrs)
    return result
