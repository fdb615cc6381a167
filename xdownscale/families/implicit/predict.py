"""Prediction with an arbitrary-scale (``liif``) model onto a factor, any grid, or points.

``predict(lr, model=m, factor=2.5)``: the source cells split ``2.5`` times per axis.
``predict(lr, model=m, target=grid)``: any rectilinear lat/lon (or y/x) grid inside the
source domain, offset or not; each target cell centre is queried with the target
spacing as cell size. ``predict(lr, model=m, points=stations)``: values at scattered
points (a Dataset or DataArray holding ``lat``/``lon``, e.g. along a ``station`` dim).

Grid targets are lazy and tiled: each Dask chunk of the target needs only the coarse
window under it plus a halo of the model's receptive radius, so any target size
streams. ``constraint=`` (``add``, ``mult``, ...) applies the area-weighted hard
constraint of :mod:`xdownscale.nn.constraints` where the target nests the source
(an integer factor), tile by tile on whole coarse cells.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import dask.array as dsa
import numpy as np
import torch
import xarray as xr

from ...data.fill import fill_nearest
from ...data.pairs import select_variable
from ...engine.contract import PredictRequest, parse_options
from ...engine.device import resolve_device
from ...engine.downscaler import Downscaler
from ...engine.field_predict import snap_to
from ...engine.resolve import resolve_model
from ...errors import DataError
from ...grid.cf import cell_bounds, coordinate_values, find_axes, latitude_weights, regular_spacing
from ...io.cf import add_cf_attrs, fine_coordinates
from ...nn.constraints import HARD_CONSTRAINTS, make_constraint
from .options import ImplicitPredictOptions

DEFAULT_TILE = 256  # target cells per side of a chunk
_LAT_NAMES, _LON_NAMES = ("lat", "latitude"), ("lon", "longitude")


@dataclass
class Axis:
    """One regular source axis: centres ``c0 + i * step`` for i < n; ``wrap`` for longitudes."""

    c0: float
    step: float
    n: int
    wrap: bool

    def index(self, v: np.ndarray) -> np.ndarray:
        """Fractional source index of coordinate values (0 = first centre); longitudes wrapped."""
        p = (np.asarray(v, dtype="float64") - self.c0) / self.step
        if self.wrap:
            period = 360.0 / abs(self.step)
            shifted = p - np.round((p - (self.n - 1) / 2) / period) * period
            p = np.where(np.abs(shifted - (self.n - 1) / 2) < np.abs(p - (self.n - 1) / 2), shifted, p)
        return p

    def check_inside(self, p: np.ndarray, name: str, v: np.ndarray) -> None:
        bad = (p < -0.5 - 1e-6) | (p > self.n - 0.5 + 1e-6) | ~np.isfinite(p)
        if bad.any():
            lo, hi = sorted((self.c0 - 0.5 * self.step, self.c0 + (self.n - 0.5) * self.step))
            raise DataError(f"{int(bad.sum())} target {name} value(s) (e.g. {float(np.asarray(v)[bad].flat[0]):g}) lie "
                            f"outside the source domain [{lo:g}, {hi:g}] of {name!r}: the model can only fill in "
                            "detail inside the coarse field; crop the target or give a larger coarse field")


def _source_axis(lr: xr.DataArray, dim: str, is_lon: bool) -> Axis:
    v = coordinate_values(lr, dim)
    if v.size < 2:
        raise DataError(f"the coarse field needs at least 2 cells along {dim!r}")
    step = regular_spacing(v, dim)
    return Axis(float(v[0]), step, v.size, is_lon)


def _cells(values: np.ndarray, axis: Axis) -> np.ndarray:
    """Cell size of each target cell, in source cells (from neighbour spacing)."""
    v = np.asarray(values, dtype="float64")
    if v.size < 2:
        return np.ones_like(v)
    return np.abs(np.gradient(v)) / abs(axis.step)


def _normalised(p: np.ndarray, start: int, size: int) -> np.ndarray:
    """Fractional source index -> [-1, 1] coordinate inside a window of ``size`` cells from ``start``."""
    return -1 + (2 * (p - start) + 1) / size


def _factor_coords(lr: xr.DataArray, factor: float, axes) -> tuple[dict, int | None]:
    """Target coordinates for a scale factor; the integer factor when the target nests the source."""
    if factor < 1:
        raise DataError(f"factor must be >= 1 (a finer target), got {factor}")
    if abs(factor - round(factor)) < 1e-9:
        return fine_coordinates(lr, int(round(factor)), axes), int(round(factor))
    like = fine_coordinates(lr, 1, axes)
    out = {}
    for dim in axes.spatial:
        b = cell_bounds(lr, dim, is_latitude=axes.kind == "latlon" and dim == axes.y)
        m = int(round(b.shape[0] * factor))
        edges = np.linspace(b[0, 0], b[-1, 1], m + 1)
        out[dim] = xr.DataArray(0.5 * (edges[1:] + edges[:-1]), dims=(dim,), attrs=like[dim].attrs, name=dim)
    return out, None


def _nesting_factor(lr, ty: np.ndarray, tx: np.ndarray, axes) -> int | None:
    """k if the target grid is exactly the k-fold split of the source cells, else None."""
    k = len(ty) / lr.sizes[axes.y]
    if k != int(k) or k < 1 or len(tx) != lr.sizes[axes.x] * k:
        return None
    ref = fine_coordinates(lr, int(k), axes)
    for dim, t in zip(axes.spatial, (ty, tx)):
        r = ref[dim].values.astype("float64")
        if not np.allclose(t, r, rtol=0, atol=1e-6 * abs(r[1] - r[0]) if r.size > 1 else 1e-9):
            return None
    return int(k)


def _point_coords(points) -> tuple[xr.DataArray, xr.DataArray]:
    if not isinstance(points, (xr.Dataset, xr.DataArray)):
        raise DataError(f"points must be an xarray Dataset/DataArray holding lat and lon, got {type(points).__name__}")
    names = list(points.variables) if isinstance(points, xr.Dataset) else list(points.coords)

    def pick(choices, std):
        for n in names:
            if str(n).lower() in choices or points[n].attrs.get("standard_name") == std:
                return points[n]
        raise DataError(f"points has no {std} variable (looked for {', '.join(choices)} or standard_name={std!r}); "
                        f"it has {names}")

    lat, lon = pick(_LAT_NAMES, "latitude"), pick(_LON_NAMES, "longitude")
    if lat.dims != lon.dims:
        raise DataError(f"points latitude dims {lat.dims} differ from longitude dims {lon.dims}")
    return lat, lon


class _Runner:
    """The network on its device, run on a coarse window (one channel per input) for a set of
    queries; one output per target (a single-target model has one)."""

    def __init__(self, downscaler: Downscaler, device):
        self.net = downscaler.module.to(resolve_device(device)).eval()
        self.device = next(self.net.parameters()).device
        norm = downscaler.meta.get("normalization", {})
        # each input channel as it was normalised in training (a multi-target model lists them)
        stats = (downscaler.config.get("inputs") or norm.get("targets")
                 or [norm.get("target", {"mean": 0.0, "std": 1.0})])
        self.means = np.array([float(s["mean"]) for s in stats])
        self.stds = np.array([float(s["std"]) for s in stats])

    @torch.inference_mode()
    def __call__(self, window: np.ndarray, queries: np.ndarray, batch_size: int) -> np.ndarray:
        """window (N, C, h, w) physical; queries (Q, 4). Returns (N, K, Q) physical, float64."""
        x = np.nan_to_num((fill_nearest(window) - self.means[:, None, None]) / self.stds[:, None, None], nan=0.0)
        q = torch.from_numpy(queries.astype("float32")).to(self.device)
        out = []
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i : i + batch_size].astype("float32")).to(self.device)
            y = self.net(xb, q.unsqueeze(0).expand(len(xb), -1, -1)).double()
            out.append((y[:, None] if y.dim() == 2 else y.permute(0, 2, 1)).cpu().numpy())
        return np.concatenate(out, axis=0)


def _masked(out: np.ndarray, near: np.ndarray, masks: list) -> np.ndarray:
    """``out`` (N, K, ...) missing (NaN) in output j where input channel ``masks[j]`` of ``near``
    (N, C, ...) is (its source: the coarse field of the same variable), or where every input is (None)."""
    finite = np.isfinite(near)
    keep = np.stack([finite[:, s] if s is not None else finite.any(axis=1) for s in masks], axis=1)
    return np.where(keep, out, np.nan)


def _grid_block(runner, values, axy: Axis, axx: Axis, py, px, cy, cx, halo, batch_size, layers, k, wrows, masks):
    """The prediction of one target tile (N, K, ty, tx): coarse window + halo, queries, and for
    output j ``layers[j]``: None or (its constraint layer, the input channel that layer conserves).
    A cell is missing in output j where input channel ``masks[j]`` is (:func:`_masked`)."""
    y0 = max(int(np.floor(py.min())) - halo, 0)
    y1 = min(int(np.ceil(py.max())) + halo + 1, axy.n)
    x0 = max(int(np.floor(px.min())) - halo, 0)
    x1 = min(int(np.ceil(px.max())) + halo + 1, axx.n)
    window = values[:, :, y0:y1, x0:x1]
    uy, ux = _normalised(py, y0, y1 - y0), _normalised(px, x0, x1 - x0)
    qy, qx = np.meshgrid(uy, ux, indexing="ij")
    gy, gx = np.meshgrid(cy, cx, indexing="ij")
    q = np.stack([qy.ravel(), qx.ravel(), gy.ravel(), gx.ravel()], axis=-1)
    out = runner(window, q, batch_size).reshape(len(values), -1, len(py), len(px))
    iy, ix = np.clip(np.round(py).astype(int), 0, axy.n - 1), np.clip(np.round(px).astype(int), 0, axx.n - 1)
    nearest = values[:, :, iy][..., ix]
    # first fine centre of coarse cell i sits at fractional index i - 0.5 + 0.5 / k
    cy0 = int(round(py[0] + 0.5 - 0.5 / k)) if k else 0
    cx0 = int(round(px[0] + 0.5 - 0.5 / k)) if k else 0
    w = None if wrows is None else torch.from_numpy(wrows).view(1, 1, -1, 1)
    for j, item in enumerate(layers):
        if item is not None:
            layer, s = item
            coarse = values[:, s, cy0 : cy0 + len(py) // k, cx0 : cx0 + len(px) // k]
            coarse_t = torch.from_numpy(np.nan_to_num(coarse, nan=runner.means[s])[:, None])
            out[:, j] = layer.project(torch.from_numpy(out[:, j : j + 1]), coarse_t, w)[:, 0].numpy()
    return _masked(out, nearest, masks)


def _tiles(n: int, tile: int, k: int | None) -> tuple[int, ...]:
    if k:
        tile = max(k, (tile // k) * k)  # whole coarse cells per tile, so each tile conserves on its own
    return tuple(min(tile, n - s) for s in range(0, n, tile))


def _tile_size(chunks, dim) -> int:
    if chunks is None:
        return DEFAULT_TILE
    if isinstance(chunks, dict):
        return int(chunks.get(dim, DEFAULT_TILE))
    return int(chunks)


def predict_liif(request: PredictRequest):
    """Prediction with ``liif``: see the module docstring. Returns a lazy DataArray on the target
    grid (a Dataset for Dataset input), or the values at ``points`` (computed). Options:
    :class:`~.options.ImplicitPredictOptions` (``target=``, ``points=``, ``point_cell=``)."""
    opts = parse_options(ImplicitPredictOptions, request.options, model="liif", call="predict")
    target, points = opts.target, opts.points
    lr, model, var, factor, constraint, covariates = (request.lr, request.model, request.var, request.factor,
                                                      request.constraint, request.covariates)
    like = request.like
    if covariates is not None:
        raise DataError("liif takes the target variable only: drop covariates=")
    if sum(a is not None for a in (factor, target, points)) != 1:
        if factor is None and target is None and points is None and like is not None:
            target = like
        else:
            raise DataError("give exactly one of factor= (e.g. 2.5), target= (a grid) or points= (stations) "
                            "to predict with 'liif'")
    if isinstance(lr, xr.Dataset):
        name = var
        if name is None and isinstance(model, Downscaler) and model.variable in lr:
            name = model.variable
        da = select_variable(lr, name, "input")
        out = predict_liif(dataclasses.replace(request, lr=da, var=None, factor=factor, like=like,
                                               options={**request.options, "target": target}))
        result = out.to_dataset()
        result.attrs = dict(lr.attrs)
        return result
    if not isinstance(lr, xr.DataArray):
        raise DataError(f"expected an xarray DataArray or Dataset, got {type(lr).__name__}")
    downscaler = resolve_model(model, variable=None if lr.name is None else str(lr.name), check_factor=False,
                               field=lr, allow_other_variable=request.allow_other_variable)
    if downscaler.model_name != "liif":
        raise DataError(f"predict_liif needs a 'liif' model, got {downscaler.model_name!r}")
    if constraint not in (None, "none") and constraint not in HARD_CONSTRAINTS:
        raise DataError(f"constraint={constraint!r}: at prediction liif applies a hard one: {HARD_CONSTRAINTS}")
    return downscale_fields([lr], downscaler, request, dataclasses.replace(opts, target=target),
                            [(constraint, 0)])[0]


def downscale_fields(fields: list[xr.DataArray], downscaler: Downscaler, request: PredictRequest,
                     opts: ImplicitPredictOptions, constraints: list,
                     outputs: list | None = None) -> list[xr.DataArray]:
    """Every output of a ``liif`` network whose input channels are ``fields`` (coarse fields on one
    grid): output ``j`` is named and described as ``outputs[j]`` (default ``fields[j]``; a lazy
    DataArray on the target grid, or its values at ``opts.points``), under the hard constraint
    ``constraints[j] = (name or None, index of its source field or None)``: the field it conserves
    and whose missing cells it leaves missing."""
    lr, factor, chunks, like = fields[0], request.factor, request.chunks, request.like
    outputs = list(fields if outputs is None else outputs)
    masks = [src for _, src in constraints]
    target, points = opts.target, opts.points
    axes = find_axes(lr)
    lead = [d for d in lr.dims if d not in axes.spatial]
    stacked = []
    for da in fields:
        if not np.issubdtype(da.dtype, np.number):
            raise DataError(f"{da.name!r} is not numeric (dtype {da.dtype})")
        v = np.asarray(da.transpose(*lead, *axes.spatial).values, dtype="float64").reshape(-1, *lr.shape[-2:])
        if not np.isfinite(v).any():
            raise DataError(f"{da.name!r} is NaN everywhere: nothing to downscale")
        stacked.append(v)
    values = np.stack(stacked, axis=1)  # (N, C, h, w)
    is_ll = axes.kind == "latlon"
    axy, axx = _source_axis(lr, axes.y, False), _source_axis(lr, axes.x, is_ll)
    runner = _Runner(downscaler, request.device)
    radius = downscaler.module.receptive_radius
    halo = radius if request.halo is None else int(request.halo)
    if halo < radius:
        warnings.warn(f"halo={halo} is below the model's receptive radius ({radius} coarse cells): tiles will show "
                      "seams", stacklevel=4)
    lead_shape = tuple(lr.sizes[d] for d in lead)
    lead_coords = {n: c for n, c in lr.coords.items() if set(c.dims) <= set(lead)}
    if points is not None:
        return _predict_points(outputs, runner, values, axy, axx, points, opts.point_cell, lead, lead_shape,
                               lead_coords, request.batch_size, downscaler, masks)
    if factor is not None:
        coords, k = _factor_coords(lr, float(factor), axes)
        ydim, xdim = axes.spatial
    else:
        taxes = find_axes(target)
        ydim, xdim = taxes.spatial
        coords = {d: target[d] if d in target.coords else xr.DataArray(coordinate_values(target, d), dims=(d,))
                  for d in (ydim, xdim)}
        k = None
    ty, tx = (coordinate_values(xr.Dataset(coords=coords), d) for d in (ydim, xdim))
    py, px = axy.index(ty), axx.index(tx)
    axy.check_inside(py, ydim, ty)
    axx.check_inside(px, xdim, tx)
    cy, cx = _cells(ty, axy), _cells(tx, axx)
    if k is None:
        k = _nesting_factor(lr, ty, tx, axes) if target is not None else None
    norm = downscaler.meta["normalization"]
    bounds = norm.get("targets") or [norm["target"]]
    layers: list = []
    for j, (name, src) in enumerate(constraints):
        if name in (None, "none"):
            layers.append(None)
            continue
        if k is None:
            raise DataError(f"constraint={name!r} needs a target that nests the source (an integer factor, "
                            "e.g. factor=2 or 4); this target does not")
        kwargs = {"lower": float(bounds[j]["min"]), "upper": float(bounds[j]["max"])} if name == "scadd" else {}
        layers.append((make_constraint(name, k, **kwargs), src))
    wrows = latitude_weights(ty) if is_ll else None
    ychunks, xchunks = _tiles(len(ty), _tile_size(chunks, ydim), k), _tiles(len(tx), _tile_size(chunks, xdim), k)
    n_out = len(constraints)

    def run(block_info=None):
        (ys, ye), (xs, xe) = block_info[None]["array-location"][-2:]
        wr = None if wrows is None else wrows[ys:ye]
        out = _grid_block(runner, values, axy, axx, py[ys:ye], px[xs:xe], cy[ys:ye], cx[xs:xe], halo,
                          request.batch_size, layers, k, wr, masks)
        return out.reshape(*lead_shape, n_out, ye - ys, xe - xs).astype("float32")

    template_chunks = tuple((s,) for s in lead_shape) + ((n_out,), ychunks, xchunks)
    data = dsa.map_blocks(run, chunks=template_chunks, dtype="float32",
                          meta=np.empty((0,) * (len(lead_shape) + 3), dtype="float32"))
    order = [ydim if d == axes.y else xdim if d == axes.x else d for d in lr.dims]
    scales = (float(np.median(1 / cy)), float(np.median(1 / cx)))
    outs = []
    for j, (name, _) in enumerate(constraints):
        out = xr.DataArray(data[..., j, :, :], dims=lead + [ydim, xdim], coords={**lead_coords, **coords},
                           name=outputs[j].name).transpose(*order)
        if like is not None and k is not None:
            out = snap_to(out, like[outputs[j].name] if isinstance(like, xr.Dataset) else like, find_axes(out))
        outs.append(_cf(out, outputs[j], downscaler, k, name, scales))
    return outs


def _predict_points(fields, runner, values, axy, axx, points, point_cell, lead, lead_shape, lead_coords, batch_size,
                    downscaler, masks):
    lat, lon = _point_coords(points)
    py, px = axy.index(lat.values.ravel()), axx.index(lon.values.ravel())
    axy.check_inside(py, "latitude", lat.values.ravel())
    axx.check_inside(px, "longitude", lon.values.ravel())
    top = max(getattr(downscaler.module, "scales", [1.0, 8.0]))
    cell = float(point_cell) if point_cell is not None else 1.0 / top
    q = np.stack([_normalised(py, 0, axy.n), _normalised(px, 0, axx.n), np.full(py.shape, cell),
                  np.full(py.shape, cell)], axis=-1)
    chunk = 65536
    out = np.concatenate([runner(values, q[i : i + chunk], batch_size) for i in range(0, len(q), chunk)], axis=2)
    near = values[:, :, np.clip(np.round(py).astype(int), 0, axy.n - 1), np.clip(np.round(px).astype(int), 0,
                                                                                   axx.n - 1)]
    out = _masked(out, near, masks)
    pcoords = {n: c for n, c in (points.coords.items()) if set(c.dims) <= set(lat.dims)}
    pcoords.update({lat.name: (lat.dims, lat.values, lat.attrs), lon.name: (lon.dims, lon.values, lon.attrs)})
    results = []
    for j in range(out.shape[1]):
        res = xr.DataArray(out[:, j].reshape(*lead_shape, *lat.shape).astype("float32"), dims=lead + list(lat.dims),
                           coords={**lead_coords, **pcoords}, name=fields[j].name)
        res = _cf(res, fields[j], downscaler, None, None, (1 / cell, 1 / cell))
        res.attrs["featureType"] = "point" if not lead else "timeSeries"
        results.append(res)
    return results


def _cf(out: xr.DataArray, lr: xr.DataArray, downscaler: Downscaler, k, constraint, scales) -> xr.DataArray:
    """CF attributes and provenance; ``xdownscale_factor`` is the nesting factor (0: not nested)."""
    out.attrs = dict(lr.attrs)
    out = add_cf_attrs(out, source=lr, model=downscaler.model_name, factor=k or 0, constraint=constraint or "none",
                       checkpoint_hash=downscaler.checkpoint_hash,
                       extra={"xdownscale_scale": np.asarray(scales, dtype="float32")})
    lines = out.attrs["history"].split("\n")
    if not k:
        lines[-1] = lines[-1].replace(" downscaled x0 ", f" downscaled by scale {scales[0]:.4g} along y and "
                                      f"{scales[1]:.4g} along x (arbitrary scale) ")
    out.attrs["history"] = "\n".join(lines)
    return out
