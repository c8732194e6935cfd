"""Guards for the executed book: every chapter exists, is parameterised and executed, and nbval really compares.

``pytest --nbval`` silently passes a cell that was never executed, so these tests make sure the committed
chapters carry their outputs, and that nbval (with the project's sanitize file) does fail when a stored number
stops matching.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from perlkit.book import ParameterError, check_parameters

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def toc_notebooks() -> list[Path]:
    """Every ``.ipynb`` chapter named in ``_toc.yml`` (markdown pages excluded)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"], *(chapter["file"] for part in toc["parts"] for chapter in part["chapters"])]
    return [ROOT / f"{name}.ipynb" for name in files if not (ROOT / f"{name}.md").is_file()]


CHAPTERS = toc_notebooks()


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_toc_chapters_exist() -> None:
    missing = [str(path.relative_to(ROOT)) for path in CHAPTERS if not path.is_file()]
    assert not missing, f"chapters listed in _toc.yml but missing: {missing}"
    assert (ROOT / "book" / "index.ipynb").is_file(), "the landing page is an executed notebook (findings at a glance)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_parameterised_and_executed(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path.name} is missing (see test_toc_chapters_exist)")
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernel name must be python3"
    cells = code_cells(nb)
    assert cells, "a chapter without code"
    assert "parameters" in cells[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    counts = [cell.execution_count for cell in cells]
    unexecuted = [i for i, count in enumerate(counts) if count is None]
    assert not unexecuted, f"code cells {unexecuted} were never executed; nbval would skip them"
    assert counts == list(range(counts[0], counts[0] + len(counts))), (
        f"execution counts {counts} are not one clean top-to-bottom run"
    )
    assert sum(len(cell.outputs) for cell in cells) > 0, "an executed chapter without a single output"
    for i, cell in enumerate(cells):
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {i} stored an error: {output.get('ename')}"
            if output.output_type == "stream" and output.name == "stderr":
                assert not any(word in output.text for word in ("Traceback", "Error", "Warning")), (
                    f"cell {i} stored stderr that the book would render: {output.text[:200]!r}"
                )


def _check_call_names(nb: nbformat.NotebookNode) -> list[str] | None:
    """The parameter names passed to ``check_parameters`` in a chapter, read from its source."""
    for cell in code_cells(nb):
        if "check_parameters(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_parameters":
                return list(ast.literal_eval(node.args[1]))
    return None


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_checks_exactly_its_parameters(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path.name} is missing (see test_toc_chapters_exist)")
    import papermill

    nb = nbformat.read(path, as_version=4)
    declared = set(papermill.inspect_notebook(str(path)))
    checked = _check_call_names(nb)
    assert checked is not None, "the chapter never calls check_parameters"
    assert set(checked) == declared, (
        f"parameters cell declares {sorted(declared)} but check_parameters accepts {sorted(checked)}"
    )
    assert "profile" in declared


# ---------------------------------------------------------------------------------------------- nbval bites
def _tiny_notebook(stored: str) -> nbformat.NotebookNode:
    """A two-cell executed notebook whose second cell prints a rounded accuracy and stores ``stored``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "mini"\naccuracy = 2 / 3 * 100', execution_count=1)
    params.metadata["tags"] = ["parameters"]
    shown = nbformat.v4.new_code_cell('print(f"base accuracy {accuracy:.2f} (mini)")', execution_count=2)
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
    nb.cells = [params, shown]
    return nb


def _run_nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(SANITIZE), path.name],
        cwd=path.parent, capture_output=True, text=True, timeout=180,
    )


def test_nbval_passes_unaltered_and_fails_on_a_changed_number(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(_tiny_notebook("base accuracy 66.67 (mini)\n"), good)
    nbformat.write(_tiny_notebook("base accuracy 66.68 (mini)\n"), bad)  # one digit off
    passed = _run_nbval(good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    failed = _run_nbval(bad)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "66.68" in failed.stdout and "66.67" in failed.stdout  # nbval names the stored and the new value


# ---------------------------------------------------------------------------------------------- parameters
def test_check_parameters_rejects_unknown_parameter() -> None:
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) stepz .*accepts: profile, steps"):
        check_parameters({"profile": "mini", "steps": 4, "stepz": 3}, ["profile", "steps"], "03_training")


def test_check_parameters_rejects_unknown_profile() -> None:
    with pytest.raises(ParameterError, match="unknown profile 'huge'"):
        check_parameters({"profile": "huge"}, ["profile"], "04_base_to_novel")
    check_parameters({"profile": "paper", "steps": 4}, ["profile", "steps"], "03_training")  # known: no error


def test_papermill_run_with_a_misspelt_parameter_fails_clearly(tmp_path: Path) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "mini"\nsteps = 4')
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell(
        'from perlkit.book import check_parameters\ncheck_parameters(globals(), ["profile", "steps"], "tiny")'
    )
    nb.cells = [params, check, nbformat.v4.new_code_cell('print("ran")')]
    source, out = tmp_path / "tiny.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(PapermillExecutionError, match=r"unknown parameter\(s\) stepz"):
        papermill.execute_notebook(str(source), str(out), parameters={"stepz": 3}, kernel_name="python3",
                                   cwd=str(tmp_path), progress_bar=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2, [2]), ("dtd", ["dtd"]), ("[1, 2]", [1, 2]), ([1, 2, 3], [1, 2, 3]), (("a", "b"), ["a", "b"])],
)
def test_as_list_accepts_what_papermill_passes(value: object, expected: list) -> None:
    from perlkit.book import as_list

    assert as_list(value) == expected


def test_as_options_parses_strings_and_rejects_non_mappings() -> None:
    from perlkit.book import as_options

    assert as_options("{'steps': 2}") == {"steps": 2}
    assert as_options(None) == {} and as_options({"split": 8}) == {"split": 8}
    with pytest.raises(ParameterError, match=r"must be a mapping .* got \[1, 2\]"):
        as_options("[1, 2]")


def test_demo_folder_is_named_by_the_world_it_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The own-data chapter's demo folder lives in the cache; a folder written from another mini world (other class
    names) must never be the one this world writes into, so its name carries the world's identity."""
    import perlkit.files
    from perlkit.book import write_demo_folder
    from perlkit.profiles import get_profile

    monkeypatch.setattr(perlkit.files, "cache_root", lambda: tmp_path)  # the world itself stays in the real cache
    folder, unseen = write_demo_folder("mini", "eurosat", 2, 3)
    assert folder.parent == tmp_path / "book" and get_profile("mini").data_identity() in folder.name
    assert get_profile("mini", world="1").data_identity() not in folder.name
    classes = sorted(p.name for p in folder.iterdir())
    assert len(classes) == 2 and all(len(list((folder / c).iterdir())) == 3 for c in classes)
    assert len(unseen) == 3 and not set(unseen) & set(classes)
    assert write_demo_folder("mini", "eurosat", 2, 3) == (folder, unseen)  # written once, then reused
