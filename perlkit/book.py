"""Helpers the book's chapters share, and ``python -m perlkit.book execute`` (papermill over every chapter).

Chapters stay short: a parameters cell, a call into the library, a table, a figure. What they have in common
(parameter checking, the mini/paper label, saving figures, gluing numbers) lives here.
"""

from __future__ import annotations

import argparse
import ast
import json
import shlex
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


def check_parameters(
    namespace: Mapping[str, Any], known: Iterable[str], chapter: str,
    datasets: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Fail clearly, before any work, when papermill injected a parameter the chapter does not define (papermill only
    warns; parameters are lower-case, so imported constants such as ``B2N_DATASETS`` are not taken for one) or a
    dataset parameter names a dataset the chapter's protocol cannot run (``datasets`` maps a parameter to the
    datasets it accepts; "all" is accepted too)."""
    known = set(known)
    names = {
        name for name, value in namespace.items()
        if not name.startswith("_") and not name.isupper() and name not in _IPYTHON_NAMES and not callable(value)
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
    for name, allowed in (datasets or {}).items():
        check_datasets(namespace.get(name), allowed, name, chapter)


def check_datasets(value: Any, allowed: Sequence[str], name: str, chapter: str) -> list[str]:
    """The datasets a parameter names (registry keys), or a ``ParameterError`` naming the one that does not fit."""
    from perlkit.data import DatasetError, canonical_name

    if value == "all":
        return list(allowed)
    names = as_list(value)
    if not names:
        raise ParameterError(f"parameter {name} of chapter {chapter!r} names no dataset; choose from "
                             f"{', '.join(allowed)}")
    keys = []
    for item in names:
        try:
            key = canonical_name(str(item))
        except DatasetError:
            key = None
        if key not in allowed:
            raise ParameterError(
                f"parameter {name}={item!r} of chapter {chapter!r}: not a dataset this chapter can run; "
                f"choose from {', '.join(allowed)}"
            )
        keys.append(key)
    return keys


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
    """The chapter's ``Session``: shared display settings, the profile, and its result store.

    The store is the profile's own (``Profile.store_name``): the one ``perlkit results`` fills and every chapter
    reads, so a sweep run once on the command line or a cluster is what the chapters show, and chapters share what
    they train. Other weights or another ``model`` get their own folder, never mixed with these. The backbone is
    loaded here, and the data root resolved (the mini world is built on first use, so its progress bar stays in
    this cell; chapters tag it ``nbval-ignore-output``).
    """
    import pandas as pd

    from perlkit.experiments import Session
    from perlkit.plots import book_style
    from perlkit.profiles import get_profile

    book_style()  # figures at most the column's width, fonts of at least 9 pt, stored at twice the size shown
    pd.options.display.float_format = "{:.2f}".format
    session = Session(get_profile(profile, data_root=data_root, pretrained=pretrained, model=model), progress=False)
    _ = session.backbone
    _ = session.data_root
    return session


def write_demo_folder(profile: str, source: str, num_classes: int, per_class: int) -> tuple[Path, list[str]]:
    """The own-data chapter's demo folder: the first ``num_classes`` classes of benchmark ``source``, ``per_class``
    test images each, written in the user cache as a folder a user would bring (one sub-folder a class); returns it
    and three class names it leaves out (for open vocabulary).

    The folder is named by the data's identity (for mini, the world's version and code), so a folder written from
    another world, whose class names differ, is never mistaken for this one.
    """
    from perlkit.data import load_dataset, write_image_folder
    from perlkit.files import cache_root
    from perlkit.profiles import get_profile

    source_profile = get_profile(profile)
    splits = load_dataset(source, source_profile.resolve_data_root())  # mini: the world is built on first use
    chosen = splits.classnames[:num_classes]
    unseen = [name for name in splits.classnames if name not in chosen][:3]
    identity = source_profile.data_identity() or profile
    folder = cache_root() / "book" / f"own-{identity}-{source}-{num_classes}x{per_class}"
    return write_image_folder(splits.test, folder, classes=chosen, per_class=per_class), unseen


def profile_banner(profile: str) -> str:
    """The label every executed number carries, so mini numbers are never read as the paper's."""
    from perlkit.profiles import get_profile

    return get_profile(profile).label if profile == "mini" else "paper profile: OpenAI ViT-B/16, real CoOp data"


def glue_number(name: str, value: float, fmt: str = ".2f") -> None:
    """Glue a pre-formatted number for ``{glue:text}`` (never a NumPy scalar, which breaks formatting). Returns
    nothing: a returned string, as the last line of a cell, showed as a stray quoted number under the cell."""
    from myst_nb import glue

    glue(name, format(float(value), fmt), display=False)


#: the repository the book is built from (``_config.yml``'s ``repository.url``; a test keeps the two equal)
REPOSITORY_URL = "https://github.com/perlkit/perlkit"


def chapter_parameters(chapter: str) -> list[str] | None:
    """Names the chapter's ``parameters`` cell defines, or None when the chapter file is not at hand (a wheel)."""
    path = BOOK_DIR / f"{Path(chapter).stem}.ipynb"
    if not path.is_file():
        return None
    cells = json.loads(path.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)]


def _papermill_value(value: Any) -> str:
    """A value as papermill's ``-p`` reads it and ``as_list``/``as_options`` parse it (JSON lists read best)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    return text if ast.literal_eval(text) == value else repr(value)  # JSON's true/null are not Python literals


def papermill_command(chapter: str, parameters: Mapping[str, Any] | None = None) -> str:
    """The shell command (run from a checkout's root) that executes ``chapter`` again with other parameters; an
    unknown parameter is refused here, so a command a chapter shows always runs."""
    name = Path(chapter).stem
    parameters = dict(parameters or {})
    known = chapter_parameters(name)
    unknown = sorted(set(parameters) - set(known)) if known is not None else []
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)} for chapter {name!r}; "
                             f"this chapter accepts: {', '.join(sorted(known or []))}")
    words = ["papermill", f"book/{name}.ipynb", f"{name}.run.ipynb", "--cwd", "book"]
    for key, value in parameters.items():
        words += ["-p", key, _papermill_value(value)]
    return shlex.join(words)


def run_this_chapter(chapter: str, parameters: Mapping[str, Any] | None = None) -> Any:
    """The "run this chapter with other parameters" box at the end of every chapter: the exact papermill command
    (with ``parameters`` as the example) as a MyST admonition (the cell needs metadata
    ``{"mystnb": {"markdown_format": "myst"}}`` so that the book renders it as one)."""
    from IPython.display import Markdown

    names = chapter_parameters(chapter)
    listed = f" ({', '.join(f'`{n}`' for n in names)})" if names else ""
    text = f"""````{{admonition}} Run this chapter with other parameters
:class: tip

Every number on this page comes from the parameters in the chapter's first code cell{listed}. To execute the
chapter with others, run this from the root of a perlkit checkout after `make install` (papermill is in
`.venv/bin`); the executed copy is written to `{Path(chapter).stem}.run.ipynb`:

```bash
{papermill_command(chapter, parameters)}
```

Give any parameter of the first cell with `-p NAME VALUE`; `-p profile paper -p data_root DIR` runs the chapter on the
real CoOp benchmarks with ViT-B/16 (a GPU). An unknown parameter or dataset stops the chapter before any work. The
launch buttons at the top of the page open the chapter as a live notebook on Binder or Colab (on Colab, first run
`%pip install "perlkit[book] @ git+{REPOSITORY_URL}"`): edit the first code cell, then run all cells.
````"""
    return Markdown(text)


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
    chapters = args.chapters or [str(BOOK_DIR / "index.ipynb"), *sorted(str(p) for p in BOOK_DIR.glob("[0-9]*.ipynb"))]
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
