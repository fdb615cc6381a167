"""Training plumbing for several targets in one network (``fit(var=[...])``).

The twin of :func:`~xdownscale.engine.setup.prepare` for a :class:`~xdownscale.data.multi.MultiPair`:
which input each target's constraint conserves, the statistics, the network configuration of
:class:`~xdownscale.models.multi_target.MultiTargetNet` and the record. The result goes through
the same :func:`~xdownscale.engine.setup.finish`.

Constraint choice, per target (``constraint="add"`` for all, or a dict by target):

* ``"add"`` (any constraint name): conserve the coarse field of the same variable; it must be
  among the inputs (the default when the target is coarsened from ``hr``);
* ``("softmax", "tp_arpege")`` or ``"softmax@tp_arpege"``: conserve a named input instead;
* ``"none"`` (optionally ``"soft"``, a loss term towards the source): no hard conservation, for
  coarse inputs from another model whose biases should not be imposed.

``consistency=["0<=r<=100", "d2m<=t2m", "ws=hypot(u10,v10)"]``: rules across targets applied
after these constraints, keeping their block means (:mod:`xdownscale.nn.consistency`).

``resume="ckpt.pt"``: as :func:`~xdownscale.engine.setup.prepare`, the training state a run saved
at its last validation round; the checkpoint must hold the same model and factor, targets, inputs,
constraints and covariates (checked here) and the same network options (checked by
:meth:`MultiSetup.checked_resume` once the family has completed the configuration), each
refused in one line otherwise.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .. import model_store
from ..config import TrainConfig
from ..data import covariate_stats, default_samples_per_epoch, fit_stats, fold_covariates, scadd_bounds
from ..data.covariates import as_dataset, spatial_coords
from ..data.multi import MultiPair, MultiPatchDataset, make_multi_pair
from ..data.normalize import residual_std
from ..errors import DataError
from ..nn.consistency import parse_rules
from ..nn.constraints import CONSTRAINTS
from .checkpoint import read_checkpoint
from .contract import FitRequest, target_names
from .record import MULTI_TARGET_SECTION, ModelRecord
from .setup import (
    POSITIVE_CONSTRAINTS,
    cf_attrs,
    check_constraint_fits,
    grid_spacing,
    save_round,
    split_times,
    warn_if_unbounded,
)

SECTION = MULTI_TARGET_SECTION


def constraint_pairs(text: str) -> dict[str, str]:
    """``{"msl": "add", "tp": "softmax"}`` from the command line's ``"msl=add,tp=softmax"``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    pairs = [item.split("=") for item in items]
    if not pairs or not all(len(p) == 2 and p[0].strip() and p[1].strip() for p in pairs):
        raise DataError(f"constraint {text!r}: write one name (softmax) or VAR=NAME pairs (msl=add,tp=softmax)")
    return {k.strip(): v.strip() for k, v in pairs}


def parse_constraints(constraint, targets: list[str]) -> dict[str, tuple[str, str | None]]:
    """``{target: (constraint, named source input or None)}`` from a name for all targets, a dict
    by target (values ``"add"``, ``("add", "input")`` or ``"add@input"``), or the CLI's
    ``"msl=add,tp=softmax@tp_arpege"``. Targets not named get ``"none"``."""
    if isinstance(constraint, str) and "=" in constraint:
        constraint = constraint_pairs(constraint)
    if constraint is None or isinstance(constraint, str):
        constraint = {t: constraint or "none" for t in targets}
    if not isinstance(constraint, dict):
        raise DataError(f"constraint={constraint!r}: give a name ('add') or a dict by target, e.g. "
                        "{'msl': 'add', 'tp': 'softmax'}")
    out: dict[str, tuple[str, str | None]] = {t: ("none", None) for t in targets}
    for key, value in constraint.items():
        key = str(key).strip()
        if key not in targets:
            raise DataError(f"constraint given for {key!r}, which is not a target {targets}: name one of them "
                            "(or add it to var=)")
        if isinstance(value, str):
            kind, _, source = value.strip().partition("@")
            value = (kind, source or None)
        kind, source = (tuple(value) + (None,))[:2]
        if kind not in CONSTRAINTS:
            raise DataError(f"constraint {kind!r} for {key!r} is unknown: choose one of {', '.join(CONSTRAINTS)}")
        out[key] = (str(kind), None if source is None else str(source))
    return out


def resolve_sources(choice: dict, targets: list[str], inputs: list[str]) -> list[int | None]:
    """The input index each target interpolates and conserves (see the module docstring)."""
    sources: list[int | None] = []
    for t in targets:
        kind, named = choice[t]
        if named is not None and named not in inputs:
            raise DataError(f"the constraint for {t!r} names input {named!r}, which is not among the inputs "
                            f"{inputs}: add it to predictors= or name another")
        name = named if named is not None else (t if t in inputs else None)
        if name is None and kind != "none":
            raise DataError(f"constraint {kind!r} for {t!r} needs a coarse field to conserve, and {t!r} is not among "
                            f"the inputs {inputs}: add it to predictors=, name an input "
                            f"(constraint={{{t!r}: ({kind!r}, 'input')}}) or use 'none'")
        sources.append(None if name is None else inputs.index(name))
    return sources


def _sample(da, tdim, sample_t) -> np.ndarray:
    values = np.asarray((da.isel({tdim: sample_t}) if tdim else da).values, dtype="float64")
    return values.reshape(-1, *values.shape[-2:])


@dataclass
class MultiSetup:
    """What :func:`prepare_multi` describes before the network is trained (``finish`` reads
    ``meta``, ``path``, ``model`` and ``network``)."""

    cfg: TrainConfig
    model: str
    pair: MultiPair
    sources: list
    input_stats: list
    train_t: np.ndarray
    val_t: np.ndarray
    covariates: np.ndarray | None
    network: dict
    meta: dict
    path: Path
    resume_state: dict | None = None
    resumed_network: dict | None = None  # the network configuration of the checkpoint resumed from
    resumed_from: str | None = None

    @property
    def factor(self) -> int:
        return self.pair.factor

    def checked_resume(self) -> dict | None:
        """The training state to resume from (None: from scratch), once the finished network
        configuration (``network``, with what the family added) is checked against the
        checkpoint's: options other than the fitted statistics must be the same."""
        if self.resumed_network is None:
            return self.resume_state
        ours, theirs = network_options(self.network), network_options(self.resumed_network)
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if differ:
            was = ", ".join(f"{k}={theirs.get(k)!r}" for k in differ)
            now = ", ".join(f"{k}={ours.get(k)!r}" for k in differ)
            raise DataError(f"cannot resume from {self.resumed_from!r}: it was trained with {was}, not {now}; "
                            "resume with the options it was trained with, or train from scratch")
        return self.resume_state

    def datasets(self) -> tuple[MultiPatchDataset, MultiPatchDataset]:
        cfg = self.cfg
        ny, nx = self.pair.hr.shape[-2:]
        n_train = cfg.samples_per_epoch or default_samples_per_epoch(len(self.train_t), (ny, nx),
                                                                     min(cfg.patch_size, ny, nx), cfg.batch_size)
        n_val = cfg.val_samples or max(cfg.batch_size, n_train // 4)
        self.meta["training"].update(samples_per_epoch=n_train, val_samples=n_val)
        return (MultiPatchDataset(self.pair, self.input_stats, self.sources, self.train_t, n_samples=n_train,
                                  seed=cfg.seed, patch_size=cfg.patch_size, covariates=self.covariates),
                MultiPatchDataset(self.pair, self.input_stats, self.sources, self.val_t, n_samples=n_val,
                                  seed=cfg.seed + 1, fixed=True, patch_size=cfg.patch_size,
                                  covariates=self.covariates))

    def save_epoch(self, state: dict) -> None:
        save_round(self.meta, self.path, state)


def _plain(obj):
    """``obj`` as a checkpoint holds it (lists for tuples, Python numbers), to compare with one."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.tolist() if hasattr(obj, "tolist") else obj


def network_options(network: dict) -> dict:
    """A network configuration without what is fitted to the data (statistics, residual scales,
    bounds): targets and inputs by name, constraint and source."""
    out = {k: v for k, v in network.items() if k not in ("targets", "inputs", "residual_scale", "mean", "std")}
    out["targets"] = [{k: t.get(k) for k in ("name", "constraint", "source")} for t in network.get("targets", [])]
    out["inputs"] = [i.get("name") for i in network.get("inputs", [])]
    return _plain(out)


def read_resume(resume, meta: dict) -> tuple[dict, dict]:
    """The training state in the checkpoint ``resume`` and its network configuration, refused in
    one line unless it holds the model, factor, targets, inputs, constraints and covariates that
    ``meta`` (the record of the run to continue) describes."""
    payload = read_checkpoint(resume)
    where = f"cannot resume from {str(resume)!r}"
    net, ours = payload["network"], meta["network"]
    if net["model"] != ours["model"] or net["factor"] != ours["factor"]:
        raise DataError(f"{where}: it holds {net['model']!r} x{net['factor']}, not {ours['model']!r} x{ours['factor']}")
    mine, theirs = meta[SECTION], payload.get(SECTION)
    if theirs is None:
        raise DataError(f"{where}: it was trained on the one target {payload.get('variable')!r}, not on the targets "
                        f"{mine['targets']} from the inputs {mine['inputs']}; train from scratch (drop resume=)")
    for key in ("targets", "inputs", "constraints", "sources"):
        if _plain(theirs.get(key)) != _plain(mine[key]):
            raise DataError(f"{where}: it was trained with {key} {theirs.get(key)}, not {mine[key]}; resume with the "
                            "var=, predictors=, lr= and constraint= it was trained with, or train from scratch")
    if list(payload.get("covariates") or []) != list(meta["covariates"]):
        raise DataError(f"{where}: it was trained with covariates {list(payload.get('covariates') or [])}, not "
                        f"{list(meta['covariates'])}; pass the same covariates=, or train from scratch")
    state = payload.get("resume")
    if state is None:
        raise DataError(f"{str(resume)!r} holds no training state to resume from")
    return state, net


def prepare_multi(hr, *, targets: list[str], lr=None, model: str = "cnn", factor: int | None = None,
                  constraint=None, predictors: list[str] | None = None, covariates=None, cfg: TrainConfig,
                  skip: str | None = "bicubic", checkpoint=None, resume=None, trim: bool = False,
                  model_kwargs: dict | None = None, record_factor: int | None = None,
                  consistency=None, bounds_itself: bool = False) -> MultiSetup:
    """Pair, split, normalise and describe a multi-target training run (``record_factor``: the
    factor the checkpoint and the model store know the model by, where it is not the pairing
    factor; scale-free models: 0, "any"; ``resume``: a checkpoint of the same run to continue,
    module docstring)."""
    choice = parse_constraints(constraint, targets)
    rules = [str(r) for r in parse_rules(consistency, targets)]
    pair = make_multi_pair(hr, targets, lr=lr, predictors=predictors, factor=factor, trim=trim)
    sources = resolve_sources(choice, targets, pair.input_names)
    f, axes, tdim = pair.factor, pair.axes, pair.axes.time
    train_t, val_t = split_times(pair.n_times, cfg.val_fraction)

    def stats_of(da):
        return fit_stats(da.isel({tdim: train_t}) if tdim else da, tdim)

    target_stats = [stats_of(da) for da in pair.targets]
    input_stats = [stats_of(da) for da in pair.inputs]
    sample_t = train_t[np.linspace(0, len(train_t) - 1, min(8, len(train_t))).round().astype(int)]
    specs = []
    for k, t in enumerate(targets):
        kind, s = choice[t][0], sources[k]
        check_constraint_fits(kind, target_stats[k], t)
        if not bounds_itself:
            warn_if_unbounded(kind, target_stats[k], t)
        if kind in POSITIVE_CONSTRAINTS and s is not None:
            check_constraint_fits(kind, input_stats[s], pair.input_names[s])
        scale = None
        if s is not None:
            scale = residual_std(_sample(pair.targets[k], tdim, sample_t), f, pair.row_weights, skip,
                                 coarse=_sample(pair.inputs[s], tdim, sample_t))
        specs.append({"name": t, "constraint": kind, "source": s, "mean": target_stats[k]["mean"],
                      "std": target_stats[k]["std"], "residual_scale": scale,
                      "constraint_kwargs": scadd_bounds(target_stats[k]) if kind == "scadd" else None})
    cov_ds = as_dataset(covariates)
    cov_stats = covariate_stats(cov_ds) if cov_ds is not None else {}
    ny, nx = pair.hr.shape[-2:]
    cov = fold_covariates(cov_ds, cov_stats, (ny, nx), f, spatial_coords(pair.hr, axes.spatial))
    in_channels = len(pair.inputs) + (0 if cov is None else cov.shape[0])
    summary = ",".join(f"{t}={choice[t][0]}" for t in targets)
    known_as = f if record_factor is None else record_factor
    network = {"model": model, "factor": known_as, "in_channels": in_channels, "constraint": summary, "skip": skip,
               "targets": specs, "inputs": [{"name": n, "mean": s["mean"], "std": s["std"]}
                                            for n, s in zip(pair.input_names, input_stats)],
               **(model_kwargs or {})}
    if rules:  # only the wrappers that apply rules take the key (diffusion and liif refuse them)
        network["consistency"] = rules
    variable = "+".join(targets)
    meta = ModelRecord(
        network=network, variable=variable, attrs=cf_attrs(pair.targets[0]), predictors=list(pair.input_names),
        covariates=list(cov_stats),
        normalization={"target": target_stats[0], "targets": target_stats, "predictors": [], "inputs": input_stats,
                       "covariates": cov_stats},
        grid={"kind": axes.kind, "y": axes.y, "x": axes.x, "time": axes.time, "fine_shape": list(pair.hr.shape[-2:]),
              "pair": "real" if pair.real else "coarsened", "fine_spacing": grid_spacing(pair.hr, axes.spatial),
              "input_offset": None if pair.offset is None else list(pair.offset)},
        training={"config": cfg.to_dict(), "train_times": len(train_t), "val_times": len(val_t)},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        sections={SECTION: {"targets": list(targets), "inputs": list(pair.input_names),
                            "attrs": {t: cf_attrs(da) for t, da in zip(targets, pair.targets)},
                            "constraints": {t: choice[t][0] for t in targets}, "consistency": rules,
                            "sources": {t: None if s is None else pair.input_names[s]
                                        for t, s in zip(targets, sources)}}},
    ).to_meta()
    path = Path(checkpoint) if checkpoint else model_store.default_path(variable, model, known_as)
    state, resumed = read_resume(resume, meta) if resume is not None else (None, None)
    return MultiSetup(cfg=cfg, model=model, pair=pair, sources=sources, input_stats=input_stats, train_t=train_t,
                      val_t=val_t, covariates=cov, network=network, meta=meta, path=path, resume_state=state,
                      resumed_network=resumed, resumed_from=None if resume is None else str(resume))


def as_targets(request: FitRequest) -> tuple[list[str], FitRequest]:
    """The targets of a request on this path and the request with ``hr`` as a Dataset: one named
    target driven by ``predictors=`` is ``[name]`` here."""
    targets = target_names(request.var)
    if targets is not None:
        return targets, request
    hr = request.hr
    if isinstance(hr, xr.DataArray):
        if hr.name is None:
            raise DataError("predictors= with a DataArray hr needs a named field: hr.rename('msl')")
        return [str(hr.name)], dataclasses.replace(request, hr=hr.to_dataset())
    if request.var is None:
        raise DataError("predictors= with a Dataset hr needs the target too: var='msl'")
    return [str(request.var)], request


def prepare_request(request: FitRequest, targets: list[str], model_kwargs: dict,
                    record_factor: int | None = None, bounds_itself: bool = False) -> MultiSetup:
    """:func:`prepare_multi` for what ``fit`` was asked (the families' one way in)."""
    return prepare_multi(request.hr, targets=targets, lr=request.lr, model=request.model, factor=request.factor,
                         constraint=request.constraint,
                         predictors=list(request.predictors) if request.predictors else None,
                         covariates=request.covariates, cfg=request.cfg, skip=request.skip,
                         checkpoint=request.checkpoint, resume=request.resume, trim=request.trim,
                         model_kwargs=model_kwargs,
                         record_factor=record_factor, consistency=request.consistency,
                         bounds_itself=bounds_itself)
