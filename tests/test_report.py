"""xds.report: a self-contained HTML page; rendered in headless Chromium when it is installed."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("matplotlib")
pytest.importorskip("xclim")

import xdownscale as xds
from xdownscale.cli import main
from xdownscale.grid import coarsen

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::RuntimeWarning")
HISTORY = "2026-12-02T10:00 xdownscale predict lr.nc --model cnn <x4> & more"


def _fields(seed=0):
    rng = np.random.default_rng(seed)
    nt, ny, nx = 48, 24, 24
    lat, lon = np.linspace(50.25, 61.75, ny), np.linspace(-8.0, 3.5, nx)
    hours = np.arange(nt)
    base = 275 + 4 * np.sin(2 * np.pi * hours / 24)[:, None, None] + np.linspace(0, 3, ny)[None, :, None]
    truth = base + rng.normal(size=(nt, ny, nx))
    truth[:, :5, :6] = np.nan  # sea: a land-only product
    coords = {"time": pd.date_range("2017-01-01", periods=nt, freq="h"),
              "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
              "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})}
    attrs = {"units": "K", "standard_name": "air_temperature"}
    t = xr.DataArray(truth, dims=("time", "lat", "lon"), coords=coords, name="tas", attrs=attrs)
    p = (t + 0.5 + rng.normal(scale=0.7, size=t.shape)).assign_attrs(attrs | {"history": HISTORY})
    return p, t, coarsen(t, 4)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    p, t, lr = _fields()
    ens = xr.concat([p, p - 1.0, p + 0.3], "member").assign_attrs(p.attrs)
    path = xds.report(ens, t, lr=lr, path=tmp_path_factory.mktemp("report") / "report.html")
    return path, path.read_text(encoding="utf-8"), ens, t


def test_report_is_self_contained_with_every_part(page):
    path, text = page[:2]
    imgs = re.findall(r'<img alt="([^"]*)" src="([^"]*)"', text)
    assert len(imgs) == text.count("<img")
    alts = " | ".join(a for a, _ in imgs)
    for part in ("time-mean truth, prediction and error", "power spectra", "QQ plot", "rank histogram",
                 "Perkins skill score"):
        assert part in alts
    for _, src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched from elsewhere
    # tables: the climate suite's scores, each member, and the xclim index biases with their hand value
    for name in ("perkins_skill_score", "wasserstein", "log_spectral_distance", "crps", "wasserstein_per_member"):
        assert f"<td>{name}</td>" in text
    row = re.search(r"<td>minimum of the daily minimum temperature \(TNn\)</td>((?:<td[^>]*>[^<]*</td>)+)", text)
    truth_v, _, bias_v = (float(v) for v in re.findall(r'class="num">([^<]+)<', row.group(1)))
    ens, truth = page[2], page[3]
    w = np.cos(np.deg2rad(truth.lat.values))[:, None] * np.ones(truth.shape[1:])
    tnn_t, tnn_p = truth.values.min(axis=0), ens.values.min(axis=1).mean(axis=0)  # 2 full days: TNn = the min
    ok = np.isfinite(tnn_t)
    assert truth_v == pytest.approx((w * tnn_t)[ok].sum() / w[ok].sum(), abs=1e-3)
    assert bias_v == pytest.approx((w * (tnn_p - tnn_t))[ok].sum() / w[ok].sum(), abs=1e-3)
    # provenance, escaped
    assert "&lt;x4&gt; &amp; more" in text and "<x4>" not in text


@pytest.mark.slow
def test_report_renders_in_chromium(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    path, text = page[:2]
    probe = tmp_path / "probe.html"  # the page plus a script that reports each image's natural width
    probe.write_text(text.replace("</body>", "<script>window.addEventListener('load', () => {document.title = "
                                  "'WIDTHS' + JSON.stringify([...document.images].map(i => i.naturalWidth));});"
                                  "</script></body>"), encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,3000"]
    dom = subprocess.run(flags + ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r"<title>WIDTHS(\[[^<]*\])</title>", dom.stdout)
    assert found, dom.stderr[-2000:]
    widths = json.loads(found.group(1))
    assert len(widths) == text.count("<img") >= 6
    assert all(w > 0 for w in widths), widths  # every figure decoded and loaded
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_cli_report(tmp_path, capsys, monkeypatch):
    """The command opens the files and hands them to xds.report (stubbed here: the page is tested above)."""
    import xdownscale as rep  # the CLI calls the public xds.report

    calls = []

    def fake_report(pred, truth, *, lr=None, path, title=None):
        calls.append((pred, truth, lr, path, title))
        path.write_text("<html></html>", encoding="utf-8")
        return path

    monkeypatch.setattr(rep, "report", fake_report)
    p, t, lr = _fields(seed=1)
    p.to_netcdf(tmp_path / "sr.nc")
    t.to_netcdf(tmp_path / "truth.nc")
    lr.to_netcdf(tmp_path / "lr.nc")
    out = tmp_path / "r.html"
    argv = ["report", str(tmp_path / "sr.nc"), str(tmp_path / "truth.nc"), "--lr", str(tmp_path / "lr.nc")]
    assert main(argv + ["--out", str(out), "--title", "UK x4"]) == 0
    pred, truth, lr_in, path, title = calls[0]
    xr.testing.assert_allclose(pred, p.rename("tas"))
    xr.testing.assert_allclose(truth, t)
    assert lr_in.shape == lr.shape and path == out and title == "UK x4"
    assert pred.attrs["history"] == HISTORY
    assert main(argv + ["--out", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(argv + ["--out", str(tmp_path / "r.txt")]) == 2
    assert "'*.html'" in capsys.readouterr().err
    assert main(["report", "--help"]) == 0
    assert "xdownscale report sr.nc truth.nc --lr lr.nc" in capsys.readouterr().out
