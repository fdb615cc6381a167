"""Statistical bias correction: empirical quantile mapping (EQM) and quantile delta mapping (QDM).

Per grid cell, over the time dimension, with quantile nodes
``eps, (k + 0.5) / n for k < n, 1 - eps`` (the convention of xclim/xsdba):

* EQM: ``af(q) = Qref(q) - Qhist(q)`` (``kind="+"``) or ``Qref / Qhist`` (``"*"``);
  a value ``v`` of the simulation gets its rank ``tau`` in the *historical*
  distribution and becomes ``v + af(tau)`` (or ``v * af(tau)``).
* QDM (Cannon et al. 2015): the same, but ``tau`` is the rank of ``v`` in the
  simulation's *own* distribution, so a change between hist and sim is kept.

Ranks and factors are linearly interpolated between nodes and held constant
beyond the outer nodes. ``backend="xsdba"`` runs the same methods through the
optional xsdba package (``pip install xsdba``); the default is this module's
NumPy implementation.

:func:`bias_correct` is the statistical baseline of the package: bicubic
interpolation of the coarse field to the fine grid, then quantile mapping
trained on a period where both the coarse input and the fine reference exist,
so :func:`xdownscale.evaluate` can compare it with the deep models.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import DataError, XDownscaleError
from .grid.cf import find_axes

METHODS = ("eqm", "qdm")
KINDS = ("+", "*")
BACKENDS = ("numpy", "xsdba")


def quantile_nodes(n_quantiles: int, eps: float = 1e-6) -> np.ndarray:
    """``[eps, 1/(2n), 3/(2n), ..., 1 - 1/(2n), 1 - eps]``."""
    if int(n_quantiles) < 1:
        raise DataError(f"n_quantiles must be >= 1, got {n_quantiles}")
    n = int(n_quantiles)
    return np.concatenate([[eps], (np.arange(n) + 0.5) / n, [1 - eps]])


def _interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp``: x (T, N), xp/fp (Q, N) -> (T, N); constant beyond the ends, NaN kept."""
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        ok = np.isfinite(xp[:, j]) & np.isfinite(fp[:, j])
        if ok.sum() == 0:
            continue
        out[:, j] = np.interp(x[:, j], xp[ok, j], fp[ok, j])
    return np.where(np.isfinite(x), out, np.nan)


def _factors(ref_q: np.ndarray, hist_q: np.ndarray, kind: str) -> np.ndarray:
    if kind == "+":
        return ref_q - hist_q
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hist_q != 0, ref_q / np.where(hist_q != 0, hist_q, 1), 1.0)


def _quantiles(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        return np.nanquantile(a, q, axis=0)


def quantile_map_array(sim: np.ndarray, ref: np.ndarray, hist: np.ndarray, *, method: str = "eqm",
                       kind: str = "+", n_quantiles: int = 50, eps: float = 1e-6) -> np.ndarray:
    """EQM/QDM of (T, N) arrays along axis 0 (one mapping per column). NaNs are skipped."""
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, got {method!r}")
    if kind not in KINDS:
        raise DataError(f"kind must be '+' (additive, e.g. temperature) or '*' (multiplicative, e.g. "
                        f"precipitation), got {kind!r}")
    q = quantile_nodes(n_quantiles, eps)
    ref_q, hist_q = _quantiles(ref, q), _quantiles(hist, q)
    af = _factors(ref_q, hist_q, kind)
    rank_from = hist_q if method == "eqm" else _quantiles(sim, q)
    tau = _interp_rows(sim, rank_from, np.broadcast_to(q[:, None], rank_from.shape))
    qs = np.broadcast_to(q[:, None], af.shape)
    factor = np.stack([np.interp(tau[:, j], qs[:, j], np.nan_to_num(af[:, j], nan=0.0 if kind == "+" else 1.0))
                       for j in range(sim.shape[1])], axis=1) if sim.shape[1] else tau
    return sim + factor if kind == "+" else sim * factor


def _to_2d(da: xr.DataArray, tdim: str) -> tuple[np.ndarray, list, tuple]:
    rest = [d for d in da.dims if d != tdim]
    arr = np.asarray(da.transpose(tdim, *rest).values, dtype="float64")
    return arr.reshape(arr.shape[0], -1), rest, arr.shape[1:]


def _time_dim(da: xr.DataArray, role: str) -> str:
    """The time dimension: found by CF attributes on a grid, else a datetime or 'time' dimension."""
    try:
        t = find_axes(da).time
    except XDownscaleError:
        t = next((d for d in da.dims if d == "time" or (d in da.coords and np.issubdtype(da[d].dtype,
                                                                                          np.datetime64))), None)
    if t is None or t not in da.dims:
        raise DataError(f"{role} needs a time dimension to build its distribution (name it 'time' or give it "
                        "axis='T')")
    return t


def _xsdba_map(sim, ref, hist, method, kind, n_quantiles, tdim):
    try:
        import xsdba
    except ImportError as exc:
        raise ImportError("backend='xsdba' needs the optional package xsdba: pip install xsdba") from exc
    units = str(ref.attrs.get("units") or hist.attrs.get("units") or "1")

    def prep(da):
        da = da.rename({tdim: "time"}).astype("float64")
        return da.assign_attrs(units=units)

    cls = xsdba.EmpiricalQuantileMapping if method == "eqm" else xsdba.QuantileDeltaMapping
    model = cls.train(prep(ref), prep(hist), nquantiles=int(n_quantiles), group="time", kind=kind)
    out = model.adjust(prep(sim), interp="linear", extrapolation="constant")
    return out.rename({"time": tdim}).transpose(*sim.dims)


def quantile_mapping(sim: xr.DataArray, ref: xr.DataArray, hist: xr.DataArray, *, method: str = "eqm",
                     kind: str = "+", n_quantiles: int = 50, backend: str = "numpy") -> xr.DataArray:
    """Bias-correct ``sim`` per grid cell with the mapping from ``hist`` to ``ref``.

    ``ref``: the reference (observations) and ``hist``: the biased source over the same
    training period, on the grid of ``sim``; their time axes may differ from ``sim``'s.
    """
    if backend not in BACKENDS:
        raise DataError(f"backend must be one of {BACKENDS}, got {backend!r}")
    tdim = _time_dim(sim, "sim")
    for role, da in (("ref", ref), ("hist", hist)):
        others = [d for d in da.dims if d != _time_dim(da, role)]
        if [da.sizes[d] for d in others] != [sim.sizes[d] for d in sim.dims if d != tdim]:
            raise DataError(f"{role} must be on the grid of sim (same non-time dims and sizes): {role} has "
                            f"{dict(da.sizes)}, sim {dict(sim.sizes)}; regrid or interpolate it first")
    ref = ref.rename({_time_dim(ref, "ref"): tdim}) if _time_dim(ref, "ref") != tdim else ref
    hist = hist.rename({_time_dim(hist, "hist"): tdim}) if _time_dim(hist, "hist") != tdim else hist
    if backend == "xsdba":
        out = _xsdba_map(sim, ref, hist, method, kind, n_quantiles, tdim)
        out = xr.DataArray(out.values, dims=sim.dims, coords=sim.coords, name=sim.name)
    else:
        s, rest, shape = _to_2d(sim, tdim)
        r, _, _ = _to_2d(ref.transpose(tdim, *rest), tdim)
        h, _, _ = _to_2d(hist.transpose(tdim, *rest), tdim)
        mapped = quantile_map_array(s, r, h, method=method, kind=kind, n_quantiles=n_quantiles)
        out = xr.DataArray(mapped.reshape(s.shape[0], *shape).astype(sim.dtype), dims=[tdim, *rest],
                           coords=sim.coords, name=sim.name).transpose(*sim.dims)
    out.attrs = dict(sim.attrs)
    out.attrs["bias_correction"] = f"{method.upper()} ({kind}), {n_quantiles} quantiles, backend {backend}"
    return out


def bias_correct(lr, *, ref: xr.DataArray, hist: xr.DataArray, method: str = "qdm", kind: str = "+",
                 n_quantiles: int = 50, interp: str = "bicubic", like: xr.DataArray | None = None,
                 backend: str = "numpy") -> xr.DataArray:
    """Statistical downscaling baseline: ``interp`` interpolation of the coarse ``lr``, then
    quantile mapping (``method`` "eqm" or "qdm") per fine cell.

    ``ref``: the fine reference over a training period; ``hist``: the coarse source over
    that same period (interpolated the same way here). ``like``: fine field whose exact
    coordinates the result carries (default ``ref``). Returns a fine DataArray in memory.
    """
    from .data.pairs import select_variable
    from .prediction import predict

    lr = select_variable(lr, None, "lr")
    ref, hist = select_variable(ref, None, "ref"), select_variable(hist, None, "hist")
    lax, rax = find_axes(lr), find_axes(ref)
    f = ref.sizes[rax.y] / lr.sizes[lax.y]
    if f != int(f) or f < 1 or ref.sizes[rax.x] / lr.sizes[lax.x] != f:
        raise DataError(f"ref ({ref.sizes[rax.y]}x{ref.sizes[rax.x]}) must be an integer multiple of lr "
                        f"({lr.sizes[lax.y]}x{lr.sizes[lax.x]}) on both axes")
    like = ref.isel({rax.time: 0}, drop=True) if like is None and rax.time else (like if like is not None else ref)
    sim_fine = predict(lr, model=interp, factor=int(f), like=like).compute()
    hist_fine = predict(hist, model=interp, factor=int(f), like=like).compute()
    out = quantile_mapping(sim_fine, ref, hist_fine, method=method, kind=kind, n_quantiles=n_quantiles,
                           backend=backend)
    out.attrs["bias_correction"] = f"{interp} interpolation x{int(f)}, then " + out.attrs["bias_correction"]
    return out
