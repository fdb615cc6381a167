"""``predict``: downscale a coarse field lazily with a trained model or a baseline."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr

from . import model_store
from .data.covariates import as_dataset, fold_covariates
from .data.pairs import select_variable
from .downscaler import Downscaler
from .engine.infer import ModelRunner, _default_chunks, tiled_predict
from .errors import DataError
from .grid.cf import find_axes, latitude_weights, wraps_longitude
from .io.cf import add_cf_attrs, fine_coordinates
from .models import model_info
from .models._registry import UnknownModelError, list_models, resolve_hook, suggest


def baseline(name: str, factor: int, constraint: str = "none") -> Downscaler:
    """A :class:`Downscaler` for an interpolation baseline (no weights, identity normalisation)."""
    network = {"model": name, "factor": int(factor), "in_channels": 1, "constraint": constraint,
               "skip": None, "mean": 0.0, "std": 1.0, "constraint_kwargs": None}
    meta = {"network": network, "variable": None, "attrs": {}, "predictors": [], "covariates": [],
            "normalization": {"target": {"mean": 0.0, "std": 1.0}, "predictors": [], "covariates": {}}}
    return Downscaler.from_meta(meta)


def resolve_model(model, *, factor: int | None = None, variable: str | None = None,
                  constraint: str | None = None, check_factor: bool = True) -> Downscaler:
    """A Downscaler from a Downscaler, a checkpoint path or a registered model name.

    ``check_factor=False`` leaves the factor to the model family (arbitrary-scale models)."""
    if isinstance(model, Downscaler):
        ds = model
    elif isinstance(model, (str, os.PathLike)) and (Path(model).suffix in (".pt", ".pth") or Path(model).is_file()):
        ds = Downscaler.load(model)
    elif isinstance(model, str):
        try:
            info = model_info(model)
        except UnknownModelError:
            raise UnknownModelError(
                f"unknown model {model!r}: neither a registered model nor an existing checkpoint file."
                f"{suggest(model, list_models())} Registered models: {', '.join(list_models())}"
            ) from None
        if not info["trainable"]:
            if factor is None:
                raise DataError(f"baseline {model!r} needs a factor: predict(model={model!r}, factor=4)")
            return baseline(model, factor, constraint or "none")
        ds = Downscaler.load(model_store.find_latest(variable, model, factor))
    else:
        raise DataError(f"model must be a name, a checkpoint path or a Downscaler, got {type(model).__name__}")
    if check_factor and factor is not None and int(factor) != ds.factor:
        raise DataError(f"factor={factor} but the model was trained for x{ds.factor}; drop factor= or use another model")
    if constraint is not None and constraint != ds.constraint:
        raise DataError(f"the model was trained with constraint {ds.constraint!r}; constraint={constraint!r} cannot "
                        "be changed at prediction time (train another model)")
    return ds


def _stack_inputs(lr: xr.DataArray, extra: list[xr.DataArray], axes) -> tuple[dsa.Array, list[str]]:
    lead = [d for d in lr.dims if d not in axes.spatial]
    order = lead + list(axes.spatial)
    arrays = [lr.transpose(*order)] + [e.transpose(*order) for e in extra]
    data = [a.data if isinstance(a.data, dsa.Array) else dsa.from_array(np.asarray(a.values), chunks=-1) for a in arrays]
    data = [d.rechunk(data[0].chunks) for d in data]
    return dsa.stack(data, axis=0), lead


def _fine_weights(coords: dict, axes) -> np.ndarray | None:
    if axes.kind != "latlon":
        return None
    return latitude_weights(coords[axes.y].values)


def snap_to(out: xr.DataArray, like, axes) -> xr.DataArray:
    """Put ``out`` on the exact fine coordinates of ``like`` (they must agree to 1e-6 of a cell).

    Fine centres rebuilt from coarse bounds differ from the original grid's by
    float round-off, and xarray aligns on exact labels: without this, ``sr - hr``
    silently keeps only the labels that happen to match.
    """
    lax = find_axes(like)
    for dim, ldim in zip(axes.spatial, lax.spatial):
        mine, theirs = out[dim].values.astype("float64"), like[ldim].values.astype("float64")
        step = abs(mine[1] - mine[0]) if mine.size > 1 else 1.0
        if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=0, atol=1e-6 * step):
            raise DataError(
                f"like= grid does not match the prediction on {dim!r}: sizes {mine.size} vs {theirs.size}, "
                f"largest offset {np.max(np.abs(mine - theirs)) if mine.shape == theirs.shape else 'n/a'}; "
                "pass the fine field the coarse input was made from (trimmed the same way)"
            )
        out = out.assign_coords({dim: (dim, like[ldim].values, out[dim].attrs)})
    return out


def predict_dataarray(lr: xr.DataArray, downscaler: Downscaler, *, extra=(), covariates=None, chunks=None,
                      halo: int | None = None, batch_size: int = 16, device: str = "auto",
                      like=None) -> xr.DataArray:
    """Lazy fine-resolution prediction of a coarse DataArray (see :func:`predict`)."""
    if not isinstance(lr, xr.DataArray):
        raise DataError(f"expected a DataArray, got {type(lr).__name__}")
    if not np.issubdtype(lr.dtype, np.number):
        raise DataError(f"{lr.name!r} is not numeric (dtype {lr.dtype})")
    axes = find_axes(lr)
    f = downscaler.factor
    net = downscaler.module
    halo = net.receptive_radius if halo is None else int(halo)
    if halo < net.receptive_radius:
        warnings.warn(f"halo={halo} is below the model's receptive radius ({net.receptive_radius} coarse cells): "
                      "tiles will show seams", stacklevel=3)
    if not isinstance(lr.data, dsa.Array) and bool(lr.isnull().all()):
        raise DataError(f"{lr.name!r} is NaN everywhere: nothing to downscale (check the variable and the time selection)")
    stacked, lead = _stack_inputs(lr, list(extra), axes)
    if chunks is None and not isinstance(lr.data, dsa.Array):
        stacked = stacked.rechunk(_default_chunks(stacked.shape, f, halo))
    elif chunks is not None:
        named = chunks if isinstance(chunks, dict) else {axes.y: chunks, axes.x: chunks}
        spec = (-1,) + tuple(named.get(d, stacked.chunks[i + 1]) for i, d in enumerate(lead + list(axes.spatial)))
        stacked = stacked.rechunk(spec)
    norm = downscaler.meta.get("normalization", {})
    stats = [norm.get("target", {"mean": 0.0, "std": 1.0})] + list(norm.get("predictors", []))
    coords = fine_coordinates(lr, f, axes)
    fine_shape = (lr.sizes[axes.y] * f, lr.sizes[axes.x] * f)
    cov = fold_covariates(as_dataset(covariates), norm.get("covariates", {}), fine_shape, f)
    data = tiled_predict(ModelRunner(downscaler, device), stacked, stats=stats, factor=f, halo=halo,
                         row_weights=_fine_weights(coords, axes), covariates=cov, batch_size=batch_size,
                         periodic_x=wraps_longitude(lr, axes))
    out_coords = {d: lr.coords[d] for d in lead if d in lr.coords}
    out_coords.update(coords)
    for name, c in lr.coords.items():  # scalar and lead-only coordinates (e.g. a time label)
        if name not in out_coords and set(c.dims) <= set(lead):
            out_coords[name] = c
    out = xr.DataArray(data, dims=lead + list(axes.spatial), coords=out_coords, name=lr.name)
    out = out.transpose(*[d for d in lr.dims])
    if like is not None:
        out = snap_to(out, like, axes)
    out.attrs = dict(lr.attrs)
    return add_cf_attrs(out, source=lr, model=downscaler.model_name, factor=f, constraint=downscaler.constraint,
                        checkpoint_hash=downscaler.checkpoint_hash)


def _family_predictor(model):
    """The ``predict_with`` hook of the model's family, or None for the default spatial path."""
    name = model.model_name if isinstance(model, Downscaler) else None
    if name is None and isinstance(model, str) and model in list_models():
        name = model
    if name is None:
        return None
    hook = model_info(name).get("predict_with")
    return resolve_hook(hook) if hook else None


def predict(lr, *, model, factor: int | None = None, var: str | None = None, covariates=None,
            constraint: str | None = None, chunks=None, halo: int | None = None, batch_size: int = 16,
            device: str = "auto", like=None, **options):
    """Downscale ``lr`` (DataArray, or Dataset with ``var``) with ``model``.

    ``model`` is a :class:`Downscaler`, a checkpoint path, a baseline name
    (``"bicubic"``, needs ``factor``) or a trainable model name, in which case
    the latest checkpoint for that variable, model and factor in the model
    store is used. Returns a lazy, Dask-backed DataArray on the fine grid with
    CF metadata and provenance (a Dataset for Dataset input).

    ``like``: a fine field whose exact coordinates the result should carry
    (e.g. the truth ``hr`` that ``lr`` was coarsened from), so that ``sr - hr``
    aligns label for label; rebuilt fine centres otherwise differ from the
    original ones by float round-off.

    ``options``: what the model family accepts beyond these (e.g. ``members=``
    and ``seed=`` for stochastic models); see ``xds.model_info(name)``.
    """
    if not isinstance(model, (Downscaler, str)) or (isinstance(model, str) and model not in list_models()):
        model = resolve_model(model, check_factor=False)  # a checkpoint path: load it once
    hook = _family_predictor(model)
    if hook is not None:
        return hook(lr, model=model, factor=factor, var=var, covariates=covariates, constraint=constraint,
                    chunks=chunks, halo=halo, batch_size=batch_size, device=device, like=like, **options)
    if options:
        raise DataError(f"predict() got options {sorted(options)} that {getattr(model, 'model_name', model)!r} "
                        "does not take; see xds.model_info(name) for what each model family accepts")
    if isinstance(lr, xr.Dataset):
        name = var
        if name is None:
            ds0 = model if isinstance(model, Downscaler) else None
            name = ds0.variable if ds0 is not None and ds0.variable in lr else None
        da = _pick(lr, name)
        downscaler = resolve_model(model, factor=factor, variable=str(da.name), constraint=constraint)
        extra = [_pick(lr, p) for p in downscaler.meta.get("predictors", [])]
        out = predict_dataarray(da, downscaler, extra=extra, covariates=covariates, chunks=chunks, halo=halo,
                                batch_size=batch_size, device=device, like=like)
        result = out.to_dataset()
        result.attrs = dict(lr.attrs)
        return result
    if not isinstance(lr, xr.DataArray):
        raise DataError(f"expected an xarray DataArray or Dataset, got {type(lr).__name__}")
    downscaler = resolve_model(model, factor=factor, variable=None if lr.name is None else str(lr.name),
                               constraint=constraint)
    if downscaler.meta.get("predictors"):
        raise DataError(f"this model also needs predictors {downscaler.meta['predictors']}: pass the Dataset "
                        "(ds.downscale.predict(...)) instead of one DataArray")
    if downscaler.variable and lr.name is not None and str(lr.name) != downscaler.variable:
        warnings.warn(f"model trained on {downscaler.variable!r} applied to {lr.name!r}", stacklevel=2)
    return predict_dataarray(lr, downscaler, covariates=covariates, chunks=chunks, halo=halo,
                             batch_size=batch_size, device=device, like=like)


def _pick(ds: xr.Dataset, name: str | None) -> xr.DataArray:
    return select_variable(ds, name, "input")
