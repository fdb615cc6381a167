"""``predict``: downscale a coarse field lazily with a trained model or a baseline.

A thin face: it loads a checkpoint path once, builds a
:class:`~xdownscale.engine.contract.PredictRequest` and hands it to the model's family."""
from __future__ import annotations

from .config import DEFAULT_PRECISION
from .engine.contract import PredictRequest
from .engine.precision import check_precision
from .engine.resolve import baseline, load_if_path, model_name_of
from .models import family_of

__all__ = ["baseline", "predict"]


def predict(lr, *, model, factor: int | None = None, var: str | None = None, covariates=None,
            constraint: str | None = None, chunks=None, halo: int | None = None, batch_size: int = 16,
            device: str = "auto", like=None, allow_other_variable: bool = False, max_memory=None,
            precision: str = DEFAULT_PRECISION, **options):
    """Downscale ``lr`` (DataArray, or Dataset with ``var``) with ``model``.

    ``model`` is a :class:`Downscaler`, a checkpoint path, a baseline name
    (``"bicubic"``, needs ``factor``) or a trainable model name, in which case
    the latest checkpoint for that variable, model and factor in the model
    store is used. Returns a lazy, Dask-backed DataArray on the fine grid with
    CF metadata and provenance (a Dataset for Dataset input).

    ``covariates``: the static fine-grid fields the model was trained with (a Dataset or named
    DataArray on the fine grid of ``lr``); a model trained with them refuses to run without.

    ``like``: a fine field whose exact coordinates the result should carry
    (e.g. the truth ``hr`` that ``lr`` was coarsened from), so that ``sr - hr``
    aligns label for label; rebuilt fine centres otherwise differ from the
    original ones by float round-off.

    ``allow_other_variable``: a trained model refuses a field of another variable, other units
    or another grid spacing than it was trained on; True lets it run, with a warning.

    ``max_memory``: the memory prediction may use on top of the interpreter and the model (bytes,
    or a string such as ``"2GB"``; default: half the available memory, at most 4 GiB, or
    ``$XDOWNSCALE_MAX_MEMORY``). It sets the tile size, the time steps per chunk, the frames per
    network pass and how many chunks run at once, so the peak stays under it while the result is
    written to a file (a result held whole with ``.compute()`` adds its own size). Bounds the
    spatial, stochastic (``members=``) and temporal models; results do not depend on it.

    ``precision``: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the CPU or
    GPU runs it natively, else fp32): the arithmetic of the network body only; interpolation,
    normalisation and the constraint stay float32, so conservation holds as in fp32 (see
    :mod:`xdownscale.engine.precision`). The spatial models (``cnn``, ``espcn``, ...) take it.

    A small input held in memory (one chunk of the plan) is predicted at once and returned holding
    numpy, with no Dask graph; larger or Dask-backed inputs give a lazy result.

    ``options``: what the model family accepts beyond these (e.g. ``members=``
    and ``seed=`` for stochastic models); see ``xds.model_info(name)``.
    """
    model = load_if_path(model)
    request = PredictRequest(lr=lr, model=model, factor=factor, var=var, covariates=covariates,
                             constraint=constraint, chunks=chunks, halo=halo, batch_size=batch_size, device=device,
                             like=like, allow_other_variable=allow_other_variable, max_memory=max_memory,
                             precision=precision, options=options)
    family = family_of(model_name_of(model))
    check_precision(family, precision, model_name_of(model))
    return family.predict(request)

