"""The ``xdownscale`` command line: ``fit``, ``predict``, ``evaluate``, ``models`` and ``demo``.

Each subcommand is a thin face over the Python API (:func:`xdownscale.fit`,
:func:`xdownscale.predict`, :func:`xdownscale.evaluate`, ...). Input files may
be NetCDF (``.nc``), Zarr (a directory or ``*.zarr``) or GRIB
(``.grib``/``.grb``/``.grib2``, needs cfgrib). Bad input gives one line on
stderr, ``xdownscale: error: <what is wrong and how to fix it>``, exit status
2 and no partial output file; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import io
import logging
import math
import os
import sys
import warnings
from pathlib import Path

__all__ = ["main", "open_data", "pick_variable", "format_table"]

PROG = "xdownscale"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
GRIB_SUFFIXES = (".grib", ".grb", ".grib2", ".grb2")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
# API wording -> CLI wording in error messages
_CLI_WORDS = (("pass trim=True", "pass --trim"), ("trim=True", "--trim"), ("with var=...", "with --var NAME"),
              ("var=...", "--var NAME"))

log = logging.getLogger("xdownscale")


class CLIError(Exception):
    """A user error found by the command line itself (message printed as is)."""


# --------------------------------------------------------------------------------------------
# opening files and choosing variables
# --------------------------------------------------------------------------------------------
def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any(
        (path / marker).exists() for marker in (".zgroup", ".zmetadata", "zarr.json", ".zarray")))


def _import_pyproj_first() -> None:
    """Load pyproj's PROJ before ecCodes loads its own.

    The ecCodes wheels (eckitlib) bundle another libproj; once it is loaded,
    a later ``import pyproj`` (cartopy, for the map) finds no PROJ database and
    the process crashes at exit ("double free or corruption"). Importing pyproj
    first avoids it.
    """
    with contextlib.suppress(Exception):
        import pyproj  # noqa: F401


def open_data(path, *, chunks=None, role: str = "input"):
    """Open a NetCDF, Zarr or GRIB file as an ``xarray.Dataset``.

    ``chunks=None`` opens lazily without Dask; ``chunks={}`` gives Dask arrays
    with the file's own chunking. Raises ``FileNotFoundError`` / ``CLIError``
    with a message that names the file and the fix.
    """
    import xarray as xr

    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            close = difflib.get_close_matches(p.name, [c.name for c in p.parent.iterdir()], n=1, cutoff=0.6)
            hint = f" Did you mean {str(p.parent / close[0])!r}?" if close else ""
        raise FileNotFoundError(f"{role} file {str(p)!r} does not exist.{hint}")
    suffix = p.suffix.lower()
    try:
        if _is_zarr(p):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*consolidated.*", category=RuntimeWarning)
                return xr.open_dataset(p, engine="zarr", chunks=chunks)
        if p.is_dir():
            raise CLIError(f"{role} {str(p)!r} is a directory but not a Zarr store")
        if suffix in GRIB_SUFFIXES:
            _import_pyproj_first()
            try:
                import cfgrib  # noqa: F401
            except ImportError:
                raise CLIError(f"reading GRIB file {str(p)!r} needs cfgrib: pip install \"xdownscale[grib]\"") from None
            return xr.open_dataset(p, engine="cfgrib", chunks=chunks, backend_kwargs={"indexpath": ""})
        if suffix in NETCDF_SUFFIXES:
            return xr.open_dataset(p, chunks=chunks)
        try:  # unknown suffix: let xarray guess
            return xr.open_dataset(p, chunks=chunks)
        except ValueError:
            raise CLIError(f"cannot tell the format of {role} file {str(p)!r}: use NetCDF (.nc), Zarr (.zarr) "
                           f"or GRIB (.grib/.grb/.grib2)") from None
    except (CLIError, FileNotFoundError):
        raise
    except OSError as e:
        raise CLIError(f"cannot read {role} file {str(p)!r}: {e}") from None


def _bounds_names(ds) -> set:
    names = {str(c.attrs.get("bounds")) for c in ds.variables.values() if c.attrs.get("bounds")}
    for name, var in ds.data_vars.items():
        if str(name).endswith(("_bnds", "_bounds")) or any(d in ("bnds", "nv", "bounds", "nbnd") for d in var.dims):
            names.add(str(name))
    return names


def field_names(ds) -> list[str]:
    """Data variables that are fields (at least 2-D, numeric, not cell bounds or grid mappings)."""
    import numpy as np

    skip = _bounds_names(ds)
    return [str(n) for n, v in ds.data_vars.items()
            if str(n) not in skip and v.ndim >= 2 and np.issubdtype(v.dtype, np.number)]


def pick_variable(ds, var: str | None, *, path=None, role: str = "input", fallback: str | None = None):
    """``ds[var]``, or the only field of ``ds``; clear errors with close-name suggestions."""
    import xarray as xr

    if isinstance(ds, xr.DataArray):
        return ds
    where = f" in {str(path)!r}" if path is not None else ""
    which = f"the {role} file {str(path)!r}" if path is not None else f"the {role} Dataset"
    names = field_names(ds)
    if var is None:
        if fallback is not None and fallback in ds.data_vars:
            return ds[fallback]
        if len(names) == 1:
            return ds[names[0]]
        if not names:
            listed = ", ".join(map(str, ds.data_vars)) or "none"
            raise CLIError(f"no gridded variable found{where} (variables: {listed})")
        raise CLIError(f"{which} has several variables ({', '.join(names)}): choose one with --var NAME")
    if var not in ds.data_vars:
        choices = names or [str(n) for n in ds.data_vars]
        close = difflib.get_close_matches(var, choices, n=3, cutoff=0.5)
        lower = [n for n in choices if n.lower() == var.lower()]
        close = lower + [c for c in close if c not in lower]
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise CLIError(f"variable {var!r} not found{where}.{hint} Variables: {', '.join(choices) or 'none'}")
    return ds[var]


def check_not_all_nan(da, path=None) -> None:
    """Raise a clear error if ``da`` holds no valid value at all."""
    if bool(da.isnull().all()):
        where = f" in {str(path)!r}" if path is not None else ""
        raise CLIError(f"variable {da.name!r}{where} is NaN everywhere: nothing to learn from or downscale "
                       "(check the variable, the time range and the file's _FillValue)")


# --------------------------------------------------------------------------------------------
# output helpers
# --------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "nan"
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}" if (abs(v) >= 1e-3 or v == 0) else f"{v:.3e}"


def _is_number(value) -> bool:
    if isinstance(value, bool) or isinstance(value, str):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def format_table(rows: list[list], header: list[str]) -> str:
    """A plain fixed-width text table (numeric columns right-aligned, text left-aligned)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [i > 0 and bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _atomic_text(path: Path, text: str, overwrite: bool) -> None:
    """Write a small text file through a temporary sibling (never half-written)."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_out(path: Path, overwrite: bool) -> None:
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"output {str(path)!r} already exists; pass --overwrite to replace it")


@contextlib.contextmanager
def _remove_on_error(path: Path):
    """Delete ``path`` if the block fails and ``path`` did not exist before it."""
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed and path.exists():
            import shutil

            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------------
def _progress(args) -> bool:
    """Progress bars on an interactive terminal only, and not with -q."""
    return not args.quiet and sys.stderr.isatty()


def cmd_fit(args) -> int:
    import xdownscale as xd

    out = Path(args.out).expanduser()
    _check_out(out, args.overwrite)
    if args.factor is None and args.lr_data is None:
        raise CLIError("give the downscaling factor with --factor N (or a real coarse file with --lr-data)")
    if out.suffix.lower() not in (".pt", ".pth"):
        raise CLIError(f"name the checkpoint '*.pt' (got {str(out)!r}) so that predict --model recognises it")
    ds = open_data(args.data, role="training")
    hr = pick_variable(ds, args.var, path=args.data)
    check_not_all_nan(hr, args.data)
    lr = None
    if args.lr_data is not None:
        lr = pick_variable(open_data(args.lr_data, role="coarse (--lr-data)"), str(hr.name), path=args.lr_data,
                           role="coarse")
        check_not_all_nan(lr, args.lr_data)
    cov = _open_covariates(args.covariates)
    kwargs = {}
    if args.width is not None:
        kwargs["width"] = args.width
    if args.n_blocks is not None:
        kwargs["n_blocks"] = args.n_blocks
    log.info("fitting %s x%s on %r from %s", args.model, args.factor, hr.name, args.data)
    with _remove_on_error(out):
        model = xd.fit(hr, lr=lr, model=args.model, factor=args.factor, constraint=args.constraint,
                       covariates=cov, epochs=args.epochs, batch_size=args.batch_size, patch_size=args.patch_size,
                       seed=args.seed, learning_rate=args.learning_rate, samples_per_epoch=args.samples_per_epoch,
                       checkpoint=out, trim=args.trim, device=args.device, progress=_progress(args), **kwargs)
    train = model.meta.get("training", {})
    best = train.get("best_val_loss")
    best_txt = "" if best is None else f"; best validation loss {best:.4g} at epoch {train.get('best_epoch', -1) + 1}"
    print(f"saved {model.model_name} x{model.factor} ({model.constraint}) for {model.variable!r} to {out}{best_txt}")
    print(f"next: {PROG} predict COARSE.nc --model {out} --out prediction.nc")
    return EXIT_OK


def _open_covariates(path):
    if path is None:
        return None
    ds = open_data(path, role="covariates")
    names = field_names(ds)
    if not names:
        raise CLIError(f"no gridded variable in covariates file {str(path)!r}")
    return ds[names]


def cmd_predict(args) -> int:
    import xdownscale as xd
    from .prediction import resolve_model

    out = Path(args.out).expanduser()
    _check_out(out, args.overwrite)
    if out.suffix.lower() not in (".nc", ".nc4", ".zarr"):
        raise CLIError(f"name the output '*.nc' (NetCDF) or '*.zarr' (Zarr), got {str(out)!r}")
    ds = open_data(args.data, chunks={}, role="input")
    fallback = None
    model = args.model
    looks_like_file = Path(model).suffix.lower() in (".pt", ".pth") or Path(model).expanduser().is_file()
    if looks_like_file:
        model = resolve_model(str(Path(model).expanduser()), factor=args.factor)
        fallback = model.variable
    da = pick_variable(ds, args.var, path=args.data, fallback=fallback)
    downscaler = model if looks_like_file else resolve_model(model, factor=args.factor, variable=str(da.name))
    check_not_all_nan(da, args.data)
    from .grid.cf import find_axes

    axes = find_axes(da)
    chunks = args.chunks
    if chunks is None:  # tiles of about 1024 x 1024 fine cells, ~64 MB of output per chunk
        from .engine.infer import DEFAULT_FINE_CHUNK

        chunks = max(DEFAULT_FINE_CHUNK // downscaler.factor, 16)
    if axes.time and axes.time in da.dims:
        fine_tile = (min(chunks, da.sizes[axes.y]) * min(chunks, da.sizes[axes.x]) * downscaler.factor ** 2 * 4)
        da = da.chunk({axes.time: max(1, min(da.sizes[axes.time], (64 << 20) // fine_tile))})
    obj = ds[[str(da.name)] + list(downscaler.meta.get("predictors", []))] if downscaler.meta.get("predictors") else da
    if obj is not da:
        obj[str(da.name)] = da
    pred = xd.predict(obj, model=downscaler, var=str(da.name), covariates=_open_covariates(args.covariates),
                      chunks=chunks, device=args.device)
    log.info("writing %s", out)
    from dask.diagnostics import ProgressBar

    bar = contextlib.nullcontext() if not _progress(args) else ProgressBar(minimum=1.0, out=sys.stderr)
    with bar:
        xd.write(pred, out, mode="w" if args.overwrite else "w-")
    print(f"wrote {downscaler.model_name} x{downscaler.factor} prediction of {da.name!r} to {out}")
    return EXIT_OK


_EVAL_SHORT = ["rmse", "mae", "bias", "ssim", "psnr", "pearson_r", "mass_violation", "negative_count"]


def cmd_evaluate(args) -> int:
    import numpy as np

    import xdownscale as xd

    out = Path(args.out).expanduser() if args.out else None
    if out is not None:
        _check_out(out, args.overwrite)
    tds = open_data(args.truth, role="truth")
    truth = pick_variable(tds, args.var, path=args.truth, role="truth")
    name = str(truth.name)
    pred = pick_variable(open_data(args.pred, role="prediction"), args.var, path=args.pred, role="prediction",
                         fallback=name)
    lr = None
    if args.lr is not None:
        lr = pick_variable(open_data(args.lr, role="coarse (--lr)"), args.var, path=args.lr, role="coarse",
                           fallback=name)
    for da, p in ((pred, args.pred), (truth, args.truth)):
        check_not_all_nan(da, p)
    res = xd.evaluate(pred, truth, lr=lr, per_time=args.per_time)
    names = list(res.data_vars)
    units = {k: str(res[k].attrs.get("units", "")) for k in names}
    if args.per_time:
        from .grid.cf import find_axes

        tdim = find_axes(truth).time
        times = [str(t)[:19] for t in np.asarray(res[tdim].values)] if tdim in res.coords else \
            list(range(res.sizes[tdim]))
        shown = [k for k in _EVAL_SHORT if k in names]
        rows = [[t] + [float(res[k].isel({tdim: i})) for k in shown] for i, t in enumerate(times)]
        print(format_table(rows, [tdim] + shown))
        csv_header, csv_rows = [tdim] + names, [[t] + [float(res[k].isel({tdim: i})) for k in names]
                                                for i, t in enumerate(times)]
    else:
        rows = [[k, float(res[k]), units[k]] for k in names]
        print(format_table(rows, ["metric", "value", "units"]))
        csv_header, csv_rows = ["metric", "value", "units"], rows
    if out is not None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(csv_header)
        w.writerows(csv_rows)
        _atomic_text(out, buf.getvalue(), args.overwrite)
        print(f"wrote {out}")
    return EXIT_OK


def cmd_models(args) -> int:
    import xdownscale as xd

    rows = []
    for name in xd.list_models():
        info = xd.model_info(name)
        rows.append([name, "yes" if info["trainable"] else "no (baseline)", info["factors"], info["description"]])
    print(format_table(rows, ["model", "trainable", "factors", "description"]))
    from . import model_store

    entries = model_store.entries()
    if entries:
        print(f"\n{len(entries)} trained checkpoint(s) in {model_store.models_dir()}; the latest for a variable, "
              "model and factor is used by: predict --model NAME --var VAR --factor N")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo

    if (args.data is None) != (args.var is None) and args.data is None:
        raise CLIError("--var goes with --data PATH (the demo's own field needs no --var)")
    run_demo(args.out, data=args.data, var=args.var, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite,
             progress=_progress(args), verbose=True)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions, keeps multi-line epilogs (examples) as written, and shows
    meaningful defaults (not None/False)."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" not in text and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def _common(defaults: bool) -> argparse.ArgumentParser:
    """-v/-q/--debug, accepted before and after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    sup = {} if defaults else {"default": argparse.SUPPRESS}
    g = p.add_argument_group("output and diagnostics")
    g.add_argument("-v", "--verbose", action="count", help="log progress to stderr (-vv: debug)",
                   **({"default": 0} if defaults else sup))
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars", **sup)
    g.add_argument("--debug", action="store_true", help="show the full traceback on errors", **sup)
    return p


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .demo import DEFAULT_TRAINING

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter, parents=[_common(True)],
        description="Deep-learning downscaling of gridded climate fields (NetCDF, Zarr, GRIB) with hard "
                    "conservation constraints.",
        epilog=f"""quick start:
  {PROG} demo --out demo_out                  # train and evaluate on a built-in field (~1 min)
  {PROG} models                               # what can be trained or used as a baseline
  {PROG} fit era5_tcwv.nc --var tcwv --model cnn --factor 4 --constraint softmax --out tcwv_x4.pt
  {PROG} predict coarse.nc --model tcwv_x4.pt --out fine.nc
  {PROG} evaluate fine.nc truth.nc --lr coarse.nc

run '{PROG} COMMAND --help' for the options of each command.""")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _common(False)

    # fit -----------------------------------------------------------------------------------
    p = sub.add_parser(
        "fit", parents=[common], formatter_class=_Formatter,
        help="train a model on a high-resolution field and save a checkpoint",
        description="Train a downscaling model. The coarse input is the exact area-weighted coarsening of "
                    "DATA by --factor (or a real coarse file given with --lr-data); the last 20% of the "
                    "time steps validate. The checkpoint is self-describing and is also remembered in the "
                    "model store ($XDOWNSCALE_HOME).",
        epilog=f"""examples:
  {PROG} fit era5_tcwv.nc --var tcwv --model cnn --factor 4 --constraint softmax --out tcwv_x4.pt
  {PROG} fit t2m.zarr --var t2m --model espcn --factor 3 --constraint add --epochs 50 --out t2m_x3.pt
  {PROG} fit fine.nc --lr-data coarse.nc --var tp --model cnn --constraint softmax --out tp.pt""")
    p.add_argument("data", metavar="DATA", help="high-resolution training file (.nc, .zarr, .grib)")
    p.add_argument("--var", help="variable to downscale (default: the file's only variable)")
    p.add_argument("--model", default="cnn", help="trainable model (see: xdownscale models)")
    p.add_argument("--factor", type=int, metavar="N", help="downscaling factor (required unless --lr-data)")
    p.add_argument("--constraint", default="none",
                   help="output constraint: none, soft, add, mult, softmax (non-negative fields), scadd")
    p.add_argument("--epochs", type=int, metavar="N", default=20, help="training epochs")
    p.add_argument("--batch-size", type=int, metavar="N", default=64, help="patches per batch")
    p.add_argument("--patch-size", type=int, metavar="N", default=64, help="patch side in fine-grid cells")
    p.add_argument("--samples-per-epoch", type=int, metavar="N", help="patches per epoch (default: about one pass)")
    p.add_argument("--learning-rate", type=float, default=1e-3, metavar="RATE", help="Adam learning rate")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="random seed")
    p.add_argument("--width", type=int, metavar="N", help="channels of the network (model default: 64)")
    p.add_argument("--n-blocks", type=int, metavar="N", help="residual blocks (model default: 4)")
    p.add_argument("--lr-data", metavar="COARSE_FILE", help="real coarse input on a grid --factor times coarser")
    p.add_argument("--covariates", metavar="FILE", help="static fine-grid inputs (orography, land-sea mask)")
    p.add_argument("--trim", action="store_true", help="drop the last rows/columns so the grid divides by --factor")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (*.pt)")
    p.set_defaults(func=cmd_fit)

    # predict -------------------------------------------------------------------------------
    p = sub.add_parser(
        "predict", parents=[common], formatter_class=_Formatter,
        help="downscale a coarse file with a checkpoint or a baseline and write NetCDF/Zarr",
        description="Downscale a coarse field, tile by tile (Dask), and write it with CF metadata to NetCDF "
                    "(.nc) or Zarr (.zarr). --model is a checkpoint from 'fit', a baseline (bicubic, ...; "
                    "needs --factor) or a trainable model name (the latest checkpoint in the model store for "
                    "that variable and factor).",
        epilog=f"""examples:
  {PROG} predict coarse.nc --model tcwv_x4.pt --out fine.nc
  {PROG} predict coarse.nc --var tcwv --model bicubic --factor 4 --out bicubic.zarr
  {PROG} predict coarse.grib --var tcwv --model cnn --factor 4 --chunks 128 --out fine.zarr""")
    p.add_argument("data", metavar="DATA", help="coarse input file (.nc, .zarr, .grib)")
    p.add_argument("--model", required=True, metavar="NAME|CKPT", help="checkpoint path or model name")
    p.add_argument("--factor", type=int, metavar="N",
                   help="downscaling factor (baselines; checked against a checkpoint)")
    p.add_argument("--var", help="variable to downscale (default: the checkpoint's or the file's only one)")
    p.add_argument("--covariates", metavar="FILE", help="static fine-grid inputs the model was trained with")
    p.add_argument("--chunks", type=int, metavar="N", help="spatial tile size in coarse cells (default: automatic)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--out", required=True, metavar="PATH", help="output file: *.nc (NetCDF) or *.zarr (Zarr)")
    p.set_defaults(func=cmd_predict)

    # evaluate ------------------------------------------------------------------------------
    p = sub.add_parser(
        "evaluate", parents=[common], formatter_class=_Formatter,
        help="score a prediction against the truth (RMSE, SSIM, mass violation, ...)",
        description="Compute verification metrics of PRED against TRUTH (same fine grid), area-weighted on "
                    "lat/lon grids. With --lr (the coarse input) the mass violation is added: how far the "
                    "coarsened prediction is from the input.",
        epilog=f"""examples:
  {PROG} evaluate fine.nc truth.nc
  {PROG} evaluate fine.nc truth.nc --lr coarse.nc --var tcwv --out metrics.csv
  {PROG} evaluate fine.nc truth.nc --per-time""")
    p.add_argument("pred", metavar="PRED", help="prediction file")
    p.add_argument("truth", metavar="TRUTH", help="high-resolution reference file")
    p.add_argument("--lr", metavar="LR", help="coarse input file (adds mass violation)")
    p.add_argument("--var", help="variable to score (default: the truth file's only variable)")
    p.add_argument("--per-time", action="store_true", help="one row per time step")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    p.add_argument("--out", metavar="CSV", help="also write the metrics to this CSV file")
    p.set_defaults(func=cmd_evaluate)

    # models --------------------------------------------------------------------------------
    p = sub.add_parser(
        "models", parents=[common], formatter_class=_Formatter,
        help="list the registered models and baselines",
        description="List the registered models: whether they can be trained, which factors they support "
                    "and what they are.",
        epilog=f"example:\n  {PROG} models")
    p.set_defaults(func=cmd_models)

    # demo ----------------------------------------------------------------------------------
    p = sub.add_parser(
        "demo", parents=[common], formatter_class=_Formatter,
        help="end-to-end demo: train a CNN for ~1 min, predict, map and score it against bicubic",
        description="Train a 'cnn' with the 'softmax' (mass-conserving, non-negative) constraint at factor 4 "
                    "on the first 75% of the time steps of a field, downscale the held-out last 25% from "
                    "its coarsening, and write prediction.nc, prediction.zarr, map.png, metrics.csv and "
                    "metrics.md (CNN vs bicubic) to --out. Without --data it uses a built-in synthetic "
                    "total column water vapour field (48 hourly steps on a 0.25 degree grid, 128x192).",
        epilog=f"""examples:
  {PROG} demo --out demo_out
  {PROG} demo --out my_demo --data era5_tcwv.nc --var tcwv --epochs 20""")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--data", metavar="PATH", help="your own high-resolution file (.nc, .zarr, .grib)")
    p.add_argument("--var", help="variable in --data")
    p.add_argument("--epochs", type=int, metavar="N",
                   help=f"training epochs (default: {DEFAULT_TRAINING['epochs']}, about one minute on a 2-core CPU)")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace existing products in DIR")
    p.set_defaults(func=cmd_demo)
    return parser


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _cli_words(message: str) -> str:
    for api, cli in _CLI_WORDS:
        message = message.replace(api, cli)
    return " ".join(message.split())  # one line


def _error(message: str) -> None:
    print(f"{PROG}: error: {_cli_words(message)}", file=sys.stderr)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    kind = "warning" if category in (UserWarning, RuntimeWarning) else f"warning ({category.__name__})"
    print(f"{PROG}: {kind}: {text}", file=sys.stderr)


def _user_errors() -> tuple:
    from .errors import XDownscaleError
    from .models._registry import UnknownModelError

    return (CLIError, XDownscaleError, UnknownModelError, FileNotFoundError, FileExistsError, IsADirectoryError,
            PermissionError, ValueError, ImportError)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 unexpected failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    for name, default in (("verbose", 0), ("quiet", False), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    level = logging.WARNING if not args.verbose else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _showwarning
            return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _user_errors() as e:
        if args.debug:
            raise
        msg = str(e) if not isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)) or not \
            getattr(e, "filename", None) else f"{e.strerror}: {e.filename!r}"
        _error(msg or type(e).__name__)
        return EXIT_USAGE
    except Exception as e:  # a bug: say so in one line, --debug shows where
        if args.debug:
            raise
        _error(f"{type(e).__name__}: {e} (unexpected; rerun with --debug for the traceback and please report it)")
        return EXIT_FAILURE
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
