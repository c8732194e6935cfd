"""Set-up guards: environment.yml mirrors pyproject, the README leads with the two commands, CI calls make test."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r.strip('"'), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_environment_mirrors_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in ("book", "test", "dev"):
        wanted |= _names(project["optional-dependencies"][extra])
    listed = re.findall(r'^\s+- "([^"]+)"', (ROOT / "environment.yml").read_text(), flags=re.M)
    assert _names([r for r in listed if not r.startswith("-e")]) == wanted
    assert any('"jupyter-book>=1.0.4,<2"' in line for line in (ROOT / "environment.yml").read_text().splitlines())


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text()[:800]
    assert "make book" in head and "make test" in head


def test_ci_runs_make_test_only() -> None:
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[-1] == "make test"
