"""``xdownscale report PRED TRUTH --lr LR --out report.html``: the HTML verification page."""
from __future__ import annotations

from pathlib import Path

from .files import (
    EXIT_OK,
    PROG,
    CLIError,
    check_out,
    log,
    open_scored,
)


def add_parser(sub, common, formatter) -> None:
    """Register the ``report`` subcommand on the ``sub`` subparsers."""
    p = sub.add_parser(
        "report", parents=[common], formatter_class=formatter,
        help="write one self-contained HTML page judging a prediction against the truth",
        description="Write a self-contained HTML page (figures embedded) with maps of truth, prediction and error, "
                    "spectra, QQ plots, rank histograms for ensembles, the climate suite's scores, climate-index "
                    "biases (xclim) and the provenance from the files' history attributes.",
        epilog=f"""examples:
  {PROG} report sr.nc truth.nc --out report.html
  {PROG} report sr.nc truth.nc --lr lr.nc --var tas --out report.html""")
    p.add_argument("pred", metavar="PRED", help="prediction file (may hold an ensemble along 'member')")
    p.add_argument("truth", metavar="TRUTH", help="high-resolution reference file")
    p.add_argument("--lr", metavar="LR", help="coarse input file (maps, spectra and mass violation)")
    p.add_argument("--var", help="variable to report (default: the truth file's only variable)")
    p.add_argument("--title", help="page title")
    p.add_argument("--overwrite", action="store_true", help="replace an existing page")
    p.add_argument("--out", required=True, metavar="HTML", help="page to write (*.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    import xdownscale as xd

    out = Path(args.out).expanduser()
    check_out(out, args.overwrite)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"name the page '*.html' (got {str(out)!r})")
    pred, truth, lr = open_scored(args)
    name = str(truth.name)
    log.info("writing the report of %r to %s", name, out)
    xd.report(pred, truth, lr=lr, path=out, title=args.title)
    print(f"wrote {out}")
    return EXIT_OK
