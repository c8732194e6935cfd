"""The README's commands, run as a new user would in a clean clone, change no tracked file.

Every ``perlkit ...`` line of the README's code blocks runs here, from a fresh clone of the committed tree (its
own ``perlkit`` package first on the path, so ``data/`` means the clone's), with an empty cache; afterwards
``git status`` of the clone must be clean. The few commands that take hours are listed in ``TOO_LONG`` with the
test that covers where they write.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: README commands not run here (hours on 2 cores), each with the test that checks where it writes
TOO_LONG = {
    "perlkit mini pretrain": "88 min; tests/test_faults_mini_data.py checks it writes to the cache without --ship",
    "perlkit results --profile mini": "hours; tests/test_faults.py::test_results_writes_to_the_cache_unless_shipped",
    "perlkit results --profile mini --verify 5": "minutes (random draws may hit ImageNet runs); tests/test_evidence.py",
    "perlkit smoke --device cuda --ship": "GPU and --ship on purpose; tests/test_smoke.py runs the CPU version",
    "perlkit mini pretrain --out DIR": "over an hour; tests/test_mini_world2.py covers world 2's schedule",
    "perlkit mini adaptation --methods mmrl --datasets dtd": "MMRL's own recipe, about 10 min; "
        "tests/test_calibrate.py::test_adaptation_compares_each_rivals_default_recipe_with_zero_shot",
    "perlkit mini calibrate --world 1 --json":
        "encodes all of world 1 (minutes); tests/test_calibrate.py covers the command on a small world",
}


def readme_commands() -> list[str]:
    """``perlkit`` command lines of the README's bash blocks, comments stripped."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("perlkit "):
                lines.append(command)
    return lines


def test_readme_lists_commands() -> None:
    commands = readme_commands()
    assert any(c.startswith("perlkit zeroshot") for c in commands) and any("bench" in c for c in commands)
    assert all(skipped in commands for skipped in TOO_LONG), "TOO_LONG names a command the README no longer shows"


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")
def test_readme_commands_change_no_tracked_file(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(clone), "PERLKIT_CACHE": str(cache)}
    world = subprocess.run([sys.executable, "-c", "from perlkit.mini.build import default_mini_root as r; print(r())"],
                           env=env, cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    for command in readme_commands():
        if command in TOO_LONG or "$" in command:
            continue
        argv = [world if arg == "DIR" else arg for arg in shlex.split(command)[1:]]
        done = subprocess.run([sys.executable, "-m", "perlkit.cli", *argv], env=env, cwd=clone, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
        assert status == "", f"{command} changed tracked files:\n{status}"
