"""Helpers the book's chapters share, and ``python -m perlkit.book execute`` (papermill over every chapter).

Chapters stay short: a parameters cell, a call into the library, a table, a figure. What they have in common
(parameter checking, the mini/paper label, saving figures, gluing numbers) lives here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BOOK_DIR = Path(__file__).resolve().parent.parent / "book"

#: names IPython puts in a fresh namespace; anything else at the top of a chapter is a parameter
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """An unknown or invalid papermill parameter."""


def check_parameters(namespace: Mapping[str, Any], known: Iterable[str], chapter: str) -> None:
    """Fail clearly when papermill injected a parameter the chapter does not define (papermill only warns)."""
    known = set(known)
    names = {
        name for name, value in namespace.items()
        if not name.startswith("_") and name not in _IPYTHON_NAMES and not callable(value)
        and type(value).__name__ != "module"
    }
    unknown = sorted(names - known)
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)} for chapter {chapter!r}; "
            f"this chapter accepts: {', '.join(sorted(known))}"
        )
    profile = namespace.get("profile")
    if profile is not None and profile not in ("mini", "paper"):
        raise ParameterError(f"unknown profile {profile!r} for chapter {chapter!r}; use 'mini' or 'paper'")


def as_list(value: Any) -> list[Any]:
    """A papermill parameter as a list: ``-p seeds 2``, ``-p datasets dtd`` and ``-p seeds "[1, 2]"`` all work."""
    import ast

    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def as_options(value: Any) -> dict[str, Any]:
    """A method-options parameter as a dict (``-y "perl_options: {steps: 2}"`` or the string ``"{'steps': 2}"``)."""
    import ast

    value = ast.literal_eval(value) if isinstance(value, str) else value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParameterError(f"method options must be a mapping such as {{'steps': 2}}, got {value!r}")
    return dict(value)


def open_session(
    profile: str, data_root: str | None = None, pretrained: str | None = None, model: str | None = None
) -> Any:
    """The chapter's ``Session``: shared display settings, the profile, and a result store that cannot mix runs.

    Result files are keyed by the run, not by the weights or the data, so a chapter run with its own ``data_root``,
    ``pretrained`` or ``model`` gets a fresh temporary store instead of the committed results. The backbone is loaded
    here (one first built inside a seeded run would shift that run's random initialisation), and the data root resolved.
    Chapters tag the cell that calls this ``nbval-ignore-output``: first-run world-building progress is no result.
    """
    import tempfile

    import pandas as pd
    import seaborn as sns

    from perlkit.experiments import ResultStore, Session
    from perlkit.profiles import get_profile

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    pd.options.display.float_format = "{:.2f}".format
    custom = any(value is not None for value in (data_root, pretrained, model))
    store = ResultStore(profile, root=tempfile.mkdtemp(prefix="perlkit-")) if custom else None
    session = Session(get_profile(profile, data_root=data_root, pretrained=pretrained, model=model), progress=False,
                      store=store)
    _ = session.backbone
    _ = session.data_root  # the mini world is built here on first use, so its progress bar stays in this cell
    return session


def profile_banner(profile: str) -> str:
    """The label every executed number carries, so mini numbers are never read as the paper's."""
    from perlkit.profiles import get_profile

    return get_profile(profile).label if profile == "mini" else "paper profile: OpenAI ViT-B/16, real CoOp data"


def glue_number(name: str, value: float, fmt: str = ".2f") -> str:
    """Glue a pre-formatted number for ``{glue:text}`` (never a NumPy scalar, which breaks formatting)."""
    from myst_nb import glue

    text = format(float(value), fmt)
    glue(name, text, display=False)
    return text


def execute(chapters: Sequence[str | Path], parameters: Mapping[str, Any] | None = None) -> int:
    """Run chapters in place with papermill (cwd = book/), report time per chapter; non-zero if any failed."""
    import papermill

    failures, timings = [], []
    for chapter in chapters:
        path = Path(chapter).resolve()
        start = time.perf_counter()
        print(f"executing {path.name} ...", flush=True)
        try:
            papermill.execute_notebook(
                str(path), str(path), parameters=dict(parameters or {}), cwd=str(path.parent),
                kernel_name="python3", progress_bar=False,
            )
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            failures.append((path.name, err))
            print(f"FAILED {path.name}: {err}", file=sys.stderr, flush=True)
        timings.append((path.name, time.perf_counter() - start))
    total = sum(t for _, t in timings)
    print("\nchapter timings:")
    for name, seconds in timings:
        print(f"  {name:<40}{seconds:8.1f} s")
    print(f"  {'total':<40}{total:8.1f} s")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perlkit.book execute [CHAPTER ...] [-p key value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m perlkit.book")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute chapters in place with papermill")
    run.add_argument("chapters", nargs="*")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted(str(p) for p in BOOK_DIR.glob("[0-9]*.ipynb"))
    if not chapters:
        print("no chapters found in book/", file=sys.stderr)
        return 1
    return execute(chapters, {k: _literal(v) for k, v in args.parameter})


def _literal(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


if __name__ == "__main__":
    raise SystemExit(main())
