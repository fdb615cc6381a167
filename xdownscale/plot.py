"""Quick-look plots: low resolution vs prediction vs truth, and power spectra.

Needs the ``plot`` extra: ``pip install "xdownscale[plot]"`` (matplotlib and
cartopy). Matplotlib is imported only when a function is called; without a
display (and if pyplot is not already in use) the non-interactive Agg backend
is selected.

Coastlines are drawn by default on lat/lon maps, from the first source that works:

1. cartopy's Natural Earth 110m coastlines, if already on disk (cartopy's data
   dirs, ``CARTOPY_DATA_DIR``);
2. the same, downloaded by cartopy, if its download server can be reached;
3. GSHHS coarse coastlines on disk (Debian/Ubuntu: ``apt install
   python-cartopy-data``, which puts them under /usr/share/cartopy), with one
   warning saying so;
4. none, with one warning saying how to get them.

``coastlines=False`` turns them off. If the data is found but cannot be read
the coastlines are skipped with a warning instead of failing the plot.
"""
from __future__ import annotations

import os
import socket
import sys
import warnings
from urllib.parse import urlparse

import numpy as np
import xarray as xr

from .errors import DataError
from .grid.cf import GridAxes, cell_vertices, coordinate_values, find_axes

__all__ = ["compare", "spectrum"]

_INSTALL = 'plotting needs matplotlib and cartopy: pip install "xdownscale[plot]"'


def pyplot_module():
    """Import pyplot lazily, choosing Agg when there is no display."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL) from e
    if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        headless = (sys.platform.startswith("linux")
                    and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"))
        if headless:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cartopy():
    try:
        import cartopy.crs as ccrs
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL) from e
    return ccrs


def select_time(da: xr.DataArray, axes: GridAxes, time) -> tuple[xr.DataArray, str]:
    """A 2-D (y, x) slice: ``time`` by index if int, else by label; other dims at index 0."""
    label = ""
    if axes.time is not None and axes.time in da.dims:
        if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
            da = da.isel({axes.time: int(time)})
        else:
            da = da.sel({axes.time: time})
            if axes.time in da.dims:  # a partial label matched several steps
                da = da.isel({axes.time: 0})
        if axes.time in da.coords:
            label = str(np.asarray(da.coords[axes.time].values))[:19]
    extra = [d for d in da.dims if d not in axes.spatial]
    if extra:
        da = da.isel({d: 0 for d in extra})
    return da.transpose(*axes.spatial), label


def cell_edges(da: xr.DataArray, axes: GridAxes) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges (n + 1) of x and y, for pcolormesh."""
    return tuple(cell_vertices(da, dim, is_latitude=axes.kind == "latlon" and dim == axes.y)
                 for dim in (axes.x, axes.y))


def robust_limits(fields, lo=2.0, hi=98.0) -> tuple[float, float]:
    vals = np.concatenate([np.ravel(f) for f in fields])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    vmin, vmax = (float(v) for v in np.percentile(vals, [lo, hi]))
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return vmin, vmax


def _natural_earth_local(resolution: str = "110m") -> bool:
    """Whether the Natural Earth coastline shapefile is available without downloading."""
    try:
        import cartopy
        from cartopy.io import Downloader

        spec = ("shapefiles", "natural_earth", resolution, "physical", "coastline")
        dl = Downloader.from_config(spec)
        fmt = {"config": cartopy.config, "resolution": resolution, "category": "physical",
               "name": "coastline"}
        pre = dl.pre_downloaded_path(fmt)
        if pre is not None and os.path.exists(pre):
            return True
        return os.path.exists(dl.target_path(fmt))
    except Exception:
        return False


_DEBIAN_CARTOPY_DATA = "/usr/share/cartopy/data"  # Debian's python-cartopy-data
_GSHHS_COARSE = ("shapefiles", "gshhs", "c", "GSHHS_c_L1.shp")  # coarse land/ocean boundary (level 1)
_REACHABLE: dict[str, bool] = {}


def _natural_earth_downloadable(timeout: float = 2.0) -> bool:
    """Whether cartopy's Natural Earth download server answers (checked once per process)."""
    try:
        from cartopy.io import Downloader

        url = Downloader.from_config(("shapefiles", "natural_earth", "110m", "physical", "coastline")).url_template
        host = urlparse(url).hostname
    except Exception:
        return False
    if not host:
        return False
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


def _gshhs_local() -> str | None:
    """Path of the coarse GSHHS coastline shapefile in cartopy's data dirs or Debian's, or None."""
    try:
        import cartopy

        roots = [cartopy.config.get("pre_existing_data_dir"), cartopy.config.get("data_dir")]
    except Exception:  # pragma: no cover - cartopy is checked before
        roots = []
    roots += [os.environ.get("CARTOPY_DATA_DIR"), _DEBIAN_CARTOPY_DATA]
    for root in roots:
        if root:
            path = os.path.join(os.fspath(root), *_GSHHS_COARSE)
            if os.path.isfile(path):
                return path
    return None


def _coastline_source():
    """Where coastlines come from: ``"natural_earth"``, ``("gshhs", path)`` or None; one warning
    (per figure) when it is not Natural Earth."""
    if _natural_earth_local("110m") or _natural_earth_downloadable():
        return "natural_earth"
    gshhs = _gshhs_local()
    if gshhs is not None:
        warnings.warn(
            f"coastlines: Natural Earth data is not available here (not on disk, no download server), "
            f"so the coarse GSHHS coastlines of {gshhs} are drawn instead; put Natural Earth under "
            "$CARTOPY_DATA_DIR for the usual ones.", UserWarning, stacklevel=3)
        return ("gshhs", gshhs)
    warnings.warn(
        "coastlines skipped: no coastline data here (Natural Earth is not on disk and cannot be "
        "downloaded, no GSHHS files); install Debian's python-cartopy-data (GSHHS, offline) or put "
        "Natural Earth under $CARTOPY_DATA_DIR (see cartopy's 'feature_download.py'), or pass "
        "coastlines=False.", UserWarning, stacklevel=3)
    return None


def _add_coastlines(ax, source="natural_earth"):
    try:
        if source == "natural_earth":
            return ax.coastlines(resolution="110m", linewidth=0.6)
        import cartopy.crs as ccrs
        from cartopy.io.shapereader import Reader

        geoms = list(Reader(source[1]).geometries())
        return ax.add_geometries(geoms, ccrs.PlateCarree(), facecolor="none", edgecolor="black",
                                 linewidth=0.6)
    except Exception as e:  # pragma: no cover - depends on local data
        warnings.warn(f"coastlines skipped: {e}", UserWarning, stacklevel=3)
        return None


def _time_label(da: xr.DataArray) -> str:
    """The time of a 2-D slice from a scalar time coordinate (``time``/``valid_time``), or ''."""
    for name in ("valid_time", "time"):
        if name in da.coords and da.coords[name].ndim == 0 and np.issubdtype(da.coords[name].dtype, np.datetime64):
            return str(np.asarray(da.coords[name].values))[:19]
    return ""


def compare(
    lr: xr.DataArray,
    pred: xr.DataArray,
    truth: xr.DataArray | None = None,
    *,
    time=0,
    cmap: str = "viridis",
    coastlines: bool = True,
    error_cmap: str = "RdBu_r",
    path=None,
    title: str | None = None,
    timestamp: bool = True,
):
    """Side-by-side maps: low resolution | prediction | truth | prediction - truth.

    The truth and error panels appear only if ``truth`` is given. The first
    three panels share colour limits (2nd-98th percentiles of all of them);
    the error panel uses limits symmetric about zero. ``time`` selects a step
    by index if it is an int, else by label (e.g. ``"2000-01-05"``); fields
    without a time dimension are fine. Lat/lon grids are drawn on cartopy
    ``PlateCarree`` axes with labelled gridlines; projected grids on plain
    axes with equal aspect.

    Coastlines are drawn on lat/lon maps unless ``coastlines=False`` (Natural
    Earth, else GSHHS with a warning, else none with a warning: see the module
    docstring).

    The title names the variable, units and time of the map; a ``title`` of
    your own gets the time appended (`` at 2000-01-05T00:00:00``), or put it
    where you want it with ``{time}``; ``timestamp=False`` leaves it out.

    Saves a PNG (dpi 120) to ``path`` if given. Returns the matplotlib Figure;
    ``fig.axes`` holds the map panels only (colour bars are inset axes).
    """
    plt = pyplot_module()
    fields = [("Low resolution", lr), ("Prediction", pred)]
    if truth is not None:
        fields.append(("Truth", truth))
    slices, label = [], ""
    for name, da in fields:
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"compare expects xarray DataArrays, got {type(da).__name__} for {name.lower()}")
        axes = find_axes(da)
        d2, lab = select_time(da, axes, time)
        label = label or lab or _time_label(d2)
        slices.append((name, d2, axes))
    kind = slices[1][2].kind
    values = [np.asarray(d.values, dtype="float64") for _, d, _ in slices]
    vmin, vmax = robust_limits(values)
    err = None
    if truth is not None:
        if values[1].shape != values[2].shape:
            raise DataError(
                f"prediction {values[1].shape} and truth {values[2].shape} are on different grids; "
                "regrid one onto the other first (xdownscale.grid.regrid)."
            )
        err = values[1] - values[2]

    n = len(slices) + (err is not None)
    ny, nx = values[1].shape
    aspect = ny / max(nx, 1) if kind == "projected" else (
        abs(np.ptp(coordinate_values(pred, slices[1][2].y))) + 1e-9) / (
        abs(np.ptp(coordinate_values(pred, slices[1][2].x))) + 1e-9)
    aspect = float(np.clip(aspect, 0.3, 2.0))
    fig = plt.figure(figsize=(4.2 * n + 0.8, 4.2 * aspect + 1.6))
    subplot_kw = {}
    ccrs = None
    if kind == "latlon":
        ccrs = _cartopy()
        subplot_kw = {"projection": ccrs.PlateCarree()}
    units = str(pred.attrs.get("units", lr.attrs.get("units", "")))
    var = pred.name or lr.name or "field"

    panels = [(name, d2, axes, v, cmap, vmin, vmax) for (name, d2, axes), v in zip(slices, values)]
    if err is not None:
        rmse = float(np.sqrt(np.nanmean(err**2))) if np.isfinite(err).any() else float("nan")
        e = float(np.nanpercentile(np.abs(err), 98)) if np.isfinite(err).any() else 1.0
        e = e if e > 0 else 1.0
        panels.append((f"Prediction - truth (RMSE {rmse:.3g})", slices[1][1], slices[1][2], err,
                       error_cmap, -e, e))

    coast_source = _coastline_source() if coastlines and ccrs is not None else None
    coast_artists = []
    for i, (name, d2, axes, v, cm, lo, hi) in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1, **subplot_kw)
        xe, ye = cell_edges(d2, axes)
        kw = {"cmap": cm, "vmin": lo, "vmax": hi, "shading": "flat"}
        if ccrs is not None:
            kw["transform"] = ccrs.PlateCarree()
        im = ax.pcolormesh(xe, ye, np.ma.masked_invalid(v), **kw)
        ny_i, nx_i = v.shape
        ax.set_title(f"{name}\n{ny_i}x{nx_i}", fontsize=10)
        if ccrs is not None:
            x0, x1, y0, y1 = min(xe[0], xe[-1]), max(xe[0], xe[-1]), min(ye[0], ye[-1]), max(ye[0], ye[-1])
            if x1 - x0 >= 359.0 and y1 - y0 >= 179.0:
                ax.set_global()
            else:
                ax.set_extent([x0, x1, y0, y1], crs=ccrs.PlateCarree())
            gl = ax.gridlines(draw_labels=True, linewidth=0.4, color="0.5", alpha=0.6)
            gl.top_labels = False
            gl.right_labels = False
            gl.xlabel_style = gl.ylabel_style = {"size": 7}
            if coast_source is not None:
                artist = _add_coastlines(ax, coast_source)
                if artist is not None:
                    coast_artists.append(artist)
        else:
            ax.set_aspect("equal")
            xu = d2.coords[axes.x].attrs.get("units", "") if axes.x in d2.coords else ""
            yu = d2.coords[axes.y].attrs.get("units", "") if axes.y in d2.coords else ""
            ax.set_xlabel(f"{axes.x} [{xu}]" if xu else axes.x, fontsize=8)
            ax.set_ylabel(f"{axes.y} [{yu}]" if yu else axes.y, fontsize=8)
            ax.tick_params(labelsize=7)
        # a colour bar under the last shared panel and under the error panel (inset axes
        # are children of the panel, so fig.axes keeps only the maps)
        if i == len(slices) - 1 or i == len(slices):
            cax = ax.inset_axes([0.0, -0.2, 1.0, 0.05])
            cb = fig.colorbar(im, cax=cax, orientation="horizontal")
            cb.ax.tick_params(labelsize=7)
            cb.set_label(units, fontsize=8)
    stamp = label if timestamp else ""
    if title is None:
        head = f"{var}" + (f" [{units}]" if units else "") + (f" at {stamp}" if stamp else "")
    elif "{time}" in title:
        head = title.replace("{time}", stamp or "unknown time")
    else:
        head = title + (f" at {stamp}" if stamp and stamp not in title else "")
    fig.suptitle(head, fontsize=12)
    fig.subplots_adjust(left=0.06 if kind == "latlon" else 0.08, right=0.97, top=0.82, bottom=0.22, wspace=0.25)
    if coast_artists:
        # the shapefile is read at draw time: draw once now so an unreadable file becomes a warning
        try:
            fig.canvas.draw()
        except Exception as e:
            for artist in coast_artists:
                artist.remove()
            warnings.warn(f"coastlines skipped: could not read the coastline data ({e})",
                          UserWarning, stacklevel=2)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=120, format="png")
    return fig


def _radial_spectrum(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectral density of a (time-averaged) 2-D field.

    Wavenumbers are in cycles per unit of the grid coordinates (degrees or
    metres), so fields on grids of different resolution are comparable.
    """
    axes = find_axes(da)
    spatial = list(axes.spatial)
    arr = da.transpose(..., *spatial)
    v = np.asarray(arr.values, dtype="float64").reshape(-1, arr.sizes[spatial[0]], arr.sizes[spatial[1]])
    ny, nx = v.shape[-2:]
    dy = float(np.abs(np.diff(coordinate_values(da, axes.y))).mean()) if ny > 1 else 1.0
    dx = float(np.abs(np.diff(coordinate_values(da, axes.x))).mean()) if nx > 1 else 1.0
    ky = np.fft.fftfreq(ny, d=dy)
    kx = np.fft.rfftfreq(nx, d=dx)
    kk = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    dk = max(1.0 / (ny * dy), 1.0 / (nx * dx))
    nbins = int(min(np.abs(ky).max(), kx.max()) / dk)
    if nbins < 1:
        raise DataError(f"field {da.name!r} is too small ({ny}x{nx}) for a power spectrum")
    psd = np.zeros(kk.shape)
    for field in v:
        f = field - np.nanmean(field)
        f = np.where(np.isfinite(f), f, 0.0)
        psd += np.abs(np.fft.rfft2(f)) ** 2 * dx * dy / (nx * ny)
    psd /= len(v)
    idx = np.floor(kk / dk + 0.5).astype(int)
    k = np.arange(1, nbins + 1) * dk
    p = np.array([psd[idx == i].mean() for i in range(1, nbins + 1)])
    return k, p


def _spectrum_of(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """(wavenumber, power) from xdownscale.metrics.spectral if available, else the local helper."""
    try:
        from .metrics.spectral import power_spectrum  # written separately; optional here
    except ImportError:
        return _radial_spectrum(da)
    try:
        res = power_spectrum(da)
        if isinstance(res, xr.DataArray) and res.ndim == 1:
            k = np.asarray(res.coords[res.dims[0]].values, dtype="float64")
            return k, np.asarray(res.values, dtype="float64")
        if isinstance(res, tuple) and len(res) == 2:
            return np.asarray(res[0], dtype="float64"), np.asarray(res[1], dtype="float64")
    except (TypeError, ValueError):
        pass
    return _radial_spectrum(da)


def spectrum(pred: xr.DataArray, truth: xr.DataArray | None = None, lr: xr.DataArray | None = None,
             *, path=None, title: str | None = None, ax=None):
    """Radially averaged power spectra of prediction (and truth, low resolution) on log-log axes.

    Spectra are averaged over time steps; wavenumbers are in cycles per unit of
    the horizontal coordinates. Returns the matplotlib Figure (saved as PNG to
    ``path`` if given).
    """
    plt = pyplot_module()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
    else:
        fig = ax.figure
    for name, da, style in (("low resolution", lr, dict(color="0.5", ls="--")),
                            ("truth", truth, dict(color="k", lw=1.8)),
                            ("prediction", pred, dict(color="tab:red", lw=1.4))):
        if da is None:
            continue
        k, p = _spectrum_of(da)
        ok = (k > 0) & np.isfinite(p) & (p > 0)
        ax.loglog(k[ok], p[ok], label=name, **style)
    axes = find_axes(pred)
    unit = "degree" if axes.kind == "latlon" else str(pred.coords[axes.x].attrs.get("units", "grid unit")) \
        if axes.x in pred.coords else "grid unit"
    ax.set_xlabel(f"wavenumber [cycles / {unit}]")
    ax.set_ylabel("power spectral density")
    ax.grid(True, which="both", alpha=0.3)
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend()
    ax.set_title(title if title is not None else f"Power spectrum of {pred.name or 'field'}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=120, format="png")
    return fig
