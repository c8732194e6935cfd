"""Chapters stay short and carry no untested code: every code cell fits a screen (at most 15 non-empty lines; helpers
live in ``perlkit.report`` and ``perlkit.plots`` with their tests), every line of code the book shows fits its code
box (plumbing such as glue calls sits in cells tagged ``hide-input``), each results chapter says where its numbers
come from in one collapsed note, and no label names the mini world by hand, since every chapter runs on the paper
profile too (labels come from the profile: ``report.profile_label`` and friends)."""

from __future__ import annotations

import io
import json
import re
import tokenize
from collections.abc import Callable
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))  # the chapters and the landing page
MAX_LINES = 15
#: characters of code a line of the book's code box shows without scrolling (measured in Chromium at a 1280 px window)
CODE_BOX = 77
#: tags under which the book does not show a cell's input (hide-input: behind a toggle)
HIDDEN = {"hide-input", "remove-input", "remove-cell"}
#: what a chapter calls to run or read stored runs: a chapter that does is a results chapter
RUNS = ("session.sweep(", "session.run(", "shipped_grid(", "run_ablation(", "reasoning_dynamics(")


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(index among the notebook's cells, source) of every code cell."""
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(cell["source"])) for i, cell in enumerate(cells) if cell["cell_type"] == "code"]


def code_tagged(cells: list[dict], keep: Callable[[set[str]], bool]) -> list[tuple[int, str]]:
    """(index, source) of every code cell whose set of tags ``keep`` accepts."""
    return [(i, "".join(cell["source"])) for i, cell in enumerate(cells)
            if cell["cell_type"] == "code" and keep(set(cell["metadata"].get("tags", [])))]


def visible_code(cells: list[dict]) -> list[tuple[int, str]]:
    """(index, source) of every code cell whose input the book shows (not tagged with one of ``HIDDEN``)."""
    return code_tagged(cells, lambda tags: not HIDDEN & tags)


def expandable_code(cells: list[dict]) -> list[tuple[int, str]]:
    """(index, source) of every hide-input cell a reader can open, parameter cells aside (each of their lines is
    ``name = value  # description``, and the description is what chapter 11 lists)."""
    return code_tagged(cells, lambda tags: "hide-input" in tags and "parameters" not in tags)


def wide_lines(cells: list[tuple[int, str]], width: int = CODE_BOX) -> list[str]:
    """'cell i: line' for every line wider than ``width`` characters."""
    return [f"cell {i}: {line}" for i, source in cells for line in source.splitlines() if len(line) > width]


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_visible_code_fits_the_code_box(path: Path) -> None:
    wide = wide_lines(visible_code(json.loads(path.read_text())["cells"]))
    assert not wide, (f"{len(wide)} shown line(s) wider than the code box ({CODE_BOX} characters): wrap them, or move "
                      "plumbing (glue calls, label prints) into a cell tagged hide-input: " + "; ".join(wide))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_a_reader_can_expand_fits_the_code_box(path: Path) -> None:
    """A hide-input cell opens in the same box (check-html measured 109-character lines there)."""
    wide = wide_lines(expandable_code(json.loads(path.read_text())["cells"]))
    assert not wide, f"{len(wide)} line(s) of hide-input cells wider than {CODE_BOX} characters: " + "; ".join(wide)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_shows_a_stray_return_value(path: Path) -> None:
    """A cell whose last line returns a string shows it quoted under the cell ('-0.08' after chapter 04's table,
    seen in check-html's screenshots); plumbing returns nothing."""
    stray = [f"cell {i}: {text}" for i, cell in enumerate(json.loads(path.read_text())["cells"])
             if cell["cell_type"] == "code" for out in cell.get("outputs", [])
             if out["output_type"] == "execute_result" and set(out["data"]) == {"text/plain"}
             and (text := "".join(out["data"]["text/plain"]))[:1] in "'\"" and text[-1:] in "'\""]
    assert not stray, stray


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_results_chapter_has_one_collapsed_provenance_note(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    sources = [(cell, "".join(cell["source"])) for cell in cells if cell["cell_type"] == "code"]
    notes = [cell for cell, source in sources if "provenance_note(" in source]
    runs = any(call in source for _, source in sources for call in RUNS)
    assert len(notes) == (1 if runs else 0), f"{len(notes)} provenance notes (results chapter: {runs})"
    for cell in notes:
        assert {"remove-input", "nbval-ignore-output"} <= set(cell["metadata"].get("tags", [])), path.name
    scattered = [source.strip().splitlines()[0] for _, source in sources
                 if "describe_sources(" in source or "provenance_caption(" in source]
    assert not scattered, f"provenance printed outside the chapter's note: {scattered}"


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


def test_the_code_box_check_bites() -> None:
    """A shown line one character too wide is caught, a line exactly as wide as the box is not, and hidden cells (the
    plumbing behind a toggle, removed inputs) may be wider; the plumbing behind a toggle is checked on its own, but
    for the parameter cell."""
    def cell(source: str, *tags: str) -> dict:
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source}

    fits, too_wide, long = "x" * CODE_BOX, "y" * (CODE_BOX + 1), "z" * 200
    cells = [cell(f"{fits}\n{too_wide}"), cell(long, "hide-input"), cell(long, "remove-input"),
             cell(long, "remove-cell"), {"cell_type": "markdown", "metadata": {}, "source": long}, cell(long, "other")]
    assert [i for i, _ in visible_code(cells)] == [0, 5]
    assert wide_lines(visible_code(cells)) == [f"cell 0: {too_wide}", f"cell 5: {long}"]
    assert wide_lines([(0, fits)]) == []
    expandable = cells + [cell(long, "parameters", "hide-input")]
    assert wide_lines(expandable_code(expandable)) == [f"cell 1: {long}"]


def test_the_checks_bite() -> None:
    """The two rules catch what they are meant to, and a comment or an import is not a label."""
    source = 'x = 1  # the mini world, in a comment\nplt.title("mini profile")\nfrom perlkit.mini import build\n'
    lines = without_comments(source)
    assert lines[0].strip() == "x = 1" and "mini profile" in lines[1] and "label" not in lines[2]
    assert without_comments('s = "# not a comment"  # a comment') == ['s = "# not a comment"  ']
