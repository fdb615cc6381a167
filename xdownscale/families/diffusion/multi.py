"""Prediction of a diffusion model of several targets (``fit(model="diffusion", var=[...])``,
trained by :func:`.fit.fit_diffusion_multi`): a Dataset whose member ``k`` is one joint sample of
every target, each projected onto its own coarse field under its own hard constraint.
"""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ...data.covariates import as_dataset, fold_covariates, spatial_coords
from ...data.fill import fill_nearest
from ...engine.contract import PredictRequest
from ...engine.device import resolve_device
from ...engine.field_predict import fine_weights, finish_field
from ...engine.record import MULTI_TARGET_SECTION as SECTION
from ...grid.cf import find_axes
from ...io.cf import fine_coordinates
from ...models.diffusion.schedulers import field_generator
from ..spatial.multi import multi_inputs


def _fields(inputs: list[xr.DataArray], sources: list, meta: dict, factor: int, covariates, axes,
            fine_coords: dict):
    """(N, C, h, w) normalised inputs (+ covariates), (N, K, h, w) the physical field each target
    conserves, (N, K, h, w) its missing cells, and the lead dims."""
    lead = [d for d in inputs[0].dims if d not in axes.spatial]
    norm = meta["normalization"]
    stats = norm["inputs"]
    h, w = (inputs[0].sizes[d] for d in axes.spatial)
    phys = [np.asarray(da.transpose(*lead, *axes.spatial).values, dtype="float64").reshape(-1, h, w)
            for da in inputs]
    x = np.stack([np.nan_to_num((fill_nearest(v) - s["mean"]) / s["std"], nan=0.0) for v, s in zip(phys, stats)],
                 axis=1)
    cov = fold_covariates(as_dataset(covariates), norm.get("covariates", {}), (h * factor, w * factor), factor,
                          spatial_coords(fine_coords, axes.spatial))
    if cov is not None:
        x = np.concatenate([x, np.broadcast_to(cov, (len(x), *cov.shape))], axis=1)
    zeros = np.zeros_like(phys[0])
    coarse = np.stack([np.nan_to_num(phys[s], nan=stats[s]["mean"]) if s is not None else zeros for s in sources],
                      axis=1)
    missing = np.stack([~np.isfinite(phys[s]) if s is not None else zeros.astype(bool) for s in sources], axis=1)
    return x.astype("float32"), coarse.astype("float32"), missing, lead


def predict_diffusion_multi(request: PredictRequest, downscaler, opts) -> xr.Dataset:
    """``members`` joint samples of every target as a Dataset ``(member, *lead, y, x)`` per target
    (``opts``: :class:`~.options.DiffusionPredictOptions`); field ``n`` is drawn with the generator
    seeded by ``(seed, n)``, as on the single-target path."""
    from tqdm.auto import tqdm

    info = downscaler.meta[SECTION]
    targets = list(info["targets"])
    members, seed = int(opts.members), int(opts.seed)
    inputs, sources = multi_inputs(request, downscaler)
    f, net = downscaler.factor, downscaler.module
    dev = resolve_device(request.device)
    net.to(dev).eval()
    axes = find_axes(inputs[0])
    coords = fine_coordinates(inputs[0], f, axes)
    x, coarse, missing, lead = _fields(inputs, sources, downscaler.meta, f, request.covariates, axes, coords)
    rows = fine_weights(coords, axes)
    weights = None if rows is None else torch.from_numpy(rows.astype("float32")).view(1, 1, -1, 1).to(dev)
    sampler = net.make_sampler(opts.scheduler, opts.steps, opts.eta)
    bar = tqdm(total=len(x) * sampler.steps, disable=not opts.progress, unit="step",
               desc=f"diffusion {sampler.name} x{members}")
    out = []
    for n in range(len(x)):
        y = net.sample(torch.from_numpy(x[n : n + 1]).to(dev), weights, torch.from_numpy(coarse[n : n + 1]).to(dev),
                       members=members, sampler=sampler, generator=field_generator(seed, n), tile=opts.tile,
                       overlap=opts.overlap, batch_size=request.batch_size, callback=lambda _: bar.update(1))
        out.append(y.float().cpu().numpy())
    bar.close()
    data = np.stack(out, axis=2)  # (member, K, N, H, W)
    data = np.where(missing.repeat(f, axis=2).repeat(f, axis=3).transpose(1, 0, 2, 3)[None], np.nan, data)
    lead_shape = [inputs[0].sizes[d] for d in lead]
    data = data.reshape(members, len(targets), *lead_shape, *data.shape[-2:])
    sampler_attrs = {"xdownscale_members": np.int32(members), "xdownscale_seed": np.int32(seed),
                     "xdownscale_sampler": f"{sampler.name} steps={sampler.steps}"
                                           + (f" eta={sampler.eta:g}" if sampler.name == "ddim" else "")}
    result = {}
    for k, name in enumerate(targets):
        src = inputs[sources[k]] if sources[k] is not None else inputs[0]
        template = src.rename(name).expand_dims(member=members)
        template.attrs = dict(info.get("attrs", {}).get(name, {}))  # the target's own CF attributes
        like = request.like[name] if isinstance(request.like, xr.Dataset) else request.like
        da = finish_field(data[:, k], template, downscaler, coords, ["member", *lead],
                          constraint=info["constraints"][name], like=like)
        da.attrs.update(sampler_attrs)
        result[name] = da.assign_coords(member=("member", np.arange(members), {"long_name": "ensemble member"}))
    ds = xr.Dataset(result)
    ds.attrs = dict(request.lr.attrs, ensemble_members=members, ensemble_seed=seed)
    return ds
