"""Opening input files, picking variables and writing small text products for the CLI."""
from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os
import sys
import warnings
from pathlib import Path

PROG = "xdownscale"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
GRIB_SUFFIXES = (".grib", ".grb", ".grib2", ".grb2")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
# API wording -> CLI wording in error messages
CLI_WORDS = (("pass trim=True", "pass --trim"), ("trim=True", "--trim"), ("with var=...", "with --var NAME"),
              ("var=...", "--var NAME"), ("raise max_memory", "raise --max-memory"),
              ("max_memory=", "--max-memory "))

log = logging.getLogger("xdownscale")


class CLIError(Exception):
    """A user error found by the command line itself (message printed as is)."""


# --------------------------------------------------------------------------------------------
# opening files and choosing variables
# --------------------------------------------------------------------------------------------
def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any(
        (path / marker).exists() for marker in (".zgroup", ".zmetadata", "zarr.json", ".zarray")))


from .._compat import import_pyproj_first  # noqa: E402

_OPENED: list = []  # datasets opened by the running command, closed when it ends


def close_opened() -> None:
    while _OPENED:
        with contextlib.suppress(Exception):
            _OPENED.pop().close()


def open_data(path, *, chunks=None, role: str = "input", track: bool = True):
    """Open a NetCDF, Zarr or GRIB file as an ``xarray.Dataset``.

    ``chunks=None`` opens lazily without Dask; ``chunks={}`` gives Dask arrays
    with the file's own chunking. Raises ``FileNotFoundError`` / ``CLIError``
    with a message that names the file and the fix. ``track``: close it when
    the running command ends (else the caller closes it).
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            close = difflib.get_close_matches(p.name, [c.name for c in p.parent.iterdir()], n=1, cutoff=0.6)
            hint = f" Did you mean {str(p.parent / close[0])!r}?" if close else ""
        raise FileNotFoundError(f"{role} file {str(p)!r} does not exist.{hint}")
    ds = _open(p, chunks, role)
    if track:
        _OPENED.append(ds)
    return ds


def _netcdf_engine() -> str | None:
    import importlib.util

    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf"), ("scipy", "scipy")):
        if importlib.util.find_spec(module) is not None:
            return engine
    return None


def _open(p: Path, chunks, role: str):
    import xarray as xr

    suffix = p.suffix.lower()
    try:
        if _is_zarr(p):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*consolidated.*", category=RuntimeWarning)
                ds = xr.open_dataset(p, engine="zarr", chunks=chunks)
            if ds.attrs.get("xdownscale_complete") is False:  # an unfinished 'predict --resume' product
                raise CLIError(f"{role} {str(p)!r} is an unfinished resumable product (xdownscale_complete: false); "
                               "finish it by rerunning the same 'predict ... --resume' command")
            return ds
        if p.is_dir():
            raise CLIError(f"{role} {str(p)!r} is a directory but not a Zarr store")
        if suffix in GRIB_SUFFIXES:
            import_pyproj_first()
            try:
                import cfgrib  # noqa: F401
            except ImportError:
                raise CLIError(f"reading GRIB file {str(p)!r} needs cfgrib: pip install \"xdownscale[grib]\"") from None
            return xr.open_dataset(p, engine="cfgrib", chunks=chunks, backend_kwargs={"indexpath": ""})
        if suffix in NETCDF_SUFFIXES:
            return xr.open_dataset(p, engine=_netcdf_engine(), chunks=chunks)
        import_pyproj_first()
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


def open_scored(args):
    """(prediction, truth, coarse or None) named by ``args.pred``, ``args.truth``, ``args.lr`` and
    ``args.var``, as ``evaluate`` and ``report`` read them; refuses all-NaN fields."""
    truth = pick_variable(open_data(args.truth, role="truth"), args.var, path=args.truth, role="truth")
    name = str(truth.name)
    pred = pick_variable(open_data(args.pred, role="prediction"), args.var, path=args.pred, role="prediction",
                         fallback=name)
    lr = None
    if args.lr is not None:
        lr = pick_variable(open_data(args.lr, role="coarse (--lr)"), args.var, path=args.lr, role="coarse",
                           fallback=name)
    for da, path in ((pred, args.pred), (truth, args.truth)):
        check_not_all_nan(da, path)
    return pred, truth, lr


def check_not_all_nan(da, path=None) -> None:
    """Raise a clear error if ``da`` holds no valid value at all (read chunk by chunk)."""
    if da.chunks is None and da.size * da.dtype.itemsize > (256 << 20):
        da = da.chunk("auto")
    if bool(da.isnull().all()):
        where = f" in {str(path)!r}" if path is not None else ""
        raise CLIError(f"variable {da.name!r}{where} is NaN everywhere: nothing to learn from or downscale "
                       "(check the variable, the time range and the file's _FillValue)")


# --------------------------------------------------------------------------------------------
# output helpers
# --------------------------------------------------------------------------------------------
def fmt(value) -> str:
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
    cells = [[str(h) for h in header]] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [i > 0 and bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def atomic_text(path: Path, text: str, overwrite: bool) -> None:
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


def check_out(path: Path, overwrite: bool) -> None:
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"output {str(path)!r} already exists; pass --overwrite to replace it")


@contextlib.contextmanager
def remove_on_error(path: Path):
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
def show_progress(args) -> bool:
    """Progress bars on an interactive terminal only, and not with -q."""
    return not args.quiet and sys.stderr.isatty()


