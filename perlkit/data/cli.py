"""The ``perlkit data check`` sub-command, registered by ``perlkit.cli`` via :func:`add_data_commands`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .check import check_dataset, format_report
from .core import DatasetError
from .readers import resolve_data_root
from .registry import DATASET_NAMES, canonical_name


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data check`` on the top-level sub-parsers; the handler is stored as ``func``.

    Exists so that the owner of ``perlkit/cli.py`` can add the data commands with one call.
    """
    data = subparsers.add_parser("data", help="inspect the benchmark datasets on disk")
    data_sub = data.add_subparsers(dest="data_command", metavar="{check}")
    data_sub.required = True
    check = data_sub.add_parser(
        "check",
        help="report present / missing / incomplete datasets, split sizes and unreadable images",
        description="For each dataset: present / missing / incomplete / corrupt, image counts per split "
        "against the expected counts, and every unreadable image. Exits 1 when a requested dataset is "
        "not usable, 2 when the data root itself is wrong.",
    )
    check.add_argument("--data-root", default=None, help="folder holding the datasets (default: $PERLKIT_DATA)")
    check.add_argument(
        "--dataset",
        action="append",
        default=None,
        metavar="NAME",
        help=f"dataset to check, repeatable (default: all 15: {', '.join(DATASET_NAMES)})",
    )
    check.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="accept unreadable images (warn per file) instead of failing",
    )
    check.add_argument("--no-verify", action="store_true", help="do not decode every image (much faster)")
    check.set_defaults(func=run_data_check, handler=run_data_check)


def run_data_check(args: argparse.Namespace) -> int:
    """Handler of ``perlkit data check``: print the report and return the process exit code.

    0 when every requested dataset is present and readable, 1 otherwise (with ``--skip-corrupt``, datasets
    whose only fault is unreadable images count as usable), 2 for a bad data root or dataset name.
    """
    try:
        root = resolve_data_root(args.data_root)
        names = [canonical_name(n) for n in args.dataset] if args.dataset else list(DATASET_NAMES)
        names = list(dict.fromkeys(names))
        reports = [check_dataset(n, root, verify_images=not args.no_verify) for n in names]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"data root: {root}")
    print(format_report(reports))
    failed = False
    for r in reports:
        if r.status == "corrupt" and args.skip_corrupt:
            for path in r.corrupt:
                print(f"warning: {r.name}: unreadable image will be skipped (--skip-corrupt): {path}", file=sys.stderr)
            continue
        failed = failed or not r.ok
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m perlkit.data.cli data check ...``) for use before ``perlkit.cli`` exists."""
    parser = argparse.ArgumentParser(prog="perlkit")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
