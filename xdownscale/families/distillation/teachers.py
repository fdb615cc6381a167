"""Teachers for distillation: one trained model or the mean of several, and their pseudo-labels.

An ensemble of independently trained networks is more accurate than any one of
them (their errors partly cancel); distilling it into a single compact student
is how the teacher-student method began (Hinton et al. 2015). ``TeacherEnsemble``
averages its members' outputs; the members must share the factor, the
normalisation, the predictors and the covariates, because they see the very
same normalised inputs as the student.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import xarray as xr

from ...data.pairs import select_variable
from ...engine.resolve import resolve_model
from ...engine.setup import split_times
from ...errors import DataError
from ...grid import coarsen
from ...grid.cf import find_axes
from ...models import model_info

log = logging.getLogger("xdownscale")


class TeacherEnsemble(torch.nn.Module):
    """The mean output of several trained networks (same inputs, same normalisation)."""

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("std", members[0].std.detach().clone())

    def forward(self, x, weights=None, coarse=None):
        return torch.stack([m(x, weights, coarse) for m in self.members]).mean(0)


def resolve_teachers(teacher, variable=None) -> list:
    """``teacher`` (a Downscaler, checkpoint path or model name, or a list of them) as Downscalers."""
    items = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    if not items:
        raise DataError("teacher=[] holds no model: give a trained model or a list of them")
    members = [resolve_model(t, variable=variable) for t in items]
    first = members[0]
    for m in members:
        if model_info(m.model_name).get("probabilistic"):
            raise DataError(f"distill() handles deterministic teachers only, {m.model_name!r} is probabilistic")
    for i, m in enumerate(members[1:], start=1):
        for key, what in (("normalization", "normalisation"), ("predictors", "predictors"),
                          ("covariates", "covariates")):
            if m.meta.get(key) != first.meta.get(key):
                raise DataError(f"teacher {i} ({m.model_name}) differs from teacher 0 ({first.model_name}) in its "
                                f"{what}: the members of a teacher ensemble must be fitted on the same data, "
                                "predictors and covariates")
        if m.factor != first.factor:
            raise DataError(f"teacher {i} is x{m.factor}, teacher 0 x{first.factor}: an ensemble needs one factor")
    return members


def teacher_module(members) -> torch.nn.Module:
    return members[0].module if len(members) == 1 else TeacherEnsemble([m.module for m in members])


def teacher_record(members) -> dict:
    """What a student's checkpoint records of its teacher(s)."""
    one = len(members) == 1
    names = [m.model_name for m in members]
    hashes = [m.checkpoint_hash for m in members]
    return {"teacher": names[0] if one else names, "teacher_checkpoint_sha256": hashes[0] if one else hashes,
            "teacher_parameters": int(sum(p.numel() for m in members for p in m.module.parameters()))}


def with_pseudo_labels(members, hr, lr, unlabelled, *, var, covariates, teacher_on):
    """Append the teacher's downscaling of ``unlabelled`` (the members' mean) to the pair.

    Returns (hr, lr, has_truth per time step), sorted by time."""
    first = members[0]
    if first.meta.get("predictors"):
        raise DataError("unlabelled= takes fields of the target variable only; this teacher also uses predictors "
                        f"{first.meta['predictors']}")
    hr_da = select_variable(hr, var, "hr")
    unl = select_variable(unlabelled, hr_da.name, "unlabelled")
    tdim = find_axes(hr_da).time
    if tdim is None or tdim not in unl.dims:
        raise DataError(f"unlabelled= needs a time dimension in both hr and the unlabelled fields (hr has "
                        f"{hr_da.dims}, unlabelled {unl.dims})")
    lr_da = select_variable(lr, hr_da.name, "lr") if lr is not None else coarsen(hr_da, first.factor)
    shared = np.intersect1d(hr_da[tdim].values, unl[tdim].values)
    if shared.size:
        raise DataError(f"{shared.size} unlabelled time steps (first {shared[0]}) also have a fine truth in hr: "
                        "pass only coarse fields without one, the others belong in hr/lr")
    like = hr_da.isel({tdim: 0})
    pseudo = sum(m.predict(unl, covariates=covariates, like=like).compute() for m in members) / len(members)
    if teacher_on == "observed":  # where the truth is never observed, the teacher only extrapolates
        pseudo = pseudo.where(hr_da.notnull().any(tdim))
    pseudo = pseudo.transpose(*hr_da.dims).astype(hr_da.dtype).assign_attrs(hr_da.attrs).rename(hr_da.name)
    has_truth = xr.concat([xr.full_like(hr_da[tdim], True, dtype=bool), xr.full_like(unl[tdim], False, dtype=bool)],
                          dim=tdim)
    order = np.argsort(has_truth[tdim].values, kind="stable")
    hr_all = xr.concat([hr_da, pseudo], dim=tdim, coords="minimal", compat="override").isel({tdim: order})
    lr_all = xr.concat([lr_da, unl.transpose(*lr_da.dims).astype(lr_da.dtype)], dim=tdim, coords="minimal",
                       compat="override").isel({tdim: order})
    log.info("the teacher labelled %d coarse fields without a truth", unl.sizes[tdim])
    return hr_all, lr_all, has_truth.values[order]


def split_labelled(has_truth: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Validate on the last ``val_fraction`` of the fields with a truth; train on all the others."""
    labelled = np.flatnonzero(has_truth)
    _, val = split_times(  # the rule fit() uses, applied to the fields with a truth
        len(labelled), val_fraction)
    val_t = labelled[val]
    train_t = np.setdiff1d(np.arange(len(has_truth)), val_t) if val_fraction else np.arange(len(has_truth))
    return train_t, val_t
