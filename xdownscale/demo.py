"""The end-to-end demo behind ``xdownscale demo``: train, downscale, map and score, in a few minutes.

:func:`run_demo` trains the ``cnn`` model with the ``softmax`` constraint
(output non-negative and, once coarsened, exactly equal to the coarse input)
at factor 4 on the first 75% of the time steps of a field, downscales the
held-out last 25% from their exact area-weighted coarsening
(:func:`xdownscale.coarsen`), and compares it with bicubic interpolation.

The embedded default field
--------------------------
Without ``data=`` the demo needs no download: it uses
:func:`xdownscale.testing.synthetic_field` with ``kind="tcwv"``, a stand-in
for ERA5 total column water vapour (kg m-2) over the North Atlantic, 48 hourly
steps on a 0.25 degree lat/lon grid of 128 x 192 cells (descending latitude,
60N to 28.25N, 40W to 7.75E, like ERA5). It is realistic where it matters for
downscaling: its spatial variance follows the k^-3 power spectrum that
observed atmospheric fields have at synoptic scales (Nastrom & Gage 1985),
so the coarse grid resolves the large structures and the small scales carry
little but non-zero variance; it is log-normal (positive, mean about
20 kg m-2 with a long moist tail, as observed TCWV), so a non-negativity
constraint is meaningful; and it drifts eastward and evolves in time, so the
held-out last hours are new fields, not copies of the training ones.

With ``data=PATH, var=NAME`` the same is done on your own file (NetCDF, Zarr
or GRIB): the grid is trimmed to a multiple of the factor, the last 25% of
the time steps are the test set (the training field itself, with a warning,
if there is only one step), and a field with negative values is trained with
the ``add`` constraint instead of ``softmax``.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path

log = logging.getLogger("xdownscale")

FACTOR = 4
MODEL = "cnn"
TEST_FRACTION = 0.25
# the default field: ERA5-like 0.25 degree grid over the North Atlantic
DEFAULT_FIELD = {"times": 48, "ny": 128, "nx": 192, "north": 60.0, "west": -40.0, "resolution": 0.25}
# training budget: a few minutes on a 2-core CPU (see tests/test_demo.py for a fast one)
# (measured: ~4 s per epoch, ~50 s of training, ~60 s in all on an idle 2-core x86 CPU)
DEFAULT_TRAINING = {"epochs": 12, "width": 48, "n_blocks": 4, "patch_size": 96, "batch_size": 16,
                    "samples_per_epoch": 256, "learning_rate": 1e-3}
PRODUCTS = {"prediction_nc": "prediction.nc", "prediction_zarr": "prediction.zarr", "map": "map.png",
            "metrics_csv": "metrics.csv", "metrics_md": "metrics.md", "checkpoint": "model.pt"}
# table column -> (metric in xdownscale.evaluate, units: True = the field's units)
COLUMNS = {"RMSE": ("rmse", True), "MAE": ("mae", True), "SSIM": ("ssim", False), "PSNR": ("psnr", "dB"),
           "Pearson r": ("pearson_r", False), "mass violation": ("mass_violation", True),
           "negative pixels": ("negative_count", False)}


def default_field(times: int | None = None, ny: int | None = None, nx: int | None = None, seed: int = 0):
    """The demo's embedded synthetic TCWV field (see the module docstring)."""
    from .testing import synthetic_field

    cfg = dict(DEFAULT_FIELD)
    times, ny, nx = times or cfg["times"], ny or cfg["ny"], nx or cfg["nx"]
    res = cfg["resolution"]
    lat = (cfg["north"], cfg["north"] - (ny - 1) * res)
    lon = (cfg["west"], cfg["west"] + (nx - 1) * res)
    da = synthetic_field("tcwv", times=times, ny=ny, nx=nx, seed=seed, lat=lat, lon=lon)
    da.attrs["source"] = "xdownscale.testing.synthetic_field (synthetic stand-in for ERA5 TCWV)"
    return da


def _load_user_field(data, var):
    """Open the user's file (or take a DataArray/Dataset), pick the variable, trim to the factor."""
    import xarray as xr

    from .cli.files import check_not_all_nan, open_data, pick_variable
    from .grid.cf import find_axes
    from .grid.coarsen import check_divisible

    if isinstance(data, (xr.Dataset, xr.DataArray)):
        source, where = None, None
        da = pick_variable(data, var)
    else:
        source, where = open_data(data, role="demo data", track=False), data
        try:
            da = pick_variable(source, var, path=data)
        except BaseException:
            source.close()
            raise
    try:
        check_not_all_nan(da, where)
        axes = find_axes(da)
        ny, nx = da.sizes[axes.y], da.sizes[axes.x]
        if ny < 4 * FACTOR or nx < 4 * FACTOR:
            raise ValueError(f"the grid of {da.name!r} ({ny}x{nx}) is too small for the demo: it needs at least "
                             f"{4 * FACTOR}x{4 * FACTOR} cells to downscale by {FACTOR}")
        trimmed = check_divisible(da, FACTOR, axes, trim=True)
    except BaseException:
        if source is not None:
            source.close()
        raise
    if trimmed.sizes[axes.y] != ny or trimmed.sizes[axes.x] != nx:
        warnings.warn(f"trimmed the grid from {ny}x{nx} to {trimmed.sizes[axes.y]}x{trimmed.sizes[axes.x]} "
                      f"(a multiple of the factor {FACTOR})", stacklevel=3)
    return trimmed, source


def _split(da):
    """(train, test, note): first 75% / last 25% of the times, or the one field twice."""
    from .grid.cf import find_axes

    tdim = find_axes(da).time
    n = da.sizes[tdim] if tdim and tdim in da.dims else 1
    if n < 2:
        warnings.warn(f"{da.name!r} has a single time step: training and testing on the same field "
                      "(the scores flatter the model)", stacklevel=3)
        return da, da, "single time step: test = training field"
    n_test = min(max(1, int(round(n * TEST_FRACTION))), n - 1)
    return (da.isel({tdim: slice(0, n - n_test)}), da.isel({tdim: slice(n - n_test, None)}),
            f"train on the first {n - n_test} time steps, test on the last {n_test}")


def _markdown(rows: list[list], header: list[str]) -> str:
    from .cli.files import fmt

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run_demo(out_dir, data=None, var: str | None = None, epochs: int | None = None, seed: int = 0, *,
             overwrite: bool = False, times: int | None = None, ny: int | None = None, nx: int | None = None,
             width: int | None = None, n_blocks: int | None = None, patch_size: int | None = None,
             batch_size: int | None = None, samples_per_epoch: int | None = None, progress: bool = True,
             verbose: bool = True) -> dict:
    """Train ``cnn`` + ``softmax`` x4, downscale held-out times, write maps and a metrics table.

    Parameters
    ----------
    out_dir : path
        Where the products go: ``prediction.nc``, ``prediction.zarr``,
        ``map.png`` (coarse | CNN | truth | error), ``metrics.csv``,
        ``metrics.md`` and the checkpoint ``model.pt``. Existing products are
        not replaced unless ``overwrite=True`` (checked before training).
    data, var : path (or xarray object) and variable name, optional
        Your own high-resolution field; default: the embedded synthetic TCWV
        field (module docstring).
    epochs, seed : training epochs (default: a few minutes on 2 cores) and seed.
    times, ny, nx : size of the default field (48, 128, 192); ``width``,
        ``n_blocks``, ``patch_size``, ``batch_size``, ``samples_per_epoch``:
        training budget. Smaller values make a fast test; the defaults are
        what ``xdownscale demo`` uses.
    progress, verbose : progress bars; print the table and the paths.

    Returns
    -------
    dict
        The product paths (keys of :data:`PRODUCTS`, plus ``out_dir``),
        ``metrics`` (``{row: {column: value}}``, rows ``"cnn+<constraint>"``
        and ``"bicubic"``), ``units``, ``constraint``, ``split`` and
        ``seconds`` (timings).
    """
    import xarray as xr

    import xdownscale as xd

    t_start = time.perf_counter()
    out = Path(os.fspath(out_dir)).expanduser()
    paths = {k: out / v for k, v in PRODUCTS.items()}
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{str(out)!r} exists and is not a directory")
    existing = [p for p in paths.values() if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(f"{str(out)!r} already holds demo products ({', '.join(p.name for p in existing)}); "
                              "pass --overwrite (overwrite=True) to replace them or choose another directory")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")

    # -- the field -------------------------------------------------------------------------
    if data is None:
        if var is not None:
            warnings.warn("var= is ignored without data=", stacklevel=2)
        field, source = default_field(times, ny, nx, seed=seed), None
        label = "synthetic TCWV (built-in)"
    else:
        field, source = _load_user_field(data, var)
        label = str(data) if not isinstance(data, (xr.Dataset, xr.DataArray)) else "given field"
    try:
        train, test, split_note = _split(field)
        name = str(field.name)
        units = str(field.attrs.get("units", ""))
        fmin = float(train.min())
        constraint = "softmax" if fmin >= 0 else "add"
        if constraint != "softmax":
            warnings.warn(f"{name!r} has negative values (min {fmin:.4g}): training with the 'add' constraint "
                          "instead of 'softmax' (which needs a non-negative field)", stacklevel=2)
        cfg = dict(DEFAULT_TRAINING)
        for key, value in (("epochs", epochs), ("width", width), ("n_blocks", n_blocks), ("patch_size", patch_size),
                           ("batch_size", batch_size), ("samples_per_epoch", samples_per_epoch)):
            if value is not None:
                cfg[key] = int(value)
        if verbose:
            print(f"xdownscale demo: {label}, variable {name!r} {dict(field.sizes)}; {split_note}")
            print(f"training {MODEL} x{FACTOR} with the {constraint!r} constraint ({cfg['epochs']} epochs of "
                  f"{cfg['samples_per_epoch']} patches of {cfg['patch_size']}x{cfg['patch_size']}) ...", flush=True)

        created_dir = not out.exists()
        before = {k for k, p in paths.items() if p.exists()}
        try:
            out.mkdir(parents=True, exist_ok=True)
            # -- train ---------------------------------------------------------------------------
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="only one time step")  # already said by _split
                model = xd.fit(train, model=MODEL, factor=FACTOR, constraint=constraint, epochs=cfg["epochs"],
                               batch_size=cfg["batch_size"], patch_size=cfg["patch_size"],
                               samples_per_epoch=cfg["samples_per_epoch"], learning_rate=cfg["learning_rate"],
                               seed=seed, patience=max(cfg["epochs"], 5), checkpoint=paths["checkpoint"],
                               progress=progress, width=cfg["width"], n_blocks=cfg["n_blocks"])
            t_fit = time.perf_counter() - t0

            # -- downscale the held-out times ----------------------------------------------------
            t0 = time.perf_counter()
            truth = test.load()
            lr = xd.coarsen(truth, FACTOR)
            pred = xd.predict(lr, model=model).load()
            bicubic = xd.predict(lr, model="bicubic", factor=FACTOR).load()
            t_predict = time.perf_counter() - t0
            mode = "w" if overwrite else "w-"
            xd.write(pred, paths["prediction_nc"], mode=mode)
            xd.write(pred, paths["prediction_zarr"], mode=mode)

            # -- score -----------------------------------------------------------------------------
            row_names = [f"{MODEL}+{constraint}", "bicubic"]
            metrics = {}
            for row, p in zip(row_names, (pred, bicubic)):
                res = xd.evaluate(p, truth, lr=lr)
                metrics[row] = {col: float(res[m]) if m in res else float("nan") for col, (m, _) in COLUMNS.items()}
            header = ["model"] + [f"{c} [{units if u is True else u}]" if u and (u is not True or units) else c
                                  for c, (_, u) in COLUMNS.items()]
            rows = [[r] + [metrics[r][c] for c in COLUMNS] for r in row_names]
            import csv
            import io

            from .cli.files import atomic_text, format_table

            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([[r[0]] + [repr(float(v)) for v in r[1:]] for r in rows])
            atomic_text(paths["metrics_csv"], buf.getvalue(), overwrite)
            better = metrics[row_names[0]]["RMSE"] < metrics["bicubic"]["RMSE"]
            md = (f"# xdownscale demo: {name} x{FACTOR}\n\n"
                  f"Data: {label}, {dict(field.sizes)}; {split_note}. Coarse input: exact area-weighted "
                  f"coarsening by {FACTOR}. Model: `{MODEL}` with the `{constraint}` constraint, "
                  f"{cfg['epochs']} epochs ({t_fit:.0f} s of training).\n\n"
                  + _markdown(rows, header)
                  + f"\nRMSE of {row_names[0]} is {'below' if better else 'NOT below'} bicubic interpolation "
                  f"({metrics[row_names[0]]['RMSE']:.4g} vs {metrics['bicubic']['RMSE']:.4g} {units}). "
                  "Mass violation: mean |coarsened prediction - coarse input|; negative pixels: count over all "
                  "test fields.\n")
            atomic_text(paths["metrics_md"], md, overwrite)

            # -- map -------------------------------------------------------------------------------
            try:
                from . import plot

                fig = plot.compare(lr, pred, truth, time=0, path=paths["map"],
                                   title=f"{name} x{FACTOR}: coarse | {row_names[0]} | truth | error")
                import matplotlib.pyplot as plt

                plt.close(fig)
                map_path = paths["map"]
            except ImportError as e:
                warnings.warn(f"map.png skipped: {e}", stacklevel=2)
                map_path = None
        except BaseException:
            for key, p in paths.items():
                if key not in before and p.exists():
                    _remove(p)
            if created_dir and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise

        seconds = {"fit": t_fit, "predict": t_predict, "total": time.perf_counter() - t_start}
        result = {"out_dir": out, **paths, "map": map_path, "metrics": metrics, "units": units,
                  "constraint": constraint, "split": split_note, "seconds": seconds, "variable": name,
                  "training": cfg}
        if verbose:
            print()
            print(format_table(rows, header))
            print()
            if not better:
                print(f"note: {row_names[0]} did not beat bicubic RMSE here; try more --epochs")
            print(f"trained in {t_fit:.0f} s, total {seconds['total']:.0f} s. Products in {out}:")
            for key in ("prediction_nc", "prediction_zarr", "map", "metrics_csv", "metrics_md", "checkpoint"):
                if result[key] is not None:
                    print(f"  {key:<16} {result[key]}")
        log.info("demo finished in %.1f s", seconds["total"])
        return result
    finally:
        if source is not None:
            source.close()
