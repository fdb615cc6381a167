"""Training one ``liif`` model over a range of scales, including non-integer ones.

Each training sample draws a scale ``s`` uniformly in ``scales`` (e.g. 1.5..8),
cuts a fine window of ``round(p * s)`` cells (``p`` = ``lr_patch`` coarse cells),
makes its coarse input by the *exact* conservative (area-weighted) resampling of
:func:`resample_area` (a fine cell straddling two coarse cells is split between
them by overlap length, rows weighted by cos(latitude)), optionally degrades the
coarse input (``degradation="high-order"``: two rounds of Gaussian blur,
down-and-up resizing and noise, so a model trained on clean coarsenings copes
with real, blurrier or noisier coarse data), and asks for ``queries`` random fine
cells of the window. ``integer_share`` of the batches are drawn at the whole factors in the
range instead (2, 3, 4, ...): most predictions ask for one of them. By default all of them, or half
for a target that stops at zero (rain), where the scales in between helped (:func:`integer_share`;
a uniform draw alone left Tair x4 at 0.888x bicubic, half at whole factors 0.856x, all 0.800x).
The scale modulator carries the model between the whole factors. The generic trainer
(:func:`xdownscale.engine.trainer.train`) runs the loop: the network takes ``(x, queries,
coarse)`` like any other.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
import torch
import xarray as xr

from ...data.fill import fill_nearest
from ...data.normalize import residual_std, zero_bounded
from ...data.patches import SeededSamples
from ...engine.contract import FitRequest, parse_options, target_names
from ...engine.device import resolve_device
from ...engine.multi_setup import as_targets, prepare_request
from ...engine.setup import finish, prepare
from ...engine.trainer import train
from ...errors import DataError
from ...grid.cf import find_axes
from ...models.liif import ANY_SCALE, LIIFNet, MultiTargetLIIFNet
from .degradation import degrade
from .options import LiifOptions
from .pair import PairSampleDataset

log = logging.getLogger("xdownscale")
MIN_WINDOW = 4  # the smallest coarse training window (cells a side) that a large scale may shrink to
# Validation windows by default: each costs as much as a training window (the decoder runs per query),
# and a quarter of an epoch (~1,800 windows on 558 hours) made validation half of the fit time.
VAL_WINDOWS = 512


# ---------------------------------------------------------------- exact conservative resampling
def overlap_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """(n_coarse, n_fine): length of fine cell j inside coarse cell i, when ``n_coarse`` equal
    coarse cells span the same interval as ``n_fine`` equal fine cells (any real ratio)."""
    r = n_fine / n_coarse
    lo = np.arange(n_coarse)[:, None] * r
    j = np.arange(n_fine)[None, :]
    return np.clip(np.minimum(j + 1, lo + r) - np.maximum(j, lo), 0.0, None)


def resample_area(values: np.ndarray, shape: tuple[int, int], row_weights: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted mean of ``values`` (..., H, W) onto a coarser ``shape`` (h, w) covering the
    same domain, for any real ratio H/h, W/w. NaN cells are left out; ``row_weights`` (H,) are the
    relative fine cell areas (cos latitude). Conserves the area mean exactly (float round-off)."""
    *lead, hh, ww = values.shape
    ay, ax = overlap_matrix(hh, shape[0]), overlap_matrix(ww, shape[1])
    wts = np.ones(hh) if row_weights is None else np.asarray(row_weights, dtype="float64")
    valid = np.isfinite(values)
    weighted = np.where(valid, values, 0.0) * wts[:, None]
    num = ay @ weighted @ ax.T
    den = ay @ (valid * wts[:, None]) @ ax.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


# ---------------------------------------------------------------- samples over a range of scales
class ScaleSampleDataset(SeededSamples):
    """Items ``(x, y, queries, coarse)``: x (C, p, p) normalised coarse input, y (Q,) physical
    fine values at the queries, queries (Q, 4) = normalised (y, x) and cell size (coarse
    cells), coarse (1, p, p) the clean physical coarse window. Depends only on
    ``(seed, epoch, index)`` (``fixed``: not on the epoch), so runs are reproducible.
    ``integer_share``: the share of batches drawn at a whole factor within ``scales``.

    Several targets: ``field`` and ``stats`` are lists (one per target, each (T, H, W)); every
    target is cut from the same window at the same scale, x and coarse get one channel per
    target and y is (Q, K). ``n_targets``: only the first fields are targets, the others
    predictors, coarsened with them into further input channels."""

    def __init__(self, field, row_weights: np.ndarray, stats, times, *, scales: tuple[float, float],
                 lr_patch: int, queries: int, n_samples: int, seed: int, degradation: str = "none",
                 fixed: bool = False, batch_size: int = 1, integer_share: float = 0.0, n_targets: int | None = None):
        self.several = isinstance(field, (list, tuple))
        self.fields = list(field) if self.several else [field]
        self.stats = list(stats) if self.several else [stats]
        self.n_targets = len(self.fields) if n_targets is None else int(n_targets)
        self.field, self.row_weights = self.fields[0], np.asarray(row_weights, "float64")
        self.times, self.n_samples, self.seed, self.fixed = np.asarray(times), int(n_samples), int(seed), fixed
        self.lr_patch, self.queries, self.degradation, self.epoch = int(lr_patch), int(queries), degradation, 0
        self.batch_size = max(int(batch_size), 1)
        ny, nx = self.field.shape[-2:]
        self.side = min(ny, nx)
        # a scale whose lr_patch window does not fit the field trains on a smaller window (at least
        # MIN_WINDOW coarse cells), so small scales keep the full window on a small domain
        top = min(float(scales[1]), self.side / min(self.lr_patch, MIN_WINDOW))
        if top < float(scales[0]):
            smallest = min(self.lr_patch, MIN_WINDOW)
            raise DataError(f"the field ({ny}x{nx}) is too small for scale {scales[0]}: a window of {smallest} "
                            f"coarse cells needs {smallest * scales[0]:.0f} fine cells")
        if top < float(scales[1]):
            log.warning("largest training scale limited to %.2f by the field size (%dx%d)", top, ny, nx)
        self.scales = (float(scales[0]), top)
        self.integer_share = float(integer_share)
        self.integers = [k for k in range(math.ceil(self.scales[0]), math.floor(self.scales[1]) + 1) if k >= 2]

    def scale_and_window(self, index: int) -> tuple[float, int]:
        """The scale and coarse window side of sample ``index``: shared by the ``batch_size``
        consecutive samples of a batch (so windows of different sides never meet in a batch)."""
        rng = np.random.default_rng((self.seed, 0 if self.fixed else self.epoch + 1, int(index) // self.batch_size,
                                     1))
        s = float(rng.uniform(*self.scales))
        if self.integer_share > 0 and self.integers and rng.random() < self.integer_share:
            s = float(self.integers[rng.integers(len(self.integers))])
        return s, int(max(1, min(self.lr_patch, self.side // s)))

    def __getitem__(self, index: int):
        rng = self.rng(index)
        s, p = self.scale_and_window(index)
        big = int(min(round(p * s), *self.field.shape[-2:]))
        t = int(self.times[rng.integers(len(self.times))])
        y0 = int(rng.integers(self.field.shape[-2] - big + 1))
        x0 = int(rng.integers(self.field.shape[-1] - big + 1))
        windows = [f[t, y0 : y0 + big, x0 : x0 + big] for f in self.fields]
        fine = np.stack([np.asarray(w.compute() if hasattr(w, "compute") else w, dtype="float64") for w in windows])
        coarse = resample_area(fine, (p, p), self.row_weights[y0 : y0 + big])  # (K, p, p)
        means = np.array([s["mean"] for s in self.stats])[:, None, None]
        stds = np.array([s["std"] for s in self.stats])[:, None, None]
        x = np.nan_to_num((fill_nearest(coarse) - means) / stds, nan=0.0)
        if self.degradation == "high-order":
            x = degrade(x, rng)
        pick = rng.choice(big * big, self.queries, replace=big * big < self.queries)
        iy, ix = np.divmod(pick, big)
        centre = lambda i: -1 + (2 * i + 1) / big  # noqa: E731
        cell = np.full(self.queries, p / big)
        q = np.stack([centre(iy), centre(ix), cell, cell], axis=-1)
        y = fine[: self.n_targets, iy, ix].T if self.several else fine[0, iy, ix]  # (Q, K) or (Q,)
        return (torch.from_numpy(x.astype("float32")), torch.from_numpy(np.ascontiguousarray(y, dtype="float32")),
                torch.from_numpy(q.astype("float32")),
                torch.from_numpy(np.where(np.isfinite(coarse), coarse, means).astype("float32")))


# ---------------------------------------------------------------- training
def fit_liif(request: FitRequest):
    """``fit(hr, model="liif", scales=(1.5, 8), ...)``: one model for every scale in ``scales``.

    Options (:class:`~.options.LiifOptions`): ``width`` (encoder channels, 32), ``n_blocks`` (4),
    ``hidden`` (decoder width, 32), ``scales`` ((1.5, 8.0)), ``degradation`` ("none" or
    "high-order"), ``lr_patch`` (coarse cells per training window side, 16), ``queries`` (fine
    cells per window, 512), ``integer_share`` (batches at whole factors; default 1.0, or 0.5 for a
    target that stops at zero). ``factor=k`` trains at the single scale k. The coarse inputs are
    made from ``hr``. A target that stops at zero in
    its training hours (:func:`~xdownscale.data.normalize.zero_bounded`) records ``lower_bound=0``,
    and its predictions are never below it.

    Inputs other than the targets (the multi-target path, one target included):

    * ``predictors=["t2m", ...]`` without ``lr``: further variables of ``hr`` on its fine grid,
      coarsened together with the targets at the same random scale, so the model stays scale-free.
      The encoder takes the targets' coarse fields first, then the predictors, each normalised with
      its own statistics; the decoder gives the targets only.
    * ``lr=coarse_ds`` (a real pair, :mod:`.pair`): every gridded variable of ``lr`` is an input
      (``predictors=`` narrows the set). A pair has one scale, the ratio of its grids (e.g. x4): the
      model trains at it only and records it (``factor``, ``scales=[4, 4]``); ``predict`` takes inputs
      on ``lr``'s grid spacing, defaults to that factor, and warns at another scale (untested)."""
    opts = parse_options(LiifOptions, request.options, model=request.model)
    r, cfg = request, request.cfg
    if r.constraint not in (None, "none"):
        raise DataError(f"liif trains scale-free, without a constraint layer; drop constraint={r.constraint!r} here "
                        f"and pass it to predict(model=m, factor=<integer>, constraint={r.constraint!r})")
    if r.covariates is not None:
        raise DataError("liif takes no covariates= (static fields) yet: drop covariates=, or pass them as "
                        "predictors= variables of hr")
    if r.skip not in (None, "bicubic"):
        raise DataError(f"liif samples its base by bicubic interpolation: skip must be 'bicubic' or None, "
                        f"got {r.skip!r}")
    scales = [float(r.factor)] * 2 if r.factor is not None else [float(s) for s in opts.scales]
    body = {k: request.options[k] for k in ("width", "n_blocks", "hidden", "query_batch") if k in request.options}
    targets = target_names(r.var)
    if r.lr is not None or r.predictors:  # inputs other than the targets: the multi-target path
        targets, request = as_targets(request)
        return _fit_liif_multi(request, targets, opts, scales, body)
    if targets is not None:  # one liif for every target: the inputs are the targets' coarse fields
        return _fit_liif_multi(request, targets, opts, scales, body)
    setup = prepare(r.hr, model=r.model, factor=1, constraint="none", var=r.var, cfg=cfg, skip=None, trim=r.trim,
                    checkpoint=r.checkpoint, resume=r.resume, record_factor=ANY_SCALE,
                    network_extra={"scales": scales, "degradation": opts.degradation}, model_kwargs=body,
                    bounds_itself=True)
    field = _time_field(setup.pair.hr)
    rscale = _residual_scale(setup.pair.hr, setup.pair, setup.train_t, r.skip)
    setup.network.update(skip=r.skip, residual_scale=rscale, lower_bound=_lower_bound(setup.stats))
    return _train_over_scales(LIIFNet, setup, field, setup.stats, scales, opts, cfg, resume=setup.resume_state)


def _fit_liif_multi(request: FitRequest, targets: list[str], opts: LiifOptions, scales: list, body: dict):
    """``fit(model="liif", var=[...])``: the multi-target record of
    :func:`~xdownscale.engine.multi_setup.prepare_request` (statistics and CF attributes by target),
    one output per target (:class:`~xdownscale.models.liif.MultiTargetLIIFNet`), every target and
    predictor cut from the same windows at the same scale (a real pair: :func:`_fit_liif_pair`)."""
    if request.consistency:
        raise DataError("consistency= acts on the outputs of the spatial, temporal and gan models, not liif's "
                        "(its constraints are chosen at predict): drop consistency=")
    if request.lr is not None:
        return _fit_liif_pair(request, targets, opts, body)
    _check_fine_predictors(request, targets)
    setup = prepare_request(dataclasses.replace(request, factor=1, skip=None, constraint="none"), targets, body,
                            record_factor=ANY_SCALE, bounds_itself=True)
    k = len(targets)
    fields = [_time_field(da) for da in setup.pair.targets] + [_time_field(da) for da in setup.pair.inputs[k:]]
    target_stats = setup.meta["normalization"]["targets"]
    for spec, da, st in zip(setup.network["targets"], setup.pair.targets, target_stats):
        spec["residual_scale"] = _residual_scale(da, setup.pair, setup.train_t, request.skip)
        spec["lower_bound"] = _lower_bound(st)
    setup.network.update(skip=request.skip, scales=scales, degradation=opts.degradation)
    # the targets' own coarsenings (the first inputs) are normalised as the targets, whose base they are
    for j, st in enumerate(target_stats):
        setup.network["inputs"][j].update(mean=st["mean"], std=st["std"])
        setup.meta["normalization"]["inputs"][j] = dict(st)
    stats = list(target_stats) + list(setup.input_stats[k:])
    return _train_over_scales(MultiTargetLIIFNet, setup, fields, stats, scales, opts, request.cfg,
                              resume=setup.checked_resume(), n_targets=k)


def _fit_liif_pair(request: FitRequest, targets: list[str], opts: LiifOptions, body: dict):
    """Train ``liif`` at the one scale of the pair ``(request.lr, request.hr)`` (:mod:`.pair`)."""
    if "scales" in request.options:
        raise DataError(f"scales={request.options['scales']!r}: a real pair has one scale, the ratio of its grids, "
                        "and liif trains at it; drop scales= (or drop lr= to train over scales of hr)")
    lr = request.lr
    if isinstance(lr, xr.DataArray):  # one coarse field: the input of that name (the target's own, if unnamed)
        lr = lr.to_dataset(name=str(lr.name if lr.name is not None else targets[0]))
    setup = prepare_request(dataclasses.replace(request, lr=lr, constraint="none"), targets, body, bounds_itself=True)
    pair, f = setup.pair, setup.pair.factor
    scales = [float(f), float(f)]
    # the residual scales of prepare_request: the spread of (fine - bicubic of the real coarse input)
    setup.network.update(skip=request.skip, scales=scales, degradation=opts.degradation)
    for spec, st in zip(setup.network["targets"], setup.meta["normalization"]["targets"]):
        spec["lower_bound"] = _lower_bound(st)
    fine = [_time_field(da) for da in pair.targets]
    coarse = [_time_field(da) for da in pair.inputs]

    def make(times, *, n_samples: int, seed: int, fixed: bool = False):
        return PairSampleDataset(fine, coarse, setup.input_stats, f, times, lr_patch=int(opts.lr_patch),
                                 queries=int(opts.queries), n_samples=n_samples, seed=seed,
                                 degradation=opts.degradation, fixed=fixed)

    return train_windows(MultiTargetLIIFNet, setup, make, scales, opts, request.cfg, resume=setup.checked_resume())


def _check_fine_predictors(request: FitRequest, targets: list[str]) -> None:
    """Predictors of ``hr`` must lie on its fine grid: liif coarsens them with the targets."""
    hr = request.hr
    if not request.predictors or not isinstance(hr, xr.Dataset) or targets[0] not in hr.data_vars:
        return  # prepare_request names what is missing
    ref = hr[targets[0]]
    axes = find_axes(ref)
    for p in request.predictors:
        if p in hr.data_vars and any(hr[p].sizes.get(d) != ref.sizes[d] for d in axes.spatial):
            raise DataError(f"predictor {p!r} is not on hr's fine grid ({dict(hr[p].sizes)} vs "
                            f"{ {d: ref.sizes[d] for d in axes.spatial} }): liif coarsens its predictors with its "
                            "targets at random scales; regrid it onto hr's grid (xds.regrid), or give coarse inputs "
                            "as a real pair (lr=coarse_ds)")


def _time_field(da):
    """The (T, H, W) values of a fine field, lazy where they are."""
    field = da.data if hasattr(da.data, "dask") else np.asarray(da.values)
    return field[None] if field.ndim == 2 else field  # a single field without a time axis


def _lower_bound(stats: dict) -> float | None:
    """0 for a target that stops at zero in its training hours (:func:`zero_bounded`), else None."""
    return 0.0 if zero_bounded(stats) else None


def _residual_scale(da, pair, train_t, skip) -> float | None:
    """The spread of (fine - bicubic) at x4 of the fine field ``da`` (of ``pair``) on training
    fields (any scale would do: it only sets the output's unit); None without the bicubic skip."""
    if not skip:
        return None
    tdim = pair.axes.time
    sample = np.asarray(da.isel({tdim: train_t[:8]}).values if tdim else da.values[None], dtype="float64")
    ny4, nx4 = (sample.shape[-2] // 4) * 4, (sample.shape[-1] // 4) * 4
    return residual_std(sample[..., :ny4, :nx4], 4, pair.row_weights[:ny4], "bicubic")


def integer_share(opts: LiifOptions, network: dict) -> float:
    """The share of training batches at whole factors: the one asked for, else 1.0 (whole factors
    only), or 0.5 where a target stops at zero. On WFDE5 Tair whole factors only gave x2 0.72 and
    x4 0.80x bicubic against 0.82 and 0.84 at 0.5, and on MeteoNet msl within 0.5 % between the whole
    factors (x1.5: 1.5 % worse); on WFDE5 pr x4 they were 1.3 % worse over three seeds and the
    default seed went above bicubic (benchmarks/results/skill_wfde5.md)."""
    if opts.integer_share is not None:
        return float(opts.integer_share)
    bounds = [t.get("lower_bound") for t in network.get("targets", [])] or [network.get("lower_bound")]
    return 0.5 if any(b is not None for b in bounds) else 1.0


def _train_over_scales(net_class, setup, field, stats, scales, opts: LiifOptions, cfg, resume=None,
                       n_targets: int | None = None):
    """The network (weights drawn from ``cfg.seed``), the scale-sampling streams and the generic
    trainer, for one target or several (``n_targets``: the first fields; the rest are predictors)."""
    rows = setup.pair.row_weights
    opts = dataclasses.replace(opts, integer_share=integer_share(opts, setup.network))
    common = dict(scales=scales, lr_patch=int(opts.lr_patch), queries=int(opts.queries),
                  degradation=opts.degradation, integer_share=opts.integer_share, batch_size=cfg.batch_size)
    if n_targets is not None:
        common["n_targets"] = n_targets

    def make(times, *, n_samples: int, seed: int, fixed: bool = False):
        return ScaleSampleDataset(field, rows, stats, times, n_samples=n_samples, seed=seed, fixed=fixed, **common)

    return train_windows(net_class, setup, make, scales, opts, cfg, resume=resume)


def train_windows(net_class, setup, make, scales, opts: LiifOptions, cfg, resume=None):
    """The network (weights drawn from ``cfg.seed``), the training and validation streams
    ``make(times, n_samples=, seed=, fixed=)`` (items ``(x, y, queries, coarse)``) and the generic
    trainer; the record notes the scales and the window settings."""
    lr_patch, n_queries = int(opts.lr_patch), int(opts.queries)
    setup.meta["training"].update(scales=scales, degradation=opts.degradation, lr_patch=lr_patch, queries=n_queries,
                                  integer_share=integer_share(opts, setup.network))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = net_class(**setup.network)
    n_train = cfg.samples_per_epoch or max(cfg.batch_size, min(len(setup.train_t) * 16, 20_000))
    train_ds = make(setup.train_t, n_samples=n_train, seed=cfg.seed)
    val_ds = make(setup.val_t, n_samples=cfg.val_samples or max(cfg.batch_size, min(n_train // 4, VAL_WINDOWS)),
                  seed=cfg.seed + 1, fixed=True)
    setup.meta["training"].update(samples_per_epoch=n_train, val_samples=len(val_ds))
    log.info("training liif over scales %.2f-%.2f on %d+%d time steps, %d windows/epoch", *train_ds.scales,
             len(setup.train_t), len(setup.val_t), n_train)
    t0 = time.perf_counter()
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=resume,
                   on_epoch_end=setup.save_epoch)
    result["train_seconds"] = time.perf_counter() - t0
    return finish(setup, net, result)
