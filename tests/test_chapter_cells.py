"""Chapters stay short and carry no untested code: every code cell fits a screen (at most 15 non-empty lines; helpers
live in ``perlkit.report`` and ``perlkit.plots`` with their tests), and no label names the mini world by hand, since
every chapter runs on the paper profile too (labels come from the profile: ``report.profile_label`` and friends)."""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
MAX_LINES = 15


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(index among the notebook's cells, source) of every code cell."""
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(cell["source"])) for i, cell in enumerate(cells) if cell["cell_type"] == "code"]


def without_comments(source: str) -> list[str]:
    """The cell's lines with comments cut (tokenize tells a ``#`` in a string from one that starts a comment)."""
    lines = source.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return [line.split("#")[0] for line in lines]
    for token in reversed(tokens):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    return lines


def test_the_book_has_chapters() -> None:
    assert len(CHAPTERS) >= 12, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_cells_fit_a_screen(path: Path) -> None:
    long = {i: n for i, source in code_cells(path)
            if (n := sum(1 for line in source.splitlines() if line.strip())) > MAX_LINES}
    assert not long, (f"cells {long} (cell index: non-empty lines) are longer than {MAX_LINES} lines; move the code "
                      "into perlkit (report.py, plots.py, experiments) with a test")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_label_names_the_mini_world_by_hand(path: Path) -> None:
    found = []
    for i, source in code_cells(path):
        for line in without_comments(source):
            lowered = line.lower()
            if "mini profile" in lowered or "mini world" in lowered or (
                    "mini" in lowered and re.search(r"title|label|set_", lowered)):
                found.append(f"cell {i}: {line.strip()}")
    assert not found, ("labels must come from the profile (report.profile_label, report.model_label, "
                       f"report.source_titles), not name 'mini': {found}")


def test_the_checks_bite() -> None:
    """The two rules catch what they are meant to, and a comment or an import is not a label."""
    source = 'x = 1  # the mini world, in a comment\nplt.title("mini profile")\nfrom perlkit.mini import build\n'
    lines = without_comments(source)
    assert lines[0].strip() == "x = 1" and "mini profile" in lines[1] and "label" not in lines[2]
    assert without_comments('s = "# not a comment"  # a comment') == ['s = "# not a comment"  ']
