"""Turn what the user passed as ``model=`` into a :class:`Downscaler`."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from .. import model_store
from ..errors import DataError, ModelNotFoundError, suggest
from ..models import list_models, model_info
from .downscaler import Downscaler
from .record import ModelRecord
from .setup import POSITIVE_CONSTRAINTS, grid_spacing

_LOADED: OrderedDict = OrderedDict()  # (path, inode, size, mtime) -> Downscaler
_LOADED_LOCK = threading.Lock()
LOADED_CACHE_SIZE = 8


def load_checkpoint_cached(path) -> Downscaler:
    """``Downscaler.load(path)``, kept per process while the file is unchanged (same inode, size and
    modification time: a rewrite, atomic or not, loads afresh), so ``predict(model="x.pt")`` in a
    loop reads, hashes and builds the network once."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return Downscaler.load(path)  # its own clear error
    key = (str(p), st.st_ino, st.st_size, st.st_mtime_ns)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    loaded = Downscaler.load(path)
    with _LOADED_LOCK:
        _LOADED[key] = loaded
        while len(_LOADED) > LOADED_CACHE_SIZE:
            _LOADED.popitem(last=False)
    return loaded


def baseline(name: str, factor: int, constraint: str = "none", constraint_kwargs: dict | None = None) -> Downscaler:
    """A :class:`Downscaler` for an interpolation baseline (no weights, identity normalisation).
    ``constraint_kwargs``: the scadd bounds (see :func:`fit_baseline_to`)."""
    network = {"model": name, "factor": int(factor), "in_channels": 1, "constraint": constraint,
               "skip": None, "mean": 0.0, "std": 1.0, "constraint_kwargs": constraint_kwargs}
    return Downscaler.from_meta(ModelRecord(network=network).to_meta())


def resolve_model(model, *, factor: float | None = None, variable: str | None = None,
                  constraint: str | None = None, check_factor: bool = True, field=None,
                  allow_other_variable: bool = False) -> Downscaler:
    """A Downscaler from a Downscaler, a checkpoint path or a registered model name.

    ``check_factor=False`` leaves the factor to the model family (arbitrary-scale models).
    ``field``: the coarse DataArray the model will be applied to, checked by :func:`check_applicable`."""
    if isinstance(model, Downscaler):
        ds = model
    elif isinstance(model, (str, os.PathLike)) and (Path(model).suffix in (".pt", ".pth") or Path(model).is_file()):
        ds = load_checkpoint_cached(model)
    elif isinstance(model, str):
        try:
            info = model_info(model)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"unknown model {model!r}: neither a registered model nor an existing checkpoint file."
                f"{suggest(model, list_models())} Registered models: {', '.join(list_models())}"
            ) from None
        if not info["trainable"]:
            if factor is None:
                raise DataError(f"baseline {model!r} needs a factor: predict(model={model!r}, factor=4)")
            return baseline(model, factor, constraint or "none")
        ds = load_checkpoint_cached(model_store.find_latest(variable, model, factor))
    else:
        raise DataError(f"model must be a name, a checkpoint path or a Downscaler, got {type(model).__name__}")
    if check_factor and factor is not None and int(factor) != ds.factor:
        raise DataError(f"factor={factor} but the model was trained for x{ds.factor}; drop factor= or use another "
                        "model")
    if constraint is not None and constraint != ds.constraint:
        raise DataError(f"the model was trained with constraint {ds.constraint!r}; constraint={constraint!r} cannot "
                        "be changed at prediction time (train another model)")
    if field is not None:
        check_applicable(ds, field, allow_other_variable=allow_other_variable)
    return ds




def load_if_path(model):
    """A checkpoint path loaded once into a Downscaler; names and Downscalers as they are."""
    if isinstance(model, Downscaler) or (isinstance(model, str) and model in list_models()):
        return model
    return resolve_model(model, check_factor=False)


def model_name_of(model) -> str:
    """The registered model name behind a name or a Downscaler."""
    return model.model_name if isinstance(model, Downscaler) else str(model)


def fit_baseline_to(downscaler: Downscaler, lr) -> Downscaler:
    """A baseline's constraint made right for the coarse field ``lr`` it will be applied to.

    ``fit`` checks the constraint against the training data; a baseline has none, so the input
    stands in: ``mult``/``softmax`` are refused on a field with negative values (they would make
    the output negative), and ``scadd`` gets its bounds from the input's range (its default
    bounds, [-1, 1] in normalised units, are meaningless for identity normalisation). Trained
    models are returned unchanged."""
    constraint = downscaler.constraint
    if model_info(downscaler.model_name)["trainable"] or constraint not in ("mult", "softmax", "scadd"):
        return downscaler
    import dask

    from ..data.normalize import scadd_bounds

    # one pass over a lazy input for all three statistics
    low, high, spread = (float(v) for v in dask.compute(lr.min(), lr.max(), lr.std()))
    if constraint in POSITIVE_CONSTRAINTS and low < 0:
        raise DataError(f"constraint {constraint!r} needs a non-negative field, but {lr.name!r} reaches {low:.4g}; "
                        "use constraint='add' or 'scadd' (or convert units, e.g. degC -> K)")
    if constraint == "scadd" and downscaler.config.get("constraint_kwargs") is None:
        bounds = scadd_bounds({"min": low, "max": high, "std": spread or 1.0})
        return baseline(downscaler.model_name, downscaler.factor, "scadd", bounds)
    return downscaler


def check_applicable(downscaler: Downscaler, field, *, allow_other_variable: bool = False) -> None:
    """Refuse a trained model on a field it was not trained for: another variable, other units
    or another grid spacing (a model learns the statistics and the scales of its training data,
    and would return plausible-looking nonsense). ``allow_other_variable=True`` (CLI: ``--force``)
    lets it run, with a warning. Baselines and checkpoints without these facts pass."""
    import warnings

    meta = downscaler.meta
    problems = []
    name = None if field.name is None else str(field.name)
    if downscaler.variable and name is not None and name != downscaler.variable:
        problems.append(f"variable {name!r}, not {downscaler.variable!r}")
    trained_units = str(meta.get("attrs", {}).get("units", "")).strip()
    units = str(field.attrs.get("units", "")).strip()
    if trained_units and units and units != trained_units:
        problems.append(f"units {units!r}, not {trained_units!r}")
    grid = meta.get("grid", {})
    fine = grid.get("fine_spacing")
    have = grid_spacing(field, (grid.get("y"), grid.get("x"))) if fine and downscaler.factor else None
    if have is not None:
        want = [float(s) * downscaler.factor for s in fine]
        if any(abs(h - w) > 0.01 * w for h, w in zip(have, want)):
            problems.append(f"grid spacing {have[0]:.4g} x {have[1]:.4g}, not the {want[0]:.4g} x {want[1]:.4g} "
                            f"of its coarse training input")
    if not problems:
        return
    what = f"model {downscaler.model_name!r}" + (f" ({downscaler.checkpoint})" if downscaler.checkpoint else "")
    msg = f"{what} was trained on other data: the input has " + "; ".join(problems)
    if not allow_other_variable:
        raise DataError(msg + ". Train a model for this data, or pass allow_other_variable=True (CLI: --force) "
                              "if this is intended")
    warnings.warn(msg + " (allowed by allow_other_variable=True)", stacklevel=4)
