"""``predict(model="diffusion", members=N, steps=K, seed=s, scheduler="ddim")``: ensembles as xarray.

Every coarse field (each time step) gets ``members``
samples drawn together (members and tiles batched through the denoiser); the
result is a computed DataArray ``(member, *lr.dims)`` on the fine grid with
CF metadata and provenance (sampler, steps, seed). The ensemble mean is
``out.mean("member")``. Samples are reproducible: field ``n`` is drawn from a
generator seeded by ``(seed, n)``, whatever the batch size.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ...data.covariates import as_dataset, fold_covariates, spatial_coords
from ...data.fill import fill_nearest
from ...data.normalize import scadd_bounds
from ...data.pairs import select_variable
from ...engine.contract import PredictRequest, parse_options
from ...engine.device import resolve_device
from ...engine.field_predict import fine_weights, snap_to
from ...engine.resolve import resolve_model
from ...errors import DataError
from ...grid.cf import find_axes
from ...io.cf import add_cf_attrs, fine_coordinates
from ...models.diffusion.schedulers import field_generator
from ...nn.constraints import HARD_CONSTRAINTS, make_constraint
from ..spatial.multi import is_multi_target
from .multi import predict_diffusion_multi
from .options import DiffusionPredictOptions

log = logging.getLogger("xdownscale")


def _inputs(lr: xr.DataArray, extra: list, meta: dict, factor: int, covariates, axes, fine_coords: dict):
    """(N, C, h, w) normalised inputs, (N, 1, h, w) physical coarse field, NaN mask, lead dims."""
    lead = [d for d in lr.dims if d not in axes.spatial]
    order = lead + list(axes.spatial)
    norm = meta.get("normalization", {})
    stats = [norm.get("target", {"mean": 0.0, "std": 1.0})] + list(norm.get("predictors", []))
    fields = [np.asarray(a.transpose(*order).values, dtype="float64") for a in [lr, *extra]]
    h, w = fields[0].shape[-2:]
    fields = [f.reshape(-1, h, w) for f in fields]
    missing = ~np.isfinite(fields[0])
    coarse = np.where(missing, stats[0]["mean"], fields[0])
    x = np.stack([np.nan_to_num((fill_nearest(f) - s["mean"]) / s["std"], nan=0.0) for f, s in zip(fields, stats)],
                 axis=1)
    cov = fold_covariates(as_dataset(covariates), norm.get("covariates", {}), (h * factor, w * factor), factor,
                          spatial_coords(fine_coords, axes.spatial))
    if cov is not None:
        x = np.concatenate([x, np.broadcast_to(cov, (len(x), *cov.shape))], axis=1)
    return x.astype("float32"), coarse[:, None].astype("float32"), missing, lead


def predict_diffusion(request: PredictRequest):
    """Diffusion ensemble of a coarse DataArray (or Dataset with ``var``); see the module docstring.

    Options (:class:`~.options.DiffusionPredictOptions`): ``members`` (1), ``steps`` (the
    checkpoint's sampler steps), ``seed`` (0), ``scheduler`` ("ddim" or "ddpm"; default: the
    checkpoint's), ``eta`` (DDIM noise), ``tile``/``overlap`` (fine cells; default: the training
    patch and a quarter of it), ``progress``, ``timing`` (a dict filled with the sampling wall and
    CPU seconds). ``constraint``: a hard constraint ("add", "mult", "softmax", "scadd") projected
    onto every member at the end of sampling; default: the one used in ``fit``.
    """
    opts = parse_options(DiffusionPredictOptions, request.options, model="diffusion", call="predict")
    if is_multi_target(request.model):  # several targets: a Dataset of joint samples
        return predict_diffusion_multi(request, request.model, opts)
    members, seed = int(opts.members), int(opts.seed)
    lr, model, var, factor, constraint = request.lr, request.model, request.var, request.factor, request.constraint
    covariates, batch_size, device, like = request.covariates, request.batch_size, request.device, request.like
    source = lr
    if isinstance(lr, xr.Dataset):
        probe = model if not isinstance(model, str) else None
        name = var or (probe.variable if probe is not None and probe.variable in lr else None)
        lr = select_variable(lr, name, "input")
    elif not isinstance(lr, xr.DataArray):
        raise DataError(f"expected an xarray DataArray or Dataset, got {type(lr).__name__}")
    ds = resolve_model(model, factor=factor, variable=None if lr.name is None else str(lr.name), field=lr,
                       allow_other_variable=request.allow_other_variable)
    predictors = ds.meta.get("predictors", [])
    if predictors and not isinstance(source, xr.Dataset):
        raise DataError(f"this model also needs predictors {predictors}: pass the Dataset instead of one DataArray")
    extra = [select_variable(source, p) for p in predictors]
    f, net = ds.factor, ds.module
    dev = resolve_device(device)
    net.to(dev).eval()
    axes = find_axes(lr)
    coords = fine_coordinates(lr, f, axes)
    x, coarse, missing, lead = _inputs(lr, extra, ds.meta, f, covariates, axes, coords)
    rows = fine_weights(coords, axes)
    weights = None if rows is None else torch.from_numpy(rows.astype("float32")).view(1, 1, -1, 1).to(dev)
    sampler = net.make_sampler(opts.scheduler, opts.steps, opts.eta)
    name = net.constraint_name if constraint is None else constraint
    kwargs = None
    if name == "scadd":
        kwargs = net.constraint_kwargs or scadd_bounds(ds.meta["normalization"]["target"])
    bar = tqdm(total=len(x) * sampler.steps, disable=not opts.progress, unit="step",
               desc=f"diffusion {sampler.name} x{members}")
    t0, c0, out = time.perf_counter(), time.process_time(), []
    for n in range(len(x)):
        y = net.sample(torch.from_numpy(x[n : n + 1]).to(dev), weights, torch.from_numpy(coarse[n : n + 1]).to(dev),
                       members=members, sampler=sampler, generator=field_generator(seed, n),
                       tile=opts.tile, overlap=opts.overlap, batch_size=batch_size,
                       constraint=name, constraint_kwargs=kwargs, callback=lambda _: bar.update(1))
        out.append(y[:, 0].float().cpu().numpy())
    bar.close()
    seconds = time.perf_counter() - t0
    if isinstance(opts.timing, dict):
        opts.timing.update(seconds=seconds, cpu_seconds=time.process_time() - c0, fields=len(x),
                                 members=members, steps=sampler.steps,
                                 per_member_s=seconds / (len(x) * members),
                                 per_step_s=seconds / (len(x) * sampler.steps))
    data = np.stack(out, axis=1)  # (member, N, H, W)
    if missing.any():
        data = np.where(missing.repeat(f, axis=1).repeat(f, axis=2)[None], np.nan, data)
    lead_shape = [lr.sizes[d] for d in lead]
    data = data.reshape(members, *lead_shape, *data.shape[-2:])
    out_coords = {"member": ("member", np.arange(members))}
    out_coords.update({d: lr.coords[d] for d in lead if d in lr.coords})
    out_coords.update(coords)
    for cname, c in lr.coords.items():
        if cname not in out_coords and set(c.dims) <= set(lead):
            out_coords[cname] = c
    da = xr.DataArray(data, dims=["member", *lead, *axes.spatial], coords=out_coords, name=lr.name)
    da = da.transpose("member", *lr.dims)
    if like is not None:
        da = snap_to(da, like, axes)
    da.attrs = dict(lr.attrs)
    extra_attrs = {"xdownscale_members": np.int32(members), "xdownscale_seed": np.int32(seed),
                   "xdownscale_sampler": f"{sampler.name} steps={sampler.steps}"
                                         + (f" eta={sampler.eta:g}" if sampler.name == "ddim" else "")}
    da = add_cf_attrs(da, source=lr, model=ds.model_name, factor=f, constraint=name or "none",
                      checkpoint_hash=ds.checkpoint_hash, extra=extra_attrs)
    if isinstance(source, xr.Dataset):
        result = da.to_dataset()
        result.attrs = dict(source.attrs)
        return result
    return da


def conserve(ens: xr.DataArray, lr: xr.DataArray, constraint: str = "add", **constraint_kwargs) -> xr.DataArray:
    """Hard projection of every member of ``ens`` (fine, with or without ``member``) onto ``lr``.

    The same projection ``predict(..., constraint=...)`` applies at the end of
    sampling, for ensembles already drawn (e.g. to compare both on one ensemble)."""
    if constraint not in HARD_CONSTRAINTS:
        raise DataError(f"constraint {constraint!r} is not a hard projection; choose one of "
                        f"{', '.join(HARD_CONSTRAINTS)}")
    axes, lax = find_axes(ens), find_axes(lr)
    factor = ens.sizes[axes.y] // lr.sizes[lax.y]
    if factor < 1 or ens.sizes[axes.y] != factor * lr.sizes[lax.y] or ens.sizes[axes.x] != factor * lr.sizes[lax.x]:
        raise DataError(f"ens {dict(ens.sizes)} is not an integer refinement of lr {dict(lr.sizes)}")
    lead = [d for d in lr.dims if d not in lax.spatial]
    order = [d for d in ens.dims if d not in axes.spatial and d not in lead] + lead
    e = ens.transpose(*order, *axes.spatial)
    y = torch.from_numpy(np.asarray(e.values, dtype="float64").reshape(-1, 1, *e.shape[-2:]))
    c = np.asarray(lr.transpose(*lead, *lax.spatial).values, dtype="float64").reshape(-1, 1, *lr.shape[-2:])
    reps = y.shape[0] // c.shape[0]
    coarse = torch.from_numpy(np.tile(c, (reps, 1, 1, 1)))
    rows = fine_weights(fine_coordinates(lr, factor, lax), lax)
    w = None if rows is None else torch.from_numpy(rows).view(1, 1, -1, 1)
    layer = make_constraint(constraint, factor, **constraint_kwargs).double()
    out = layer.project(y, coarse, w).numpy().reshape(e.shape).astype(ens.dtype)
    res = e.copy(data=out).transpose(*ens.dims)
    res.attrs = {**ens.attrs, "xdownscale_constraint": constraint}
    return res
