"""``xdownscale models --prune``: drop the model-store entries that can no longer be used."""
from __future__ import annotations

from .files import EXIT_OK


def add_prune_option(parser) -> None:
    """Give the ``models`` subparser its ``--prune`` flag (and the command that honours it)."""
    parser.add_argument("--prune", action="store_true",
                        help="remove index entries whose checkpoint file is gone or was replaced "
                             "(checkpoint files are never deleted)")
    parser.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from .commands import cmd_models as list_models

    if not getattr(args, "prune", False):
        return list_models(args)
    from .. import model_store

    report = model_store.prune()
    for where, why in report["removed"]:
        print(f"removed entry {where}: {why}")
    print(f"{len(report['removed'])} entr{'y' if len(report['removed']) == 1 else 'ies'} removed, "
          f"{report['kept']} kept in {model_store.models_dir() / 'index.jsonl'}")
    if report["unindexed"]:
        print(f"{len(report['unindexed'])} checkpoint file(s) in {model_store.models_dir()} are in no entry "
              "(left in place; delete them by hand if unwanted): " + ", ".join(report["unindexed"]))
    return EXIT_OK
