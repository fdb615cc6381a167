"""The CLI subcommands: each a thin face over the Python API."""
from __future__ import annotations

import contextlib
import csv
import io
import sys
from pathlib import Path

from .files import (
    EXIT_OK,
    PROG,
    CLIError,
    _atomic_text,
    _check_out,
    _progress,
    _remove_on_error,
    check_not_all_nan,
    field_names,
    format_table,
    log,
    open_data,
    pick_variable,
)


def parse_options(items) -> dict:
    """``KEY=VALUE`` pairs from ``--option``; values are Python literals (numbers, tuples, True)
    where they parse as such, else strings."""
    import ast

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CLIError(f"--option takes KEY=VALUE (e.g. --option members=10), got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def _factor(value):
    """An integer factor stays an int (fixed-factor models); 2.5 stays a float (arbitrary-scale models)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


def cmd_fit(args) -> int:
    import xdownscale as xd

    out = Path(args.out).expanduser()
    _check_out(out, args.overwrite)
    from ..models import model_info

    scale_free = model_info(args.model)["family"] == "implicit"  # trains over a range of scales
    if args.factor is None and args.lr_data is None and not scale_free:
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
    kwargs = parse_options(args.option)
    if args.width is not None:
        kwargs["width"] = args.width
    if args.n_blocks is not None:
        kwargs["n_blocks"] = args.n_blocks
    log.info("fitting %s x%s on %r from %s", args.model, args.factor, hr.name, args.data)
    with _remove_on_error(out):
        model = xd.fit(hr, lr=lr, model=args.model, factor=args.factor, constraint=args.constraint,
                       covariates=cov, epochs=args.epochs, batch_size=args.batch_size, patch_size=args.patch_size,
                       seed=args.seed, learning_rate=args.learning_rate, samples_per_epoch=args.samples_per_epoch,
                       checkpoint=out, trim=args.trim, device=args.device, progress=_progress(args), nproc=args.nproc,
                       **kwargs)
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
    from ..prediction import _family_predictor, resolve_model

    out = Path(args.out).expanduser()
    if args.resume and out.suffix.lower() != ".zarr":
        raise CLIError(f"--resume writes Zarr: name the output '*.zarr', got {str(out)!r}")
    if not args.resume:
        _check_out(out, args.overwrite)
    if out.suffix.lower() not in (".nc", ".nc4", ".zarr"):
        raise CLIError(f"name the output '*.nc' (NetCDF) or '*.zarr' (Zarr), got {str(out)!r}")
    ds = open_data(args.data, chunks={}, role="input")
    fallback = None
    model = args.model
    looks_like_file = Path(model).suffix.lower() in (".pt", ".pth") or Path(model).expanduser().is_file()
    factor = _factor(args.factor)
    options = parse_options(args.option)
    if looks_like_file:
        model = resolve_model(str(Path(model).expanduser()), check_factor=False)
        fallback = model.variable
    da = pick_variable(ds, args.var, path=args.data, fallback=fallback)
    check_not_all_nan(da, args.data)
    family = _family_predictor(model)
    if family is not None or options or args.target or args.points:
        return _predict_family(args, ds, da, model, factor, options, out)
    downscaler = model if looks_like_file else resolve_model(model, factor=factor, variable=str(da.name))
    if looks_like_file and factor is not None and factor != downscaler.factor:
        raise CLIError(f"--factor {factor} but {args.model} was trained for x{downscaler.factor}; drop --factor")
    from ..grid.cf import find_axes

    axes = find_axes(da)
    chunks = args.chunks
    if chunks is None:  # tiles of about 1024 x 1024 fine cells, ~64 MB of output per chunk
        from ..engine.infer import DEFAULT_FINE_CHUNK

        chunks = max(DEFAULT_FINE_CHUNK // downscaler.factor, 16)
    if axes.time and axes.time in da.dims:
        fine_tile = (min(chunks, da.sizes[axes.y]) * min(chunks, da.sizes[axes.x]) * downscaler.factor ** 2 * 4)
        da = da.chunk({axes.time: max(1, min(da.sizes[axes.time], (64 << 20) // fine_tile))})
    obj = ds[[str(da.name)] + list(downscaler.meta.get("predictors", []))] if downscaler.meta.get("predictors") else da
    if obj is not da:
        obj[str(da.name)] = da
    pred = xd.predict(obj, model=downscaler, var=str(da.name), covariates=_open_covariates(args.covariates),
                      chunks=chunks, device=args.device)
    _write_prediction(args, pred, out)
    print(f"wrote {downscaler.model_name} x{downscaler.factor} prediction of {da.name!r} to {out}")
    return EXIT_OK


def _predict_family(args, ds, da, model, factor, options, out) -> int:
    """Models with their own prediction (ensembles, time interpolation, arbitrary scales):
    ``--option KEY=VALUE`` pairs, ``--target`` and ``--points`` go straight to ``predict``."""
    import xdownscale as xd

    if args.target:
        options["target"] = open_data(args.target, role="target grid (--target)")
    if args.points:
        options["points"] = open_data(args.points, role="points (--points)")
    with_predictors = getattr(model, "meta", {}).get("predictors") if not isinstance(model, str) else None
    obj = ds[[str(da.name)] + list(with_predictors)] if with_predictors else da
    pred = xd.predict(obj, model=model, factor=factor, var=str(da.name),
                      covariates=_open_covariates(args.covariates), chunks=args.chunks, device=args.device,
                      **options)
    _write_prediction(args, pred, out)
    name = getattr(model, "model_name", model)
    print(f"wrote {name} prediction of {da.name!r} to {out}")
    return EXIT_OK


def _write_prediction(args, pred, out) -> None:
    import xdownscale as xd

    log.info("writing %s", out)
    from dask.diagnostics import ProgressBar

    bar = contextlib.nullcontext() if not _progress(args) else ProgressBar(minimum=1.0, out=sys.stderr)
    with bar:
        if args.resume:
            from ..io import to_cf_dataset
            from ..io.resumable import write_resumable

            rep = write_resumable(to_cf_dataset(pred), out, overwrite=args.overwrite)
            print(f"regions: {rep.regions} in the product, {rep.reused} reused from an earlier run, "
                  f"{rep.computed} computed now")
        else:
            xd.write(pred, out, mode="w" if args.overwrite else "w-")


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
        from ..grid.cf import find_axes

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
    from .. import model_store

    entries = model_store.entries()
    if entries:
        print(f"\n{len(entries)} trained checkpoint(s) in {model_store.models_dir()}; the latest for a variable, "
              "model and factor is used by: predict --model NAME --var VAR --factor N")
    return EXIT_OK


def cmd_demo(args) -> int:
    from ..demo import run_demo

    if args.var is not None and args.data is None:
        raise CLIError("--var goes with --data PATH (the demo's own field needs no --var)")
    run_demo(args.out, data=args.data, var=args.var, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite,
             progress=_progress(args), verbose=True)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
