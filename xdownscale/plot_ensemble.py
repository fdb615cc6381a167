"""Plots for ensembles: rank histogram, power spectra of several models, member panel map.

Matplotlib only (imported when a function is called, Agg without a display,
as in :mod:`xdownscale.plot`). Every function returns the Figure and saves a
PNG to ``path`` when given.
"""
from __future__ import annotations

import os

import numpy as np
import xarray as xr

from .errors import DataError
from .grid.cf import find_axes
from .metrics.probabilistic import rank_flatness, rank_histogram
from .metrics.spectral import power_spectrum
from .plot import cell_edges, pyplot_module, robust_limits, select_time

__all__ = ["plot_members", "plot_rank_histogram", "plot_spectra"]


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110, format="png")
    return fig


def plot_rank_histogram(ens_or_hist, truth: xr.DataArray | None = None, *, member_dim: str = "member",
                        label: str | None = None, path=None, ax=None):
    """Bar chart of a rank histogram as relative frequencies, with the flat line ``1/(m+1)``.

    Pass the counts (from :func:`xdownscale.metrics.rank_histogram`) or an
    ensemble and the truth. The title gives the reliability index (0: flat).
    """
    plt = pyplot_module()
    hist = ens_or_hist if truth is None else rank_histogram(ens_or_hist, truth, member_dim)
    counts = np.asarray(getattr(hist, "values", hist), dtype="float64")
    if counts.sum() <= 0:
        raise DataError("the rank histogram is empty: no valid points to plot")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.6))
    freq = counts / counts.sum()
    ax.bar(np.arange(counts.size), freq, color="tab:blue", width=0.85)
    ax.axhline(1.0 / counts.size, color="k", ls="--", lw=1, label="flat")
    ax.set_xlabel("rank of the truth among the members")
    ax.set_ylabel("relative frequency")
    ax.set_title(f"{label + ': ' if label else ''}reliability index {rank_flatness(counts):.3f}")
    ax.legend()
    return _finish(fig, path)


def plot_spectra(fields: dict, truth: xr.DataArray | None = None, *, spacing=None, units=None, window="hann",
                 path=None, title: str | None = None, ax=None):
    """Log-log radially averaged power spectra of several predictions (``{label: DataArray}``;
    ensembles are averaged over their members) and of the truth (black); Hann-tapered by
    default (``window=None``: periodic)."""
    plt = pyplot_module()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4.2))
    items = list(fields.items()) + ([("truth", truth)] if truth is not None else [])
    if not items:
        raise DataError("plot_spectra needs at least one field")
    kunits = ""
    for label, da in items:
        spec = power_spectrum(da, spacing=spacing, units=units, window=window)
        k, p = spec["wavenumber"].values, np.asarray(spec.values, dtype="float64")
        ok = np.isfinite(p) & (p > 0)
        style = dict(color="k", lw=2) if label == "truth" else dict(lw=1.3)
        ax.loglog(k[ok], p[ok], label=label, **style)
        kunits = spec["wavenumber"].attrs.get("units", "")
    ax.set_xlabel(f"wavenumber [{kunits}]")
    ax.set_ylabel("power per mode")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "radially averaged power spectra")
    return _finish(fig, path)


def plot_members(ens: xr.DataArray, truth: xr.DataArray | None = None, *, member_dim: str = "member",
                 n: int = 4, time=0, cmap: str = "viridis", path=None):
    """Map panel: the truth (if given), the ensemble mean and the first ``n`` members at ``time``
    (index or label), one colour scale for all."""
    plt = pyplot_module()
    if member_dim not in ens.dims:
        raise DataError(f"no ensemble dimension {member_dim!r} in dims {tuple(ens.dims)}")
    axes = find_axes(ens)
    n = min(int(n), ens.sizes[member_dim])
    panels = []
    if truth is not None:
        panels.append(("truth", select_time(truth, find_axes(truth), time)[0]))
    mean, label = select_time(ens.mean(member_dim), axes, time)
    panels.append(("ensemble mean", mean))
    for k in range(n):
        panels.append((f"member {k}", select_time(ens.isel({member_dim: k}), axes, time)[0]))
    vmin, vmax = robust_limits([np.asarray(p.values) for _, p in panels])
    fig, axs = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.8, 3.0), squeeze=False)
    xe, ye = cell_edges(mean, axes)
    mesh = None
    for ax, (name, p) in zip(axs[0], panels):
        mesh = ax.pcolormesh(xe, ye, np.asarray(p.values), vmin=vmin, vmax=vmax, cmap=cmap)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal" if axes.kind != "latlon" else 1.0 / max(np.cos(np.deg2rad(float(ye.mean()))), 0.1))
    units = ens.attrs.get("units", "")
    fig.colorbar(mesh, ax=list(axs[0]), shrink=0.8, label=f"{ens.name or ''} [{units}]".strip())
    fig.suptitle(f"ensemble members {label}".strip(), fontsize=10)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110, format="png")
    return fig
