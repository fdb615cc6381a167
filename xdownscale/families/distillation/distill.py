"""Teacher-student distillation: train a compact model on a trained model's outputs.

``distill(teacher=m, student="maunet-light", hr=..., lr=..., alpha=0.5)`` prepares
the pair exactly as :func:`xdownscale.fit` does (:func:`~xdownscale.engine.setup.prepare`), gives the
student the teacher's normalisation (so both networks see identical inputs),
and trains it with the shared loop (``engine/trainer.train``) on

    loss = alpha * L(student, teacher) + (1 - alpha) * L(student, truth)

in normalised units (L: mean squared or absolute error). By default both terms
cover only the fine cells where the truth is observed (``teacher_on="observed"``):
the teacher's values elsewhere (e.g. over the sea of a land-only target) are
extrapolations it was never trained on. ``teacher_on="all"`` uses them too. For regression there is no
softmax to soften, so no temperature: ``alpha`` is the one knob that trades the
teacher's smoother targets against the truth. Validation and the kept "best"
weights use the MSE against the truth, as in ``fit``.

``unlabelled=``: coarse fields that have no fine truth (e.g. the years of model
output outside a short reference period: the usual situation of bias correction).
The teacher downscales them once (whole fields, tiled as in ``predict``) and its
output is their only target; they join the training fields, while validation
keeps to the last ``val_fraction`` of the fields with a truth. This is where a
teacher can pass on more than the truth alone gives: what it learnt, applied to
inputs the student would otherwise never see.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ...config import TrainConfig
from ...data.covariates import as_dataset, fold_covariates, spatial_coords
from ...engine.contract import parse_options
from ...engine.device import resolve_device
from ...engine.record import MULTI_TARGET_SECTION
from ...engine.setup import finish, prepare
from ...engine.trainer import masked_loss, train
from ...errors import DataError
from ...models import DownscalingNet, family_of, model_info
from .feature_hints import FeatureTap, affinity_loss, hint_layer
from .teachers import (
    resolve_teachers,
    split_labelled,
    teacher_module,
    teacher_record,
    with_pseudo_labels,
)

log = logging.getLogger("xdownscale")


TEACHER_ON = ("observed", "all")


def _distill_loss(teacher, alpha: float, kind: str, teacher_on: str = "observed", hints=None):
    """``hints``: (weight, student tap, teacher taps) of the feature-affinity term, or None."""
    def loss_fn(pred, x, y, w, c):
        with torch.no_grad():
            target = teacher(x, w, c)
            if teacher_on == "observed":
                target = torch.where(torch.isfinite(y), target, torch.full_like(target, float("nan")))
        loss = masked_loss(pred, y, teacher.std, kind)
        if alpha:
            loss = alpha * masked_loss(pred, target, teacher.std, kind) + (1 - alpha) * loss
        if hints is not None:
            weight, student_tap, teacher_taps = hints
            loss = loss + weight * affinity_loss(student_tap.features, [t.features for t in teacher_taps],
                                                 pred.shape[-2:])
        return loss

    return loss_fn


def _inherit_normalisation(setup, teacher) -> None:
    """Give the student the teacher's input normalisation (target, predictors, covariates)."""
    norm = teacher.meta["normalization"]
    if list(teacher.meta.get("predictors", [])) != list(setup.extra_names):
        raise DataError(f"the teacher uses predictors {teacher.meta.get('predictors', [])}, the student "
                        f"{setup.extra_names}: pass the teacher's predictors=...")
    if list(teacher.meta.get("covariates", [])) != list(setup.cov_stats):
        raise DataError(f"the teacher uses covariates {teacher.meta.get('covariates', [])}, the student "
                        f"{list(setup.cov_stats)}: pass the same covariates=... as when the teacher was fitted")
    setup.stats.update(mean=float(norm["target"]["mean"]), std=float(norm["target"]["std"]))
    setup.extra_stats = [dict(s) for s in norm.get("predictors", [])]
    setup.network.update(mean=setup.stats["mean"], std=setup.stats["std"])
    if setup.cov_stats:
        setup.cov_stats = {k: dict(v) for k, v in norm["covariates"].items()}
    setup.meta["normalization"] = {"target": setup.stats, "predictors": setup.extra_stats,
                                   "covariates": setup.cov_stats}


def distill(teacher, student: str = "maunet-light", hr=None, *, lr=None, alpha: float = 0.5,
            teacher_on: str = "observed", unlabelled=None, hint_weight: float = 0.0, var: str | None = None,
            predictors: list[str] | None = None,
            covariates=None,
            constraint: str | None = None, skip: str | None = "teacher", epochs: int = 20, batch_size: int = 64,
            patch_size: int = 64, learning_rate: float = 1e-3, lr_schedule: str = "cosine", loss: str = "mse",
            seed: int = 0, val_fraction: float = 0.2, patience: int = 5, samples_per_epoch: int | None = None,
            val_samples: int | None = None, checkpoint: str | os.PathLike | None = None, trim: bool = False,
            device: str = "auto", progress: bool = True, **student_kwargs):
    """Train ``student`` (a registered model name) to imitate ``teacher`` and the truth.

    ``teacher``: a trained :class:`~xdownscale.Downscaler`, a checkpoint path or a
    model name in the store, or a list of them: an ensemble, whose mean output the
    student learns (:mod:`.teachers`). ``hr``/``lr``: the same kind of data as for ``fit``
    (the factor is the teacher's). ``alpha``: weight of the teacher term (0: plain
    training on the truth, 1: on the teacher only). ``teacher_on``: "observed" (the
    teacher term only where the truth exists) or "all". ``constraint`` and ``skip``
    default to the teacher's. Other keywords go to the student body (e.g.
    ``width=16``). ``unlabelled``: coarse fields (same grid and variable as
    ``lr``, other times) without a fine truth; the teacher's downscaling of them is
    their target (see the module notes). ``hint_weight``: weight of a feature-
    affinity term between the last decoder features of U-Net teacher and student
    (:mod:`.feature_hints`; 0: outputs only). Returns the student's :class:`~xdownscale.Downscaler`; its
    checkpoint records the teacher and ``alpha``.
    """
    if not 0 <= float(alpha) <= 1:
        raise DataError(f"alpha is the weight of the teacher term and must be in [0, 1], got {alpha}")
    if hint_weight < 0:
        raise DataError(f"hint_weight must be >= 0, got {hint_weight}")
    if teacher_on not in TEACHER_ON:
        raise DataError(f"teacher_on must be one of {TEACHER_ON}, got {teacher_on!r}")
    members = resolve_teachers(teacher, variable=var)
    teacher_ds = members[0]
    if any(MULTI_TARGET_SECTION in m.meta for m in members):
        raise DataError("distill() takes single-target teachers for now: this teacher has several targets "
                        f"({teacher_ds.variable}); distil one model per variable")
    if model_info(student).get("probabilistic"):
        raise DataError("distill() handles deterministic teachers and students only")
    if not model_info(student)["trainable"]:
        raise DataError(f"{student!r} is a baseline with nothing to train; choose e.g. student='maunet-light'")
    if model_info(student)["family"] != "spatial":
        raise DataError(f"the student must be a spatial model (cnn, espcn, maunet, maunet-light), not {student!r}")
    parse_options(family_of(student).fit_options(student), student_kwargs, model=student)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, patch_size=patch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule, loss=loss, seed=seed, val_fraction=val_fraction, patience=patience,
                      samples_per_epoch=samples_per_epoch, val_samples=val_samples, device=device, progress=progress)
    tnet = teacher_module(members)
    has_truth = None
    if unlabelled is not None:
        hr, lr, has_truth = with_pseudo_labels(members, hr, lr, unlabelled, var=var or teacher_ds.variable,
                                                covariates=covariates, teacher_on=teacher_on)
    setup = prepare(hr, lr=lr, model=student, factor=teacher_ds.factor, var=var or teacher_ds.variable,
                    predictors=predictors if predictors is not None else teacher_ds.meta.get("predictors"),
                    covariates=covariates, cfg=cfg, constraint=constraint or teacher_ds.constraint,
                    skip=teacher_ds.config.get("skip") if skip == "teacher" else skip, checkpoint=checkpoint,
                    trim=trim, model_kwargs=student_kwargs)
    _inherit_normalisation(setup, teacher_ds)
    if has_truth is not None:
        setup.train_t, setup.val_t = split_labelled(has_truth, cfg.val_fraction)
        setup.meta["training"].update(train_times=len(setup.train_t), val_times=len(setup.val_t))
    if setup.covariates is not None:
        setup.covariates = fold_covariates(as_dataset(covariates), setup.cov_stats, setup.pair.hr.shape[-2:],
                                           setup.factor, spatial_coords(setup.pair.hr, setup.pair.axes.spatial))
    if int(teacher_ds.config.get("in_channels", 1)) != int(setup.network["in_channels"]):
        raise DataError(f"the teacher takes {teacher_ds.config.get('in_channels', 1)} input channels, the student "
                        f"{setup.network['in_channels']}: give the same predictors and covariates")
    setup.meta["distillation"] = {**teacher_record(members), "alpha": float(alpha),
                                  "teacher_on": teacher_on,
                                  "unlabelled_times": 0 if has_truth is None else int((~has_truth).sum()),
                                  "hint_weight": float(hint_weight)}
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = DownscalingNet(**setup.network)
    train_ds, val_ds = setup.datasets()
    dev = resolve_device(cfg.device)
    taps = []
    if hint_weight:
        taps = [FeatureTap(hint_layer(net, "student"))] + [FeatureTap(hint_layer(m.module, f"teacher {i}"))
                                                           for i, m in enumerate(members)]
    hints = (float(hint_weight), taps[0], taps[1:]) if taps else None
    tnet.to(dev).eval()
    for p in tnet.parameters():
        p.requires_grad_(False)
    log.info("distilling %s -> %s x%d (alpha=%.2f) on %d+%d time steps",
             "+".join(m.model_name for m in members), student,
             setup.factor, alpha, len(setup.train_t), len(setup.val_t))
    try:
        result = train(net, train_ds, val_ds, cfg, dev, on_epoch_end=setup.save_epoch,
                       loss_fn=_distill_loss(tnet, float(alpha), cfg.loss, teacher_on, hints))
    finally:
        for tap in taps:
            tap.close()
        for p in tnet.parameters():
            p.requires_grad_(True)
        tnet.cpu()
    return finish(setup, net, result)
