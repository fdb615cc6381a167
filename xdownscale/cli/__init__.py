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
import logging
import sys
import warnings

from .._compat import import_pyproj_first
from ..config import DEFAULT_MODEL, DEFAULT_MODEL_OPTIONS, DEFAULT_PRECISION, PRECISIONS, TrainConfig
from ..errors import XDownscaleError
from .commands import cmd_coarsen, cmd_demo, cmd_evaluate, cmd_fit, cmd_models, cmd_predict
from .files import (
    CLI_WORDS,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    CLIError,
    close_opened,
    format_table,
    log,
    open_data,
    pick_variable,
)
from .store import add_prune_option

__all__ = ["main", "open_data", "pick_variable", "format_table"]

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
    from .._version import __version__
    from ..demo import DEFAULT_TRAINING

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
  {PROG} fit fine.nc --lr-data coarse.nc --var tp --model cnn --constraint softmax --out tp.pt
  {PROG} fit era5_tcwv.zarr --var tcwv --model cnn --factor 4 --nproc 4 --batch-size 64 --out tcwv_x4.pt""")
    p.add_argument("data", metavar="DATA", help="high-resolution training file (.nc, .zarr, .grib)")
    p.add_argument("--var", help="variable to downscale (default: the file's only variable); several, comma "
                                 "separated (--var msl,tp), train one network for all of them")
    p.add_argument("--predictors", metavar="NAMES",
                   help="input variables, comma separated (default with several --var: every gridded variable of "
                        "--lr-data, or the targets coarsened)")
    p.add_argument("--model", default=None,
                   help=f"trainable model (see: xdownscale models; default: {DEFAULT_MODEL} with "
                        f"{DEFAULT_MODEL_OPTIONS})")
    p.add_argument("--factor", type=int, metavar="N", help="downscaling factor (required unless --lr-data)")
    p.add_argument("--constraint", default="none",
                   help="output constraint: none, soft, add, mult, softmax (non-negative fields), scadd; per target "
                        "with several --var: msl=add,tp=softmax (tp=softmax@tp_arpege conserves a named input)")
    p.add_argument("--consistency", action="append", metavar="RULE",
                   help="a rule across several --var targets, kept with their conservation; repeat for more: "
                        "'0<=r<=100', 'd2m<=t2m', 'ws=hypot(u10,v10)' (or 'hypot(u10,v10)=ws' to keep ws)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="training epochs (default: a budget of optimizer updates, the same on any archive; "
                        "ensembles and diffusion: 20 epochs)")
    p.add_argument("--max-updates", type=int, metavar="N", help="training budget in optimizer updates")
    p.add_argument("--max-minutes", type=float, metavar="M", help="training budget in minutes (wall time)")
    p.add_argument("--batch-size", type=int, metavar="N", default=TrainConfig.batch_size, help="patches per batch")
    p.add_argument("--patch-size", type=int, metavar="N", default=64, help="patch side in fine-grid cells")
    p.add_argument("--samples-per-epoch", type=int, metavar="N", help="patches per epoch (default: about one pass)")
    p.add_argument("--learning-rate", type=float, default=None, metavar="RATE",
                   help="Adam learning rate (default: the model's, 1e-3 for most)")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="random seed")
    p.add_argument("--width", type=int, metavar="N", help="channels of the network (model default: 64)")
    p.add_argument("--n-blocks", type=int, metavar="N", help="residual blocks (model default: 4; the default model: 6)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a further model or training option, repeatable, e.g. --option scales=(1.5,8) for liif "
                        "or --option window=3 for convgru (see 'xdownscale models --options MODEL')")
    p.add_argument("--lr-data", metavar="COARSE_FILE", help="real coarse input on a grid --factor times coarser")
    p.add_argument("--covariates", metavar="FILE", help="static fine-grid inputs (orography, land-sea mask)")
    p.add_argument("--trim", action="store_true", help="drop the last rows/columns so the grid divides by --factor")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                   help="arithmetic of the network body: bf16 or fp16 autocast with float32 master weights; auto: "
                        "bf16 where the CPU (AVX512-BF16, AMX) or GPU (sm80+) runs it natively, else fp32")
    p.add_argument("--nproc", type=int, metavar="N", default=1,
                   help="train data-parallel on N processes (PyTorch DDP: gloo on CPU, nccl with one GPU each); "
                        "--batch-size is the global batch and must divide by N")
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
  {PROG} predict coarse.grib --var tcwv --model cnn --factor 4 --chunks 128 --out fine.zarr
  {PROG} predict coarse.nc --model tcwv_x4.pt --out fine.zarr --resume   # rerun after a kill to finish""")
    p.add_argument("data", metavar="DATA", help="coarse input file (.nc, .zarr, .grib)")
    p.add_argument("--model", required=True, metavar="NAME|CKPT", help="checkpoint path or model name")
    p.add_argument("--factor", type=float, metavar="N",
                   help="downscaling factor (baselines; checked against a checkpoint; any real number >= 1 for "
                        "arbitrary-scale models such as liif)")
    p.add_argument("--target", metavar="FILE", help="arbitrary-scale models: predict onto this file's lat/lon grid")
    p.add_argument("--points", metavar="FILE",
                   help="arbitrary-scale models: predict at this file's lat/lon points (e.g. stations)")
    p.add_argument("--force", action="store_true",
                   help="apply a trained model to another variable, other units or another grid spacing than it was "
                        "trained on (refused otherwise; a warning is still printed)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a model family's own prediction option, repeatable: members=10, seed=1, steps=20, "
                        "time_factor=3 (see 'xdownscale models --options MODEL')")
    p.add_argument("--var", help="variable to downscale (default: the checkpoint's or the file's only one)")
    p.add_argument("--constraint", metavar="NAME|VAR=NAME,...",
                   help="liif: the hard constraint applied at prediction (add, mult, softmax, scadd), or one per "
                        "target (msl=add,tp=softmax); other models keep the one they were trained with")
    p.add_argument("--covariates", metavar="FILE", help="static fine-grid inputs the model was trained with")
    p.add_argument("--chunks", type=int, metavar="N", help="spatial tile size in coarse cells (default: automatic)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                   help="arithmetic of the network body (spatial models): bf16 or fp16 autocast; auto: bf16 where "
                        "the hardware runs it natively, else fp32. Interpolation and constraint stay float32")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="memory the prediction may use on top of the program and the model, e.g. 2GB or 500MB "
                        "(default: half the available memory, at most 4 GiB; or $XDOWNSCALE_MAX_MEMORY); sets the "
                        "tile, chunk and batch sizes and how many chunks run at once")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true",
                   help="Zarr only: write region by region and, after a crash or kill, rerun the same command "
                        "to compute only the missing regions")
    p.add_argument("--out", required=True, metavar="PATH", help="output file: *.nc (NetCDF) or *.zarr (Zarr)")
    p.set_defaults(func=cmd_predict)

    # coarsen -------------------------------------------------------------------------------
    p = sub.add_parser(
        "coarsen", parents=[common], formatter_class=_Formatter,
        help="make the coarse input of a fine field (exact area-weighted block mean)",
        description="Coarsen a fine field by an integer factor with the exact area-weighted block mean that "
                    "fit uses to make its coarse inputs, keeping CF metadata; writes NetCDF or Zarr atomically.",
        epilog=f"example:\n  {PROG} coarsen fine.nc --var t2m --factor 4 --out coarse.nc")
    p.add_argument("data", help="fine input file (NetCDF, Zarr or GRIB)")
    p.add_argument("--var", help="variable to coarsen (default: the file's only field, or all of them)")
    p.add_argument("--factor", type=int, required=True, metavar="N", help="integer coarsening factor")
    p.add_argument("--trim", action="store_true", help="drop trailing rows/columns that do not fill a block")
    p.add_argument("--out", required=True, help="output file: '*.nc' or '*.zarr'")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_coarsen)

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
        epilog=f"examples:\n  {PROG} models\n  {PROG} models --options gan   # what --option KEY=VALUE accepts")
    p.add_argument("--options", metavar="MODEL", help="list the fit and predict options of MODEL (their type, "
                                                        "default and meaning)")
    p.set_defaults(func=cmd_models)
    add_prune_option(p)  # models --prune (cli/store.py)

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
                   help=f"training epochs (default: {DEFAULT_TRAINING['epochs']}, a few minutes on a 2-core CPU)")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace existing products in DIR")
    p.set_defaults(func=cmd_demo)

    from .report import add_parser as add_report_parser  # report: xdownscale/cli/report.py

    add_report_parser(sub, common, _Formatter)
    return parser


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _cli_words(message: str) -> str:
    for api, cli in CLI_WORDS:
        message = message.replace(api, cli)
    return " ".join(message.split())  # one line


def _error(message: str) -> None:
    print(f"{PROG}: error: {_cli_words(message)}", file=sys.stderr)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    kind = "warning" if category in (UserWarning, RuntimeWarning) else f"warning ({category.__name__})"
    print(f"{PROG}: {kind}: {text}", file=sys.stderr)


def _user_errors() -> tuple:
    return (CLIError, XDownscaleError, FileNotFoundError, FileExistsError, IsADirectoryError,
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
    import_pyproj_first()
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
        close_opened()
        log.removeHandler(handler)
        log.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
