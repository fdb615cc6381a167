"""Stochastic downscaling on real data: `gan` and `rnngan` ensembles against bicubic and the `cnn`.

Cases (both need ../shared/data or $XDOWNSCALE_TEST_DATA):

* ``wfde5``: WFDE5 UK hourly 2 m air temperature (Tair, K), 0.5 deg 20x28
  (land only: sea cells are NaN), January 2017; train on the first three weeks
  (504 h), test on the rest (240 h); factor 4; constraint ``add``.
* ``radolan``: DWD RADOLAN RW hourly radar precipitation (mm), 2022-10-18, a
  256x256 km crop (for this CPU) with missing cells set to 0; train on hours
  0-15, test on 16-23; factor 8; constraint ``softmax``.

For every model: RMSE and MAE of the (ensemble-mean) prediction, CRPS (for a
deterministic prediction the CRPS is its MAE), spread-skill ratio, rank-histogram
reliability index (0 = flat), log spectral distance of the spectra from the
truth's (dB, Hann-tapered spectra), sub-grid standard deviation ratio (std of fine - block mean,
prediction over truth: 1 means the small-scale variance is restored), largest
conservation error of any member, training seconds and sampling speed.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gan_probabilistic.py --case wfde5
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gan_probabilistic.py --case radolan

``--defaults``: every model as a user's plain call trains it, ``fit(train, model=M, factor=f,
constraint=c, seed=0)``: the library's budgets and options instead of the case's fixed ones
(plus only what ``--gan`` gives).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import data_dir  # noqa: E402

import xdownscale as xds  # noqa: E402
from xdownscale.metrics import log_spectral_distance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = dict(progress=False, seed=0)
DEFAULT_GAN = dict(content="crps", adv_weight=0.05)


def load_case(name: str):
    """(train hr, test hr, factor, constraint, spectra box (isel dict) or None, fit options)."""
    if name == "wfde5":
        hr = xr.open_dataset(data_dir() / "wfde5-uk" / "air_temperature.nc")["Tair"].load()
        opts = dict(batch_size=32, patch_size=20, learning_rate=1e-3, width=32, n_blocks=2, samples_per_epoch=1024)
        # the largest all-land square of the grid (7x7 cells) for the spectra
        return (hr.isel(time=slice(0, 504)), hr.isel(time=slice(504, None)), 4, "add",
                {"lat": slice(1, 8), "lon": slice(15, 22)}, opts)
    if name == "radolan":
        from xdownscale.io.radolan import open_radolan

        rw = open_radolan(data_dir() / "radolan-rw" / "RW-20221018.tar.gz")
        # the rain dies out during the day (~14% of all cells > 0.1 mm in hour 4, ~1% from hour 17), so a
        # time split leaves a dry test set: train on one 256 km square, test on a disjoint one, all
        # 24 hours each (the two rainiest disjoint squares without missing cells, 25% rainy cells)
        train = rw.isel(y=slice(448, 704), x=slice(640, 896)).fillna(0.0).load()
        test = rw.isel(y=slice(352, 608), x=slice(384, 640)).fillna(0.0).load()
        opts = dict(batch_size=8, patch_size=64, learning_rate=1e-3, width=32, n_blocks=2, samples_per_epoch=512)
        return train, test, 8, "softmax", None, opts
    raise SystemExit(f"unknown case {name!r}")


def subgrid_std(da: xr.DataArray, factor: int) -> float:
    """Std of the field minus its factor x factor block means (NaN cells skipped)."""
    axes = xds.grid.find_axes(da)
    v = np.asarray(da.transpose(..., axes.y, axes.x).values, dtype="float64")
    *lead, ny, nx = v.shape
    v = v[..., : ny // factor * factor, : nx // factor * factor]
    blocks = v.reshape(*lead, ny // factor, factor, nx // factor, factor)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-sea blocks
        return float(np.nanstd(blocks - np.nanmean(blocks, axis=(-3, -1), keepdims=True)))


def max_mass_error(pred: xr.DataArray, lr: xr.DataArray, factor: int) -> float:
    back = xds.grid.coarsen(pred, factor)
    return float(abs(back - lr.values).max())


def score(name, pred, test, lr, factor, box, train_s, sample_s, n_fields):
    ens = "member" in pred.dims
    truth_mask = test.notnull()
    masked = pred.where(truth_mask)
    mean = masked.mean("member") if ens else masked
    row = {"model": name, "members": int(pred.sizes["member"]) if ens else 1,
           "rmse": float(xds.metrics.rmse(mean, test)), "mae": float(xds.metrics.mae(mean, test))}
    if ens:
        ev = xds.evaluate(masked, test)
        row.update(crps=float(ev.crps), spread_skill=float(ev.spread_skill_ratio),
                   rank_ri=float(ev.rank_flatness))
        hist = ev.rank_histogram
    else:
        row.update(crps=row["mae"], spread_skill=float("nan"), rank_ri=float("nan"))
        hist = None
    spec_p = masked.isel(box) if box else masked
    spec_t = test.isel(box) if box else test
    row["lsd_db"] = log_spectral_distance(spec_p, spec_t, window="hann")
    sub_pred = np.mean([subgrid_std(m, factor) for m in (masked.transpose("member", ...) if ens else [masked])])
    row["subgrid_std_ratio"] = float(sub_pred / subgrid_std(test, factor))
    members = pred.transpose("member", ...) if ens else [pred]
    row["max_mass_error"] = max(max_mass_error(m, lr, factor) for m in members)
    row["train_s"] = train_s
    row["fields_per_s"] = n_fields / sample_s if sample_s else float("nan")
    return row, hist


def run_case(case: str, models: list[str], members: int, epochs: int | None, store: Path, gan_opts: dict, halo,
             defaults: bool = False):
    train, test, f, constraint, box, opts = load_case(case)
    lr_test = test.downscale.coarsen(f)
    rows, hists, preds = [], {}, {}
    t0 = time.perf_counter()
    # the baseline path maps missing (sea) coarse cells to 0 before interpolating: give it the
    # coarse field with its gaps filled from the nearest land cells (land values unchanged)
    filled = lr_test
    for d in xds.grid.find_axes(lr_test).spatial[::-1]:
        filled = filled.ffill(d).bfill(d)
    bic = xds.predict(filled, model="bicubic", factor=f, like=test).compute()
    rows.append(score("bicubic", bic, test, lr_test, f, box, 0.0, time.perf_counter() - t0, test.sizes["time"])[0])
    preds["bicubic"] = bic
    for spec in models:
        model, _, content = spec.partition("+")  # "gan+mse": the gan with content="mse"
        kw = dict(COMMON, **gan_opts.get(model, {})) if defaults else dict(opts, **COMMON)
        if model in ("gan", "rnngan") and not defaults:
            kw.update(DEFAULT_GAN, **gan_opts.get(model, {}))
            if content:
                kw["content"] = content
        if model == "rnngan" and not defaults:  # sequences of `window` frames: fewer, smaller batches
            kw.update(batch_size=max(2, kw["batch_size"] // 4), samples_per_epoch=kw["samples_per_epoch"] // 4)
        t0 = time.perf_counter()
        if epochs is not None and not defaults:
            kw["epochs"] = epochs
        m = xds.fit(train, model=model, factor=f, constraint=constraint, checkpoint=store / f"{case}-{spec}.pt", **kw)
        train_s = time.perf_counter() - t0
        extra = {"members": members, "seed": 7} if model in ("gan", "rnngan") else {}
        for h in ([halo, None] if halo is not None else [None]):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # halo=0 on one tile: nothing to seam
                pred = xds.predict(lr_test, model=m, like=test, halo=h, **extra).compute()
            sample_s = time.perf_counter() - t0
            n_fields = test.sizes["time"] * (members if extra else 1)
            name = spec if h == halo else f"{spec} (halo={m.module.receptive_radius}, edge-replicated)"
            row, hist = score(name, pred, test, lr_test, f, box, train_s, sample_s, n_fields)
            row["epochs_run"] = len(m.history)
            rows.append(row)
            print(f"  {name}: {row}", flush=True)
            if h == halo:
                preds[spec] = pred
                if hist is not None:
                    hists[spec] = hist
    return rows, hists, preds, test, box


def table(rows: list[dict]) -> str:
    cols = ["model", "members", "rmse", "mae", "crps", "spread_skill", "rank_ri", "lsd_db", "subgrid_std_ratio",
            "max_mass_error", "train_s", "fields_per_s"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plots(case, hists, preds, test, box):  # case: the case name plus the --tag
    from xdownscale.plot_ensemble import plot_members, plot_rank_histogram, plot_spectra

    for name, hist in hists.items():
        plot_rank_histogram(hist, label=f"{case} {name}", path=RESULTS / f"gan_probabilistic_{case}_rank_{name}.png")
    fields = {k: (v.isel(box) if box else v).where((test.isel(box) if box else test).notnull()) for k, v in preds.items()}
    plot_spectra(fields, test.isel(box) if box else test, path=RESULTS / f"gan_probabilistic_{case}_spectra.png",
                 title=f"{case}: power spectra (test period)")
    for name in hists:
        plot_members(preds[name], test, n=3, time=int(test.sizes["time"] // 2),
                     path=RESULTS / f"gan_probabilistic_{case}_members_{name}.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="wfde5", choices=["wfde5", "radolan"])
    p.add_argument("--models", default="cnn,gan,rnngan")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--defaults", action="store_true", help="every model with the library's defaults (see above)")
    p.add_argument("--gan", default="{}", help='JSON of extra gan/rnngan options, e.g. {"gan": {"adv_weight": 0.1}}')
    p.add_argument("--tag", default="")
    p.add_argument("--halo", default="0", help="halo of the main rows ('auto': the receptive radius); with 0 "
                   "every model is also scored with the default halo")
    a = p.parse_args(argv)
    store = Path(tempfile.mkdtemp(prefix="xds-ganbench-"))
    os.environ.setdefault("XDOWNSCALE_HOME", str(store / "home"))
    RESULTS.mkdir(exist_ok=True)
    halo = None if a.halo == "auto" else int(a.halo)
    rows, hists, preds, test, box = run_case(a.case, a.models.split(","), a.members, a.epochs, store,
                                             json.loads(a.gan), halo, a.defaults)
    text = table(rows)
    print(text)
    stem = f"gan_probabilistic_{a.case}{a.tag}"
    cmd = "python benchmarks/gan_probabilistic.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    (RESULTS / f"{stem}.md").write_text(f"`{cmd}` (CPU, shared with other jobs)\n\n{text}\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"command": cmd, "rows": rows,
                                                       "rank_histograms": {k: v.values.tolist() for k, v in hists.items()}},
                                                      indent=1))
    plots(a.case + a.tag, hists, preds, test, box)


if __name__ == "__main__":
    main()
