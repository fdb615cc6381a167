"""The CLI subcommands: each a thin face over the Python API."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import xarray as xr

from .files import (
    EXIT_OK,
    PROG,
    CLIError,
    atomic_text,
    check_not_all_nan,
    check_out,
    field_names,
    format_table,
    log,
    open_data,
    open_scored,
    pick_variable,
    remove_on_error,
    show_progress,
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


def names_list(text: str | None) -> list[str] | None:
    """``"msl,tp"`` as ``["msl", "tp"]`` (None stays None)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError(f"give variable names separated by commas (e.g. msl,tp), got {text!r}")
    return names


def _factor(value):
    """An integer factor stays an int (fixed-factor models); 2.5 stays a float (arbitrary-scale models)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


def cmd_fit(args) -> int:
    import xdownscale as xd

    out = Path(args.out).expanduser()
    check_out(out, args.overwrite)
    from ..models import model_info

    # liif trains over a range of scales
    scale_free = args.model is not None and model_info(args.model)["family"] == "implicit"
    if args.factor is None and args.lr_data is None and not scale_free:
        raise CLIError("give the downscaling factor with --factor N (or a real coarse file with --lr-data)")
    if out.suffix.lower() not in (".pt", ".pth"):
        raise CLIError(f"name the checkpoint '*.pt' (got {str(out)!r}) so that predict --model recognises it")
    ds = open_data(args.data, role="training")
    targets = names_list(args.var)
    predictors = names_list(args.predictors)
    if targets is not None and len(targets) > 1:  # several targets: the Datasets go whole to fit
        hr, lr, var = ds, None, targets
        for name in targets:
            check_not_all_nan(pick_variable(ds, name, path=args.data), args.data)
        if args.lr_data is not None:
            lr = open_data(args.lr_data, role="coarse (--lr-data)")
    else:
        hr = pick_variable(ds, args.var, path=args.data)
        check_not_all_nan(hr, args.data)
        var, lr = None, None
        if args.lr_data is not None:
            lr_file = open_data(args.lr_data, role="coarse (--lr-data)")
            lr = pick_variable(lr_file, str(hr.name), path=args.lr_data, role="coarse")
            check_not_all_nan(lr, args.lr_data)
            lr = lr_file if predictors else lr
        if predictors:  # one target: its predictors are read from the Datasets (lr's, else hr's)
            hr, var = ds, str(hr.name)
    cov = _open_covariates(args.covariates)
    kwargs = parse_options(args.option)
    if args.width is not None:
        kwargs["width"] = args.width
    if args.n_blocks is not None:
        kwargs["n_blocks"] = args.n_blocks
    log.info("fitting %s x%s on %s from %s", args.model, args.factor, var or hr.name, args.data)
    with remove_on_error(out):
        model = xd.fit(hr, lr=lr, model=args.model, factor=args.factor, constraint=args.constraint,
                       var=var, predictors=predictors, covariates=cov, epochs=args.epochs, max_updates=args.max_updates,
                       max_minutes=args.max_minutes, batch_size=args.batch_size, patch_size=args.patch_size,
                       seed=args.seed, learning_rate=args.learning_rate, samples_per_epoch=args.samples_per_epoch,
                       checkpoint=out, trim=args.trim, device=args.device, progress=not args.quiet,
                       nproc=args.nproc, precision=args.precision, consistency=args.consistency,
                       **kwargs)
    train = model.meta.get("training", {})
    best = train.get("best_val_loss")
    best_txt = "" if best is None else f"; best validation loss {best:.4g} at epoch {train.get('best_epoch', -1) + 1}"
    if best is not None and train.get("start_val_loss") is not None:
        best_txt += f" (the skip interpolation alone: {train['start_val_loss']:.4g})"
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


def _predict_constraint(text: str):
    """``--constraint``: one name (``softmax``) or one per target (``msl=add,tp=softmax``)."""
    from ..engine.multi_setup import constraint_pairs

    return constraint_pairs(text) if "=" in text else text.strip()


def cmd_predict(args) -> int:
    """``predict``: the file is opened lazily without Dask, so :func:`xdownscale.predict` chunks it
    exactly as it chunks an in-memory field (see ``engine.infer.plan_chunks``), under the same memory
    budget (``--max-memory``, see ``engine.budget``)."""
    import xdownscale as xd

    out = Path(args.out).expanduser()
    if args.resume and out.suffix.lower() != ".zarr":
        raise CLIError(f"--resume writes Zarr: name the output '*.zarr', got {str(out)!r}")
    if not args.resume:
        check_out(out, args.overwrite)
    if out.suffix.lower() not in (".nc", ".nc4", ".zarr"):
        raise CLIError(f"name the output '*.nc' (NetCDF) or '*.zarr' (Zarr), got {str(out)!r}")
    ds = open_data(args.data, role="input")
    model, fallback = args.model, None
    if Path(model).suffix.lower() in (".pt", ".pth") or Path(model).expanduser().is_file():
        model = xd.load(Path(model).expanduser())
        fallback = model.variable
    options = parse_options(args.option)
    if args.constraint:
        options["constraint"] = _predict_constraint(args.constraint)
    if args.target:
        options["target"] = open_data(args.target, role="target grid (--target)")
    if args.points:
        options["points"] = open_data(args.points, role="points (--points)")
    targets = getattr(model, "meta", {}).get("multi_target", {}).get("targets")
    if targets:  # a model with several targets reads its inputs from the file and writes every target
        pred = xd.predict(ds, model=model, factor=_factor(args.factor), covariates=_open_covariates(args.covariates),
                          chunks=args.chunks, device=args.device, allow_other_variable=args.force,
                          max_memory=args.max_memory, **options)
        xd.write(pred, out, mode="w" if args.overwrite else "w-", progress=show_progress(args), resume=args.resume,
                 on_report=_print_report)
        print(f"wrote {model.model_name} prediction of {', '.join(targets)} to {out}")
        return EXIT_OK
    da = pick_variable(ds, args.var, path=args.data, fallback=fallback)
    check_not_all_nan(da, args.data)
    name = str(da.name)
    others = [n for n in field_names(ds) if n != name]
    obj = ds[[name] + others] if others else da  # the model picks its predictors, if it has any
    pred = xd.predict(obj, model=model, factor=_factor(args.factor), var=name,
                      covariates=_open_covariates(args.covariates), chunks=args.chunks, device=args.device,
                      allow_other_variable=args.force, max_memory=args.max_memory, precision=args.precision,
                      **options)
    if isinstance(pred, xr.Dataset):  # the product carries the variable's own attributes, as for one field
        pred = pred[name]
    log.info("writing %s", out)
    xd.write(pred, out, mode="w" if args.overwrite else "w-", progress=show_progress(args), resume=args.resume,
             on_report=_print_report)
    model_name = getattr(model, "model_name", model)
    print(f"wrote {model_name} prediction of {name!r} to {out}")
    return EXIT_OK


def cmd_coarsen(args) -> int:
    import xdownscale as xd

    out = Path(args.out).expanduser()
    check_out(out, args.overwrite)
    if out.suffix.lower() not in (".nc", ".nc4", ".zarr"):
        raise CLIError(f"name the output '*.nc' (NetCDF) or '*.zarr' (Zarr), got {str(out)!r}")
    ds = open_data(args.data, chunks={}, role="input")
    obj = pick_variable(ds, args.var, path=args.data) if args.var or len(field_names(ds)) == 1 else ds
    coarse = obj.downscale.coarsen(args.factor, trim=args.trim)
    xd.write(coarse, out, mode="w" if args.overwrite else "w-", progress=show_progress(args))
    print(f"wrote the x{args.factor} coarsening of {args.data} to {out}")
    return EXIT_OK


def _print_report(rep) -> None:
    print(f"regions: {rep.regions} in the product, {rep.reused} reused from an earlier run, "
          f"{rep.computed} computed now")


_EVAL_SHORT = ["rmse", "mae", "bias", "ssim", "psnr", "pearson_r", "mass_violation", "negative_count"]


def cmd_evaluate(args) -> int:
    import numpy as np

    import xdownscale as xd

    out = Path(args.out).expanduser() if args.out else None
    if out is not None:
        check_out(out, args.overwrite)
    pred, truth, lr = open_scored(args)
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
        atomic_text(out, buf.getvalue(), args.overwrite)
        print(f"wrote {out}")
    return EXIT_OK


def cmd_models(args) -> int:
    import xdownscale as xd

    if args.options:
        options = xd.model_options(args.options)
        for kind in ("fit", "predict"):
            print(f"{kind} options of {args.options!r} (--option KEY=VALUE):")
            print("\n".join(f"  {line}" for line in options[kind]) or "  none")
        defaults = xd.training_defaults(args.options)
        print(f"training defaults of {args.options!r} (where they depart from fit's): "
              + (", ".join(f"{k}={v}" for k, v in defaults.items()) or "none"))
        return EXIT_OK
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
             progress=not args.quiet, verbose=True)  # a bar on a terminal, one line a round in a log
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
