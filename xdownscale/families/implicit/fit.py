"""Training one ``liif`` model over a range of scales, including non-integer ones.

Each training sample draws a scale ``s`` uniformly in ``scales`` (e.g. 1.5..8),
cuts a fine window of ``round(p * s)`` cells (``p`` = ``lr_patch`` coarse cells),
makes its coarse input by the *exact* conservative (area-weighted) resampling of
:func:`resample_area` (a fine cell straddling two coarse cells is split between
them by overlap length, rows weighted by cos(latitude)), optionally degrades the
coarse input (``degradation="high-order"``: two rounds of Gaussian blur,
down-and-up resizing and noise, so a model trained on clean coarsenings copes
with real, blurrier or noisier coarse data), and asks for ``queries`` random fine
cells of the window. ``integer_share`` of the batches (0.5) are drawn at the whole factors in the
range instead (2, 3, 4, ...): most predictions ask for one of them, and a uniform draw alone left
x4 at 0.888x bicubic on WFDE5 Tair where half the batches at whole factors give 0.856x, with x2
better too (benchmarks/results/skill_wfde5.md). The generic trainer
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
import torch.nn.functional as F

from ...data.fill import fill_nearest
from ...data.normalize import residual_std
from ...data.patches import SeededSamples
from ...engine.contract import FitRequest, parse_options, target_names
from ...engine.device import resolve_device
from ...engine.multi_setup import prepare_request
from ...engine.setup import finish, prepare
from ...engine.trainer import train
from ...errors import DataError
from ...models.liif import ANY_SCALE, LIIFNet, MultiTargetLIIFNet
from .options import LiifOptions

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


# ---------------------------------------------------------------- high-order degradation
def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1), groups=x.shape[1])
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(x.shape[1], 1, -1, 1), groups=x.shape[1])


def degrade(x: np.ndarray, rng: np.random.Generator, rounds: int = 2) -> np.ndarray:
    """High-order degradation of a normalised coarse input (C, h, w): ``rounds`` repetitions of
    blur (p=0.7, sigma 0.2-1.2 cells), down-and-up bilinear resizing (p=0.5, by 1-1.6) and
    Gaussian noise (p=0.7, sigma up to 0.03 standard deviations), each drawn from ``rng``."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype="float32"))[None]
    h, w = t.shape[-2:]
    for _ in range(rounds):
        if rng.random() < 0.7:
            t = _gaussian_blur(t, float(rng.uniform(0.2, 1.2)))
        if rng.random() < 0.5 and min(h, w) >= 4:
            r = float(rng.uniform(1.0, 1.6))
            small = (max(2, int(round(h / r))), max(2, int(round(w / r))))
            t = F.interpolate(F.interpolate(t, size=small, mode="bilinear", align_corners=False, antialias=True),
                              size=(h, w), mode="bilinear", align_corners=False)
        if rng.random() < 0.7:
            t = t + float(rng.uniform(0, 0.03)) * torch.from_numpy(rng.standard_normal(t.shape).astype("float32"))
    return t[0].numpy()


# ---------------------------------------------------------------- samples over a range of scales
class ScaleSampleDataset(SeededSamples):
    """Items ``(x, y, queries, coarse)``: x (C, p, p) normalised coarse input, y (Q,) physical
    fine values at the queries, queries (Q, 4) = normalised (y, x) and cell size (coarse
    cells), coarse (1, p, p) the clean physical coarse window. Depends only on
    ``(seed, epoch, index)`` (``fixed``: not on the epoch), so runs are reproducible.
    ``integer_share``: the share of batches drawn at a whole factor within ``scales``.

    Several targets: ``field`` and ``stats`` are lists (one per target, each (T, H, W)); every
    target is cut from the same window at the same scale, x and coarse get one channel per
    target and y is (Q, K)."""

    def __init__(self, field, row_weights: np.ndarray, stats, times, *, scales: tuple[float, float],
                 lr_patch: int, queries: int, n_samples: int, seed: int, degradation: str = "none",
                 fixed: bool = False, batch_size: int = 1, integer_share: float = 0.0):
        self.several = isinstance(field, (list, tuple))
        self.fields = list(field) if self.several else [field]
        self.stats = list(stats) if self.several else [stats]
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
        y = fine[:, iy, ix].T if self.several else fine[0, iy, ix]  # (Q, K) or (Q,)
        return (torch.from_numpy(x.astype("float32")), torch.from_numpy(np.ascontiguousarray(y, dtype="float32")),
                torch.from_numpy(q.astype("float32")),
                torch.from_numpy(np.where(np.isfinite(coarse), coarse, means).astype("float32")))


# ---------------------------------------------------------------- training
def fit_liif(request: FitRequest):
    """``fit(hr, model="liif", scales=(1.5, 8), ...)``: one model for every scale in ``scales``.

    Options (:class:`~.options.LiifOptions`): ``width`` (encoder channels, 32), ``n_blocks`` (4),
    ``hidden`` (decoder width, 32), ``scales`` ((1.5, 8.0)), ``degradation`` ("none" or
    "high-order"), ``lr_patch`` (coarse cells per training window side, 16), ``queries`` (fine
    cells per window, 512), ``integer_share`` (batches at whole factors, 0.5). ``factor=k`` trains
    at the single scale k. The coarse inputs are made from ``hr``."""
    opts = parse_options(LiifOptions, request.options, model=request.model)
    r, cfg = request, request.cfg
    if r.lr is not None:
        raise DataError("liif trains on coarsenings of hr at random scales; drop lr= (real pairs have one scale: "
                        "use model='cnn' or 'espcn' for them)")
    if r.constraint not in (None, "none"):
        raise DataError(f"liif trains scale-free, without a constraint layer; drop constraint={r.constraint!r} here "
                        f"and pass it to predict(model=m, factor=<integer>, constraint={r.constraint!r})")
    if r.predictors or r.covariates is not None:
        raise DataError("liif takes the target variable only: drop predictors= and covariates=")
    if r.skip not in (None, "bicubic"):
        raise DataError(f"liif samples its base by bicubic interpolation: skip must be 'bicubic' or None, "
                        f"got {r.skip!r}")
    scales = [float(r.factor)] * 2 if r.factor is not None else [float(s) for s in opts.scales]
    body = {k: request.options[k] for k in ("width", "n_blocks", "hidden", "query_batch") if k in request.options}
    targets = target_names(r.var)
    if targets is not None:  # one liif for every target: the inputs are the targets' coarse fields
        return _fit_liif_multi(request, targets, opts, scales, body)
    setup = prepare(r.hr, model=r.model, factor=1, constraint="none", var=r.var, cfg=cfg, skip=None, trim=r.trim,
                    checkpoint=r.checkpoint, resume=r.resume, record_factor=ANY_SCALE,
                    network_extra={"scales": scales, "degradation": opts.degradation}, model_kwargs=body)
    field = _time_field(setup.pair.hr)
    rscale = _residual_scale(setup.pair.hr, setup.pair, setup.train_t, r.skip)
    setup.network.update(skip=r.skip, residual_scale=rscale)
    return _train_over_scales(LIIFNet, setup, field, setup.stats, scales, opts, cfg, resume=setup.resume_state)


def _fit_liif_multi(request: FitRequest, targets: list[str], opts: LiifOptions, scales: list, body: dict):
    """``fit(model="liif", var=[...])``: the multi-target record of
    :func:`~xdownscale.engine.multi_setup.prepare_request` (statistics and CF attributes by target),
    one output per target (:class:`~xdownscale.models.liif.MultiTargetLIIFNet`), every target cut
    from the same windows at the same scale."""
    if request.resume is not None:
        raise DataError("several targets (var=[...]) train from scratch for now: drop resume=")
    if request.consistency:
        raise DataError("consistency= acts on the outputs of the spatial, temporal and gan models, not liif's "
                        "(its constraints are chosen at predict): drop consistency=")
    setup = prepare_request(dataclasses.replace(request, factor=1, skip=None, constraint="none"), targets, body,
                            record_factor=ANY_SCALE)
    fields = [_time_field(da) for da in setup.pair.targets]
    for spec, da in zip(setup.network["targets"], setup.pair.targets):
        spec["residual_scale"] = _residual_scale(da, setup.pair, setup.train_t, request.skip)
    setup.network.update(skip=request.skip, scales=scales, degradation=opts.degradation)
    stats = setup.meta["normalization"]["targets"]
    return _train_over_scales(MultiTargetLIIFNet, setup, fields, stats, scales, opts, request.cfg)


def _time_field(da):
    """The (T, H, W) values of a fine field, lazy where they are."""
    field = da.data if hasattr(da.data, "dask") else np.asarray(da.values)
    return field[None] if field.ndim == 2 else field  # a single field without a time axis


def _residual_scale(da, pair, train_t, skip) -> float | None:
    """The spread of (fine - bicubic) at x4 of the fine field ``da`` (of ``pair``) on training
    fields (any scale would do: it only sets the output's unit); None without the bicubic skip."""
    if not skip:
        return None
    tdim = pair.axes.time
    sample = np.asarray(da.isel({tdim: train_t[:8]}).values if tdim else da.values[None], dtype="float64")
    ny4, nx4 = (sample.shape[-2] // 4) * 4, (sample.shape[-1] // 4) * 4
    return residual_std(sample[..., :ny4, :nx4], 4, pair.row_weights[:ny4], "bicubic")


def _train_over_scales(net_class, setup, field, stats, scales, opts: LiifOptions, cfg, resume=None):
    """The network (weights drawn from ``cfg.seed``), the scale-sampling streams and the generic
    trainer, for one target or several."""
    lr_patch, n_queries = int(opts.lr_patch), int(opts.queries)
    setup.meta["training"].update(scales=scales, degradation=opts.degradation, lr_patch=lr_patch, queries=n_queries,
                                  integer_share=opts.integer_share)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = net_class(**setup.network)
    n_train = cfg.samples_per_epoch or max(cfg.batch_size, min(len(setup.train_t) * 16, 20_000))
    common = dict(scales=scales, lr_patch=lr_patch, queries=n_queries, degradation=opts.degradation,
                  integer_share=opts.integer_share)
    common["batch_size"] = cfg.batch_size  # one scale and window size a batch
    rows = setup.pair.row_weights
    train_ds = ScaleSampleDataset(field, rows, stats, setup.train_t, n_samples=n_train, seed=cfg.seed, **common)
    val_ds = ScaleSampleDataset(field, rows, stats, setup.val_t, fixed=True,
                                n_samples=cfg.val_samples or max(cfg.batch_size, min(n_train // 4, VAL_WINDOWS)),
                                seed=cfg.seed + 1,
                                **common)
    setup.meta["training"].update(samples_per_epoch=n_train, val_samples=len(val_ds))
    log.info("training liif over scales %.2f-%.2f on %d+%d time steps, %d windows/epoch", *train_ds.scales,
             len(setup.train_t), len(setup.val_t), n_train)
    t0 = time.perf_counter()
    result = train(net, train_ds, val_ds, cfg, resolve_device(cfg.device), resume=resume,
                   on_epoch_end=setup.save_epoch)
    result["train_seconds"] = time.perf_counter() - t0
    return finish(setup, net, result)
