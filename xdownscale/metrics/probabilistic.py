"""Probabilistic verification of ensemble (generative) downscaling.

The ensemble members lie along ``member_dim`` of ``ens``; ``truth`` has the
same dims without it.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError
from .deterministic import Dim, check_pair, reduce_dims, weights_for, wmean

__all__ = ["crps_ensemble", "rank_histogram", "rank_flatness", "spread_skill", "ensemble_scores"]
FLATNESS_KINDS = ("ri", "delta", "entropy")


def _check_ens(ens: xr.DataArray, truth: xr.DataArray, member_dim: str):
    if not isinstance(ens, xr.DataArray):
        raise TypeError(f"ens must be an xarray.DataArray, got {type(ens).__name__}")
    if member_dim not in ens.dims:
        raise DataError(
            f"ens has no ensemble dimension {member_dim!r} (its dims are {tuple(ens.dims)}); "
            "pass member_dim=... naming the dimension that holds the members."
        )
    if isinstance(truth, xr.DataArray) and member_dim in truth.dims:
        raise DataError(f"truth must not have the ensemble dimension {member_dim!r}")
    ens, truth, axes = check_pair(ens, truth, names=("ens", "truth"))
    return ens, truth, axes


def _crps_core(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of sorted-member identity on the last axis of ``x`` against ``y``.

    With members sorted, ``x_(1) <= ... <= x_(m)``,
    ``E|X - X'| = 2/m^2 sum_i (2i - m - 1) x_(i)``, so the whole score costs
    O(m log m). NaN members are ignored (m counts the valid ones); a NaN
    observation or no valid member gives NaN.
    """
    x = np.sort(np.asarray(x, dtype="float64"), axis=-1)  # NaN sort last
    y = np.asarray(y, dtype="float64")
    valid = ~np.isnan(x)
    m = valid.sum(axis=-1)
    i = np.arange(1, x.shape[-1] + 1, dtype="float64")
    xf = np.where(valid, x, 0.0)
    mf = m[..., None].astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        skill = np.sum(np.where(valid, np.abs(xf - y[..., None]), 0.0), axis=-1) / m
        spread = np.sum(np.where(valid, (2.0 * i - mf - 1.0) * xf, 0.0), axis=-1) / m.astype("float64") ** 2
    out = skill - spread
    return np.where((m == 0) | np.isnan(y), np.nan, out)


def crps_ensemble(ens: xr.DataArray, truth: xr.DataArray, member_dim: str = "member") -> xr.DataArray:
    """Continuous ranked probability score of an ensemble, at every point.

    The standard (not "fair") estimator for the empirical ensemble
    distribution, ``CRPS = mean_i |x_i - y| - 1/2 mean_ij |x_i - x_j|``,
    computed in O(m log m) per point by sorting the members; it equals
    ``properscoring.crps_ensemble(truth, ens, axis=member)``, NaN members
    ignored. Units are those of the field; no reduction is done (average with
    e.g. ``crps.weighted(area_weights(crps)).mean()``). Lazy on Dask (the
    member dim is put into one chunk).
    """
    ens, truth, _ = _check_ens(ens, truth, member_dim)
    out = xr.apply_ufunc(
        _crps_core, ens, truth, input_core_dims=[[member_dim], []], output_core_dims=[[]],
        dask="parallelized", output_dtypes=["float64"], dask_gufunc_kwargs={"allow_rechunk": True},
    )
    out.name, out.attrs = "crps", {}
    return out


def rank_histogram(ens: xr.DataArray, truth: xr.DataArray, member_dim: str = "member", *,
                   seed: int | np.random.Generator | None = 0) -> xr.DataArray:
    """Talagrand rank histogram: counts of the rank of ``truth`` among the members.

    The rank of an observation is the number of members below it (0..m); when
    members equal the observation the rank is drawn uniformly among the tied
    positions with ``np.random.default_rng(seed)`` (pass a Generator to
    continue a stream). Points where the observation or any member is NaN are
    left out. Returns a DataArray of ``m + 1`` counts over dim ``rank`` whose
    sum is the number of points used; a calibrated ensemble gives a flat
    histogram. Computed eagerly (Dask inputs are loaded).
    """
    ens, truth, _ = _check_ens(ens, truth, member_dim)
    e, t = xr.broadcast(ens, truth, exclude=[member_dim])
    other = [d for d in e.dims if d != member_dim]
    m = e.sizes[member_dim]
    x = np.asarray(e.transpose(*other, member_dim).values, dtype="float64").reshape(-1, m)
    y = np.asarray(t.transpose(*other).values, dtype="float64").reshape(-1)
    ok = ~np.isnan(y) & ~np.isnan(x).any(axis=-1)
    x, y = x[ok], y[ok]
    below = (x < y[:, None]).sum(axis=-1)
    ties = (x == y[:, None]).sum(axis=-1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rank = below + rng.integers(0, ties + 1)
    counts = np.bincount(rank, minlength=m + 1)
    return xr.DataArray(counts, dims=["rank"], coords={"rank": np.arange(m + 1)}, name="rank_histogram",
                        attrs={"long_name": "rank histogram counts", "units": "1"})


def spread_skill(ens: xr.DataArray, truth: xr.DataArray, member_dim: str = "member", *,
                 weighted: bool = True, dim: Dim = None) -> xr.Dataset:
    """Ensemble spread against the error of the ensemble mean.

    Returns a Dataset with

    * ``spread``: ``sqrt(mean(var))``, the root of the mean ensemble variance
      (unbiased, ddof=1) over ``dim``;
    * ``rmse``: RMSE of the ensemble mean over the same cells;
    * ``ratio``: ``sqrt((m + 1) / m) * spread / rmse``, which is 1 for a
      calibrated m-member ensemble (Fortin et al. 2014); < 1 means
      under-dispersion.

    Means are cos(lat)-weighted on lat/lon grids when ``weighted``. Points where
    the truth or any member is NaN are left out.
    """
    ens, truth, axes = _check_ens(ens, truth, member_dim)
    m = ens.sizes[member_dim]
    if m < 2:
        raise DataError(f"spread_skill needs at least 2 members, got {m}")
    x = ens.astype("float64")
    mask = truth.notnull() & x.notnull().all(member_dim)
    var = x.var(member_dim, ddof=1).where(mask)
    err2 = ((x.mean(member_dim) - truth.astype("float64")) ** 2).where(mask)
    dims = reduce_dims(err2, dim)
    w = weights_for(truth, axes, weighted)
    spread = np.sqrt(wmean(var, w, dims))
    skill = np.sqrt(wmean(err2, w, dims))
    ratio = np.sqrt((m + 1.0) / m) * spread / skill
    return xr.Dataset({"spread": spread, "rmse": skill, "ratio": ratio})


def rank_flatness(hist, kind: str = "ri") -> float:
    """How flat a rank histogram is (the counts of :func:`rank_histogram`).

    With ``p_k`` the relative frequencies of the ``m + 1`` ranks:

    * ``"ri"`` (default): reliability index ``sum_k |p_k - 1/(m+1)|``
      (Delle Monache et al. 2006): 0 for a flat histogram, up to
      ``2 m / (m + 1)`` when every observation falls in one rank; independent
      of the number of points;
    * ``"delta"``: ``sum_k (s_k - n/(m+1))^2 / (n m / (m+1))`` for counts
      ``s_k`` of ``n`` points (Candille & Talagrand 2005): about 1 for
      independent draws from a calibrated ensemble, much larger when not
      (spatially correlated points inflate it);
    * ``"entropy"``: ``-sum_k p_k log p_k / log(m + 1)``: 1 when flat.
    """
    counts = np.asarray(hist.values if isinstance(hist, xr.DataArray) else hist, dtype="float64").ravel()
    if counts.size < 2 or np.any(counts < 0):
        raise DataError(f"a rank histogram needs >= 2 non-negative counts, got {counts.size} values")
    n, bins = counts.sum(), counts.size
    if n == 0:
        raise DataError("the rank histogram is empty (no valid points)")
    p = counts / n
    if kind == "ri":
        return float(np.abs(p - 1.0 / bins).sum())
    if kind == "delta":
        m = bins - 1
        return float(((counts - n / bins) ** 2).sum() / (n * m / bins))
    if kind == "entropy":
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum() / np.log(bins))
    raise DataError(f"kind must be one of {FLATNESS_KINDS}, got {kind!r}")


def ensemble_scores(ens: xr.DataArray, truth: xr.DataArray, member_dim: str = "member", *, weighted: bool = True,
                    dim: Dim = None) -> dict:
    """The ensemble-only entries of :func:`xdownscale.evaluate` (besides ``crps``).

    ``spread`` and ``spread_skill_ratio`` (:func:`spread_skill`, over ``dim``),
    ``rank_histogram`` (over dim ``rank``) and ``rank_flatness`` (reliability
    index, :func:`rank_flatness`) over all points, and the radially averaged
    power spectra of the members and of the truth (over ``wavenumber``) with
    their log spectral distance ``lsd`` in dB, with a Hann taper (limited-area
    fields are not periodic: without it the edge jump's leakage hides the
    small scales). ``lsd`` is NaN when every field has a missing cell (e.g.
    land-only data: spectra need complete fields).
    """
    from .spectral import log_spectral_distance, power_spectrum

    out = {}
    if ens.sizes[member_dim] >= 2:
        ss = spread_skill(ens, truth, member_dim, weighted=weighted, dim=dim)
        out["spread"], out["spread_skill_ratio"] = ss["spread"], ss["ratio"]
    hist = rank_histogram(ens, truth, member_dim)
    out["rank_histogram"] = hist
    out["rank_flatness"] = xr.DataArray(rank_flatness(hist) if int(hist.sum()) else np.nan)
    try:
        spec_p, spec_t = power_spectrum(ens, window="hann"), power_spectrum(truth, window="hann")
        out["spectrum"] = spec_p.drop_vars("wavelength")
        out["spectrum_truth"] = spec_t.drop_vars("wavelength")
        out["lsd"] = xr.DataArray(log_spectral_distance(ens, truth, window="hann"))
    except DataError:
        out["lsd"] = xr.DataArray(np.nan)
    return out
