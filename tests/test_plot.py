"""Quick-look plots (xdownscale.plot); offline, Agg backend."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("matplotlib")
pytest.importorskip("cartopy")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xdownscale.io import fine_coordinates  # noqa: E402
from xdownscale.plot import compare, spectrum  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def latlon_fields(factor=4):
    lat = np.arange(58.75, 30, -2.5)  # descending
    lon = np.arange(1.25, 40, 2.5)
    t = pd.date_range("2000-01-01", periods=3)
    lr = xr.DataArray(280 + np.random.default_rng(0).random((3, lat.size, lon.size)),
                      dims=("time", "lat", "lon"), coords={"time": t, "lat": lat, "lon": lon},
                      name="tas", attrs={"units": "K"})
    c = fine_coordinates(lr, factor)
    y, x = np.meshgrid(np.linspace(0, 6, c["lat"].size), np.linspace(0, 6, c["lon"].size), indexing="ij")
    truth = xr.DataArray(np.broadcast_to(280 + 3 * np.sin(x) * np.cos(y), (3,) + x.shape).copy(),
                         dims=lr.dims, coords={"time": t, **c}, name="tas", attrs={"units": "K"})
    pred = truth + np.random.default_rng(1).normal(0, 0.3, truth.shape)
    return lr, pred, truth


def projected_fields():
    x = xr.DataArray(np.arange(32) * 1000.0, dims="x", attrs={"units": "m"})
    y = xr.DataArray(np.arange(24) * 1000.0, dims="y", attrs={"units": "m"})
    rng = np.random.default_rng(2)
    truth = xr.DataArray(rng.gamma(0.5, 2.0, (24, 32)), dims=("y", "x"), coords={"y": y, "x": x},
                         name="pr", attrs={"units": "mm h-1"})
    lr = truth.coarsen(y=4, x=4).mean()
    pred = truth * 0.9
    return lr, pred, truth


def _check_png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG


def test_compare_latlon_four_panels(tmp_path):
    lr, pred, truth = latlon_fields()
    fig = compare(lr, pred, truth, time=1, path=tmp_path / "cmp.png")
    try:
        _check_png(tmp_path / "cmp.png")
        assert len(fig.axes) == 4
        assert all(type(ax).__name__ == "GeoAxes" for ax in fig.axes)
        # shared colour limits on the first three panels, symmetric ones on the error panel
        lims = [ax.collections[0].get_clim() for ax in fig.axes]
        assert lims[0] == lims[1] == lims[2]
        assert lims[3][0] == pytest.approx(-lims[3][1])
    finally:
        plt.close(fig)


def test_compare_latlon_by_label_without_truth_and_coastlines_offline(tmp_path, monkeypatch):
    import xdownscale.plot as xplot

    monkeypatch.setattr(xplot, "_natural_earth_local", lambda resolution="110m": False)
    monkeypatch.setattr(xplot, "_natural_earth_downloadable", lambda timeout=2.0: False)
    monkeypatch.setattr(xplot, "_gshhs_local", lambda: None)
    lr, pred, _ = latlon_fields()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fig = compare(lr, pred, time="2000-01-02", coastlines=True, path=tmp_path / "two.png")
    try:
        _check_png(tmp_path / "two.png")
        assert len(fig.axes) == 2
        assert sum("coastlines skipped" in str(w.message) for w in rec) == 1
        assert sum("coastline" in str(w.message) for w in rec) == 1  # one warning, not one per panel
        assert not _coast_artists(fig)
    finally:
        plt.close(fig)


def test_compare_projected_three_panels_without_time(tmp_path):
    lr, pred, truth = projected_fields()
    fig = compare(lr, pred, truth.isel(y=slice(None)), path=tmp_path / "proj.png", title="radar")
    try:
        _check_png(tmp_path / "proj.png")
        assert len(fig.axes) == 4
        assert all(type(ax).__name__ == "Axes" for ax in fig.axes)
        assert fig.axes[0].get_aspect() == 1.0
    finally:
        plt.close(fig)
    fig = compare(lr, pred, path=tmp_path / "proj3.png")
    plt.close(fig)
    _check_png(tmp_path / "proj3.png")


def test_compare_rejects_mismatched_truth():
    lr, pred, truth = projected_fields()
    from xdownscale.errors import DataError

    with pytest.raises(DataError, match="different grids"):
        compare(lr, pred, truth.isel(x=slice(0, 16)))
    plt.close("all")


def test_spectrum_log_log(tmp_path):
    lr, pred, truth = latlon_fields()
    fig = spectrum(pred, truth, lr, path=tmp_path / "spec.png")
    try:
        _check_png(tmp_path / "spec.png")
        ax = fig.axes[0]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 3
    finally:
        plt.close(fig)


def test_compare_draws_coastlines_from_local_natural_earth_data(tmp_path, monkeypatch):
    """A tiny synthetic coastline shapefile in a local data dir: drawn, no download, no warning."""
    shapefile = pytest.importorskip("shapefile")
    import cartopy
    import cartopy.feature

    target = tmp_path / "ne" / "shapefiles" / "natural_earth" / "physical"
    target.mkdir(parents=True)
    with shapefile.Writer(str(target / "ne_110m_coastline"), shapeType=shapefile.POLYLINE) as w:
        w.field("name", "C")
        w.line([[[0.0, 35.0], [10.0, 45.0], [20.0, 40.0]]])
        w.record("test coast")
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", str(tmp_path / "ne"))
    monkeypatch.setattr(cartopy.feature, "_NATURAL_EARTH_GEOM_CACHE", {}, raising=False)
    lr, pred, truth = latlon_fields()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fig = compare(lr, pred, truth, coastlines=True, path=tmp_path / "coast.png")
    try:
        _check_png(tmp_path / "coast.png")
        assert len(fig.axes) == 4
    finally:
        plt.close(fig)


def test_compare_unreadable_coastline_data_is_a_warning(tmp_path, monkeypatch):
    import cartopy
    import cartopy.feature

    target = tmp_path / "ne" / "shapefiles" / "natural_earth" / "physical"
    target.mkdir(parents=True)
    (target / "ne_110m_coastline.shp").write_bytes(b"not a shapefile")
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", str(tmp_path / "ne"))
    monkeypatch.setattr(cartopy.feature, "_NATURAL_EARTH_GEOM_CACHE", {}, raising=False)
    lr, pred, _ = latlon_fields()
    with pytest.warns(UserWarning, match="coastlines skipped"):
        fig = compare(lr, pred, coastlines=True, path=tmp_path / "bad.png")
    plt.close(fig)
    _check_png(tmp_path / "bad.png")


# ----------------------------------------------------------------------------- coastlines by default, timestamps
def _coast_artists(fig):
    from cartopy.mpl.feature_artist import FeatureArtist

    return [a for ax in fig.axes for a in ax.get_children() if isinstance(a, FeatureArtist)]


def _offline(monkeypatch, gshhs):
    import xdownscale.plot as xplot

    monkeypatch.setattr(xplot, "_natural_earth_local", lambda resolution="110m": False)
    monkeypatch.setattr(xplot, "_natural_earth_downloadable", lambda timeout=2.0: False)
    if gshhs is not None:
        monkeypatch.setattr(xplot, "_gshhs_local", lambda: gshhs)


def test_coastlines_are_on_by_default(monkeypatch, tmp_path):
    import xdownscale.plot as xplot

    calls = []
    monkeypatch.setattr(xplot, "_natural_earth_local", lambda resolution="110m": True)
    monkeypatch.setattr(xplot, "_add_coastlines", lambda ax, source="natural_earth": calls.append(source))
    lr, pred, truth = latlon_fields()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fig = compare(lr, pred, truth)
    plt.close(fig)
    assert calls == ["natural_earth"] * 4
    calls.clear()
    plt.close(compare(lr, pred, truth, coastlines=False))
    assert calls == []


def test_coastlines_downloaded_when_the_server_answers(monkeypatch):
    import xdownscale.plot as xplot

    calls = []
    monkeypatch.setattr(xplot, "_natural_earth_local", lambda resolution="110m": False)
    monkeypatch.setattr(xplot, "_natural_earth_downloadable", lambda timeout=2.0: True)
    monkeypatch.setattr(xplot, "_add_coastlines", lambda ax, source="natural_earth": calls.append(source))
    lr, pred, _ = latlon_fields()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        plt.close(compare(lr, pred))
    assert calls == ["natural_earth"] * 2


def test_gshhs_fallback_from_a_local_shapefile_with_one_warning(monkeypatch, tmp_path):
    """No Natural Earth and no network: a GSHHS shapefile in the data dir is drawn, with one warning."""
    shapefile = pytest.importorskip("shapefile")
    import cartopy

    target = tmp_path / "data" / "shapefiles" / "gshhs" / "c"
    target.mkdir(parents=True)
    with shapefile.Writer(str(target / "GSHHS_c_L1"), shapeType=shapefile.POLYGON) as w:
        w.field("id", "N")
        w.poly([[[5.0, 35.0], [5.0, 45.0], [15.0, 45.0], [15.0, 35.0], [5.0, 35.0]]])
        w.record(1)
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", str(tmp_path / "data"))
    monkeypatch.setattr("xdownscale.plot._DEBIAN_CARTOPY_DATA", str(tmp_path / "nowhere"))
    _offline(monkeypatch, None)
    lr, pred, truth = latlon_fields()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fig = compare(lr, pred, truth, path=tmp_path / "gshhs.png")
    try:
        msgs = [str(w.message) for w in rec if "coastline" in str(w.message)]
        assert len(msgs) == 1 and "GSHHS" in msgs[0] and "skipped" not in msgs[0], msgs
        assert len(_coast_artists(fig)) == 4
        _check_png(tmp_path / "gshhs.png")
    finally:
        plt.close(fig)


DEBIAN_GSHHS = "/usr/share/cartopy/data/shapefiles/gshhs/c/GSHHS_c_L1.shp"


@pytest.mark.skipif(not __import__("os").path.isfile(DEBIAN_GSHHS),
                    reason="Debian's python-cartopy-data is not installed")
def test_gshhs_fallback_reads_debians_cartopy_data(monkeypatch, tmp_path):
    import xdownscale.plot as xplot

    monkeypatch.setattr(xplot, "_natural_earth_local", lambda resolution="110m": False)
    monkeypatch.setattr(xplot, "_natural_earth_downloadable", lambda timeout=2.0: False)
    assert xplot._gshhs_local().endswith("GSHHS_c_L1.shp")
    lr, pred, _ = latlon_fields()
    with pytest.warns(UserWarning, match="GSHHS"):
        fig = compare(lr, pred, path=tmp_path / "deb.png")
    try:
        assert len(_coast_artists(fig)) == 2
    finally:
        plt.close(fig)


def test_map_title_carries_the_time_of_the_map():

    lr, pred, truth = latlon_fields()
    kw = {"coastlines": False}
    fig = compare(lr, pred, truth, time=1, **kw)
    assert fig._suptitle.get_text() == "tas [K] at 2000-01-02T00:00:00"
    plt.close(fig)
    fig = compare(lr, pred, truth, time=2, title="demo: coarse | cnn | truth | error", **kw)
    assert fig._suptitle.get_text() == "demo: coarse | cnn | truth | error at 2000-01-03T00:00:00"
    plt.close(fig)
    fig = compare(lr, pred, truth, time=0, title="{time}: tas", **kw)
    assert fig._suptitle.get_text() == "2000-01-01T00:00:00: tas"
    plt.close(fig)
    fig = compare(lr, pred, title="no stamp", timestamp=False, **kw)
    assert fig._suptitle.get_text() == "no stamp"
    plt.close(fig)
    # one step selected beforehand: the scalar time coordinate still dates the map
    fig = compare(lr.isel(time=1), pred.isel(time=1), title="one step", **kw)
    assert fig._suptitle.get_text() == "one step at 2000-01-02T00:00:00"
    plt.close(fig)
