"""``report(sr, hr, lr=..., path="report.html")``: one self-contained HTML page judging a downscaled product.

The page holds maps of truth, prediction and error, radially averaged spectra,
QQ plots, maps of the distribution scores, the rank histogram of an ensemble,
the scores of ``evaluate(..., suite="climate")`` and the climate-index biases
as tables, and the provenance (``history`` attributes). Every figure is a PNG
embedded as base64, so the file can be mailed or attached as it is.
matplotlib is imported only here (``pip install 'xdownscale[plot]'``).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError

__all__ = ["report"]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.meta{color:#555;font-size:.9em}.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.row figure{flex:0 1 auto;max-width:48%}
"""


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - matplotlib is in the plot and test extras
        raise ImportError("report() needs matplotlib: pip install 'xdownscale[plot]'") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _fmt(v) -> str:
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for r in rows:
        cells = [f'<td class="num">{_fmt(c)}</td>' if isinstance(c, (int, float, np.floating)) else
                 f"<td>{html.escape(str(c))}</td>" for c in r]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _plain2d(da: xr.DataArray, axes) -> xr.DataArray:
    da = da.transpose(axes.y, axes.x)
    return da.drop_vars([c for c in da.coords if c not in da.dims])


def _maps_figure(panels, axes, units: str):
    """A row of maps: [(title, 2-D DataArray, kind)], kind 'field' (shared scale) or 'error' (diverging)."""
    plt = _pyplot()
    fig, axs = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    fields = [p[1] for p in panels if p[2] == "field"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = min(float(np.nanmin(f.values)) for f in fields) if fields else None
        hi = max(float(np.nanmax(f.values)) for f in fields) if fields else None
    for ax, (title, da, kind) in zip(axs[0], panels):
        x, y = da[axes.x].values, da[axes.y].values
        if kind == "error":
            m = float(np.nanmax(np.abs(da.values))) if np.isfinite(da.values).any() else 1.0
            im = ax.pcolormesh(x, y, da.values, cmap="RdBu_r", vmin=-m or -1, vmax=m or 1, shading="auto")
        elif kind == "score":
            im = ax.pcolormesh(x, y, da.values, cmap="viridis", shading="auto")
        else:
            im = ax.pcolormesh(x, y, da.values, cmap="viridis", vmin=lo, vmax=hi, shading="auto")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axes.x)
        ax.set_ylabel(axes.y)
        fig.colorbar(im, ax=ax, shrink=0.85, label=units if kind != "score" else "")
    return fig


def _spectra_figure(curves, units: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for label, spec, style in curves:
        ax.loglog(spec["wavenumber"].values, spec.values, style, label=label)
    k_units = curves[0][1]["wavenumber"].attrs.get("units", "")
    ax.set_xlabel(f"wavenumber ({k_units})")
    ax.set_ylabel(f"power ({units}^2)" if units else "power")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def _qq_figure(pred: xr.DataArray, truth: xr.DataArray, units: str):
    plt = _pyplot()
    q = np.concatenate([[0.001, 0.005], np.linspace(0.01, 0.99, 99), [0.995, 0.999]])
    p = np.asarray(pred.values, "float64").ravel()
    t = np.asarray(truth.values, "float64").ravel()
    qp, qt = np.nanquantile(p, q), np.nanquantile(t, q)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(qt, qp, "o", ms=3, label="quantiles 0.1 % ... 99.9 %")
    lo, hi = float(min(qt.min(), qp.min())), float(max(qt.max(), qp.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
    ax.set_xlabel(f"truth ({units})")
    ax.set_ylabel(f"prediction ({units})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def _rank_figure(hist: xr.DataArray):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    counts = np.asarray(hist.values, "float64")
    ax.bar(np.arange(counts.size), counts / counts.sum(), color="#4c72b0")
    ax.axhline(1.0 / counts.size, color="k", ls="--", lw=1, label="flat (calibrated)")
    ax.set_xlabel("rank of the truth among the members")
    ax.set_ylabel("relative frequency")
    ax.legend(fontsize=8)
    return fig


def _spectrum(da, axes, **kw):
    from .spectral import power_spectrum

    spacing = "coords" if axes.kind == "latlon" else None
    try:
        return power_spectrum(da, window="hann", fill_missing=True, spacing=spacing, **kw)
    except DataError:
        return power_spectrum(da, window="hann", fill_missing=True, **kw)


def _provenance(pred, truth, lr) -> str:
    from .._version import __version__

    rows = []
    for role, da in (("prediction", pred), ("truth", truth), ("low-resolution input", lr)):
        if da is None:
            continue
        hist = str(da.attrs.get("history", "")).strip() or "(no history attribute)"
        rows.append(f"<h3>{role}</h3><pre>{html.escape(hist)}</pre>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows.append(f'<p class="meta">Page written {now} by xdownscale {html.escape(__version__)}: '
                'xdownscale.report(), scores from xdownscale.evaluate(..., suite="climate").</p>')
    return "".join(rows)


def _index_table(pred, truth, member_dim: str) -> str:
    from .indices import applicable_indices, climate_indices

    names = applicable_indices(truth)
    if not names:
        return "<p>No climate index fits this variable (it is neither an air temperature nor a precipitation).</p>"
    if not pred.attrs.get("units"):
        pred = pred.assign_attrs(units=truth.attrs.get("units"), standard_name=truth.attrs.get("standard_name", ""))
    ip, it = climate_indices(pred, names), climate_indices(truth, names)
    from ..grid.cf import area_weights, find_axes

    axes = find_axes(truth)
    w = area_weights(truth, axes) if axes.kind == "latlon" else None
    rows = []
    for n in names:
        def mean(da):
            da = da.mean([d for d in da.dims if d not in axes.spatial])
            return float(da.weighted(w).mean() if w is not None else da.mean())

        tv, pv = mean(it[n]), mean(ip[n])
        rows.append([it[n].attrs["long_name"], tv, pv, pv - tv, it[n].attrs["units"]])
    return _table(["index (xclim)", "truth", "prediction", "bias", "units"], rows)


def _section(pred, truth, lr, *, member_dim: str, name: str) -> str:
    from ..grid.cf import find_axes
    from . import evaluate

    axes = find_axes(truth)
    units = str(truth.attrs.get("units", ""))
    ensemble = member_dim in pred.dims
    scores = evaluate(pred, truth, lr=lr, suite="climate", maps=True, member_dim=member_dim, indices=())
    det = pred.mean(member_dim, keep_attrs=True) if ensemble else pred
    time = axes.time if axes.time in truth.dims else None
    parts = [f"<h2>{html.escape(name)} ({html.escape(units) or 'no units'})</h2>"]

    # maps: time means, and the step with the largest truth variance
    tmean = truth.mean(time) if time else truth
    pmean = det.mean(time) if time else det
    panels = [("truth, time mean", _plain2d(tmean, axes), "field"),
              ("prediction, time mean" + (" (ensemble mean)" if ensemble else ""), _plain2d(pmean, axes), "field"),
              ("error (prediction - truth), time mean", _plain2d(pmean - tmean, axes), "error")]
    parts.append(_figure(_maps_figure(panels, axes, units), "Time-mean fields and their difference.",
                         "maps of the time-mean truth, prediction and error"))
    if time:
        i = int(np.nanargmax(truth.var(list(axes.spatial)).values)) if truth.notnull().any() else 0
        when = str(truth[time].values[i])[:16]
        snap = [("truth", _plain2d(truth.isel({time: i}), axes), "field"),
                ("prediction" + (" (member 0)" if ensemble else ""),
                 _plain2d((pred.isel({member_dim: 0}) if ensemble else pred).isel({time: i}), axes), "field"),
                ("error", _plain2d((pred.isel({member_dim: 0}) if ensemble else pred).isel({time: i})
                                   - truth.isel({time: i}), axes), "error")]
        if lr is not None:
            from .deterministic import grid_axes

            la = grid_axes(lr) or axes
            snap.insert(0, ("low-resolution input", _plain2d(lr.isel({la.time: i}) if la.time in lr.dims else lr, la),
                            "field"))
        parts.append(_figure(_maps_figure(snap, axes, units), f"One time step, {when} (the largest spatial "
                             "variance of the truth).", f"maps of truth, prediction and error at {when}"))
    score_maps = [(f"{k.replace('_map', '').replace('_', ' ')}", _plain2d(scores[k], axes), "score")
                  for k in ("perkins_skill_score_map", "wasserstein_map", "quantile_bias_q99_map") if k in scores]
    if score_maps:
        parts.append(_figure(_maps_figure(score_maps, axes, units), "Distribution scores cell by cell (along time; "
                             "ensemble members pooled). Perkins: 1 is a perfect overlap of the histograms.",
                             "maps of the Perkins skill score, Wasserstein distance and 99% quantile bias"))

    # spectra and QQ
    curves = [("truth", _spectrum(truth, axes), "k-"), ("prediction", _spectrum(pred, axes), "C0-")]
    if lr is not None and axes.kind == "latlon":
        try:
            from .deterministic import grid_axes

            curves.append(("low-resolution input", _spectrum(lr, grid_axes(lr) or axes), "C1--"))
        except DataError:
            pass
    row = [_figure(_spectra_figure(curves, units), "Radially averaged power spectra (Hann taper, missing cells "
                   "filled with the field mean), averaged over time and members.", "power spectra"),
           _figure(_qq_figure(pred, truth, units), "QQ plot of all values (cells, times, members pooled).",
                   "QQ plot of prediction against truth")]
    if ensemble and "rank_histogram" in scores:
        row.append(_figure(_rank_figure(scores["rank_histogram"]), "Rank histogram of the truth among the "
                           f"{pred.sizes[member_dim]} members: flat when calibrated, U-shaped when under-dispersed.",
                           "rank histogram"))
    parts.append('<div class="row">' + "".join(row) + "</div>")

    # tables
    rows = [[k, float(v), v.attrs.get("units", ""), v.attrs.get("long_name", "")]
            for k, v in scores.data_vars.items() if v.ndim == 0]
    parts.append("<h3>Scores</h3>" + _table(["name", "value", "units", "meaning"], rows))
    per_member = [k for k, v in scores.data_vars.items() if k.endswith("_per_member")]
    if per_member:
        m = scores.sizes[member_dim]
        rows = [[k] + [float(x) for x in scores[k].values] for k in per_member]
        parts.append("<h3>Each member</h3>" + _table(["name"] + [f"member {j}" for j in range(m)], rows))
    parts.append("<h3>Climate-index biases</h3>" + _index_table(pred, truth, member_dim))
    return "".join(parts)


def report(pred, truth, *, lr=None, path="report.html", title: str | None = None, member_dim: str = "member",
           overwrite: bool = True) -> Path:
    """Write one self-contained HTML page that judges ``pred`` against ``truth``.

    Parameters
    ----------
    pred, truth : DataArray or Dataset
        The downscaled product (optionally an ensemble along ``member_dim``) and
        the high-resolution reference, with a time dimension; a Dataset gets
        one section per variable.
    lr : DataArray or Dataset, optional
        The low-resolution input: shown on the maps and spectra, and the mass
        violation is scored.
    path : str or Path
        The HTML file to write (replaced atomically; ``overwrite=False``
        refuses an existing file).
    title : str, optional
        Page title (default: "xdownscale report: <variables>").

    Returns the path written. Figures are PNGs embedded as base64, so the page
    needs no other file. Provenance comes from the ``history`` attributes.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass overwrite=True to replace it")
    if isinstance(truth, xr.Dataset) != isinstance(pred, xr.Dataset):
        raise TypeError("pass pred and truth both as DataArrays or both as Datasets")
    if isinstance(truth, xr.Dataset):
        names = [v for v in truth.data_vars if v in pred.data_vars]
        if not names:
            raise DataError("pred and truth share no variable")
        pairs = [(pred[v], truth[v], None if lr is None else lr[v], str(v)) for v in names]
        prov = (pred, truth, lr)
    else:
        pairs = [(pred, truth, lr, str(truth.name or pred.name or "field"))]
        prov = (pred, truth, lr)
    title = title or "xdownscale report: " + ", ".join(p[3] for p in pairs)
    sections = [_section(p, t, lo, member_dim=member_dim, name=n) for p, t, lo, n in pairs]
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"meta\">Scores are area-weighted (cos latitude) on lat/lon grids; biases are prediction minus "
            f"truth.</p>{''.join(sections)}<h2>Provenance</h2>{_provenance(*prov)}</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
