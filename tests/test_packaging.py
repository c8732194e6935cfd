"""perlkit as a package and the book as a website: the wheel works outside the checkout, the release files agree.

The wheel is built from the checkout (``python -m build --no-isolation``: an sdist, then the wheel from it, so both
must carry the package data), installed with ``pip install --no-deps --target`` into a fresh folder and run from a
temporary folder outside the checkout with ``PYTHONPATH=<target>`` (the dependencies are .venv's). The CI workflow
and ``CITATION.cff`` are checked against their JSON schemas (check-jsonschema's copies of SchemaStore's
github-workflow schema and of the CFF 1.2.0 schema, offline), as ``make lint`` does.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import perlkit
from perlkit.book import REPOSITORY_URL, ParameterError, as_list, as_options, papermill_command, run_this_chapter

ROOT = Path(__file__).resolve().parents[1]
#: each mini world's shipped weights (folder under perlkit/assets, sha256); world 2 is the default
MINI_WEIGHTS = {"mini": "abf6224d06b10d5bc43c393482af270b86d0a931a60d79561a8ca8e195cf5e36",
                "mini-2": "5e0e25c1c8775ee64fa475d054bbfc55921745995ba8dbdd1df48a207f72e2dd"}
#: the example of each chapter's "run this chapter with other parameters" box (the cells the chapters get)
RUN_BOX_EXAMPLES = {
    "01_introduction": {"template": "single", "samples": 8},
    "02_method": {"dataset": "dtd", "steps": 2, "split": 9},
    "03_training": {"dataset": "eurosat", "seeds": [1, 2], "steps": 2},
    "04_base_to_novel": {"datasets": ["dtd", "eurosat"], "seeds": [1, 2, 3]},
    "05_cross_dataset": {"seeds": [1, 2, 3]},
    "06_domain_generalization": {"seeds": [1, 2, 3]},
    "07_ablations": {"datasets": ["dtd", "eurosat"], "steps": [1, 2, 3]},
    "08_dynamics": {"datasets": ["dtd", "eurosat"], "example_dataset": "eurosat", "example_subset": "base"},
    "09_efficiency": {"datasets": ["dtd", "eurosat"], "timing_methods": ["perl"]},
    "10_comparison": {"datasets": ["dtd", "eurosat"], "protocol": "default"},
    "11_reproduce": {},
}
RUN_BOX_METADATA = {"mystnb": {"markdown_format": "myst"}, "tags": ["remove-input"]}


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------- the wheel
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, built once for this module (sdist first, then the wheel from the sdist)."""
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"python -m build failed (is the dev extra installed?):\n{done.stderr[-3000:]}"
    wheels = sorted(dist.glob("perlkit-*.whl"))
    assert len(wheels) == 1 and len(list(dist.glob("perlkit-*.tar.gz"))) == 1, sorted(dist.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh target folder holding only the installed wheel (no dependencies: those come from .venv)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    return target


def _outside(tmp_path: Path) -> Path:
    """A working directory that is not inside the checkout (so nothing can be found through the cwd)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    assert ROOT not in cwd.resolve().parents
    return cwd


def _run_installed(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "PERLKIT_CACHE": str(cwd.parent / "cache"),
           "PYTHONNOUSERSITE": "1"}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_wheel_carries_what_the_library_reads_and_nothing_of_the_repository(wheel: Path) -> None:
    assert wheel.stat().st_size < 30e6, f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        weights = {folder: zf.read(f"perlkit/assets/{folder}/mini-clip.pt") for folder in MINI_WEIGHTS}
    assert {n.split("/")[0] for n in names} == {"perlkit", f"perlkit-{perlkit.__version__}.dist-info"}
    for needed in (*(f"perlkit/assets/{folder}/{name}" for folder in MINI_WEIGHTS
                     for name in ("mini-clip.sha256", "pretrain_log.json")),
                   "perlkit/assets/reported/b2n.csv", "perlkit/assets/reported/sources.csv",
                   "perlkit/configs/mini-clip.json", "perlkit/configs/tiny-clip.json"):
        assert needed in names, needed
    assert not any("pretrain_ckpt" in n or "__pycache__" in n for n in names)
    assert {folder: hashlib.sha256(data).hexdigest() for folder, data in weights.items()} == MINI_WEIGHTS


def test_installed_wheel_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    """Imports come from the target; shipped files are found; the absent data/ means no shipped layer, no crash."""
    cwd = _outside(tmp_path)
    probe = """
import json, perlkit
from perlkit import files
from perlkit.bench import BENCH_DIR
from perlkit.experiments.store import ResultStore
from perlkit.mini.weights import expected_sha256, mini_weights_path, verify_mini_weights
from perlkit.reported import load_reported
print(json.dumps({"file": perlkit.__file__, "checkout": files.in_checkout(), "commit": files.git_commit(),
                  "weights": str(verify_mini_weights()), "sha256": expected_sha256(),
                  "b2n_rows": len(load_reported("b2n")), "read_dirs": [str(d) for d in ResultStore("mini").read_dirs],
                  "bench_files": len(list(BENCH_DIR.glob("*.json")))}))
"""
    done = _run_installed(installed, cwd, "-c", probe)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert Path(seen["file"]).parent == installed / "perlkit", seen["file"]
    assert seen["checkout"] is False and seen["commit"] == "unknown"
    assert Path(seen["weights"]).is_relative_to(installed) and seen["sha256"] == MINI_WEIGHTS["mini-2"]
    assert seen["b2n_rows"] > 100
    assert seen["read_dirs"] == [str(cwd.parent / "cache" / "results" / "mini")]  # the user cache only
    assert seen["bench_files"] == 0

    params = _run_installed(installed, cwd, "-m", "perlkit.cli", "params", "--method", "perl", "--json")
    assert params.returncode == 0, params.stderr[-3000:]
    assert json.loads(params.stdout)["trainable"] == 6402

    version = subprocess.run([str(installed / "bin" / "perlkit"), "--version"], capture_output=True, text=True,
                             cwd=cwd, env={**os.environ, "PYTHONPATH": str(installed)}, timeout=300)
    assert version.stdout.strip() == f"perlkit {perlkit.__version__}", version.stderr[-2000:]
    assert not (installed / "data").exists()


def test_ship_is_refused_outside_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed perlkit has no repository files to replace: --ship says so instead of writing beside it."""
    from perlkit import files
    from perlkit.experiments.store import SHIPPED_RESULTS
    from perlkit.files import output_root
    from perlkit.mini.cli import pretrain_out_dir

    assert files.in_checkout() and output_root(None, True, SHIPPED_RESULTS) == SHIPPED_RESULTS
    monkeypatch.setattr(files, "in_checkout", lambda: False)
    with pytest.raises(ValueError, match="installed at"):
        output_root(None, True, SHIPPED_RESULTS)
    with pytest.raises(ValueError, match="installed at"):
        pretrain_out_dir(None, ship=True)
    assert files.git_commit() == "unknown"


def test_installed_wheel_zeroshot_equals_the_checkout(installed: Path, tmp_path: Path) -> None:
    """``perlkit zeroshot --profile mini --datasets dtd`` from the wheel gives the checkout's numbers (on a small
    mini world, built once here; the slow test below runs the default command on the full world)."""
    from perlkit.experiments import Session
    from perlkit.mini import build_mini_world
    from perlkit.profiles import get_profile

    world = build_mini_world(tmp_path / "world", seed=0, progress=False, scale=0.02)
    cwd = _outside(tmp_path)
    done = _run_installed(installed, cwd, "-m", "perlkit.cli", "zeroshot", "--profile", "mini", "--json",
                          "--datasets", "dtd", "--data-root", str(world))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["benchmarks"]
    assert [r["name"] for r in rows] == ["dtd"] and 0 < rows[0]["accuracy"] <= 100
    here = Session(get_profile("mini", data_root=str(world)), progress=False).zeroshot_benchmarks(["dtd"])
    assert rows == here


@pytest.mark.slow
def test_installed_wheel_zeroshot_default_world(installed: Path, tmp_path: Path) -> None:
    """The command as a user types it: builds the full mini world in the (empty) cache, about 1-3 minutes."""
    done = _run_installed(installed, _outside(tmp_path), "-m", "perlkit.cli", "zeroshot", "--profile", "mini",
                          "--json", "--datasets", "dtd")
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((installed / "perlkit" / "assets" / "mini" / "pretrain_log.json").read_text())
    assert json.loads(done.stdout)["benchmarks"][0]["accuracy"] == log["zeroshot_test_top1"]["dtd"]  # 32.5


# ------------------------------------------------------------------------------------------- versions
def test_one_version_everywhere() -> None:
    version = perlkit.__version__
    done = subprocess.run([sys.executable, "-m", "perlkit.cli", "--version"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"perlkit {version}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "perlkit.__version__"}
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == version
    assert re.search(rf"^## {re.escape(version)}\b", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    from perlkit.files import provenance
    assert provenance("cpu")["perlkit_version"] == version


# ------------------------------------------------------------------------------------------- citation
def _bib_family_names() -> dict[str, list[str]]:
    """Family names of each entry of book/references.bib ('others' dropped)."""
    text = (ROOT / "book" / "references.bib").read_text()
    entries = {}
    for key, body in re.findall(r"@\w+\{([^,]+),(.*?)\n\}", text, flags=re.S):
        authors = re.search(r"author\s*=\s*\{(.*?)\},?\n", body, flags=re.S).group(1)
        entries[key] = [a.split(",")[0].strip() for a in authors.split(" and ") if a.strip() != "others"]
    return entries


def test_citation_file_validates_and_cites_the_papers(tmp_path: Path) -> None:
    path = ROOT / "CITATION.cff"
    done = _check_jsonschema("vendor.citation-file-format", path)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "CITATION.cff"
    broken.write_text(path.read_text().replace("cff-version: 1.2.0", "cff-version: 1.2.0\ncite-me: please"))
    assert _check_jsonschema("vendor.citation-file-format", broken).returncode != 0  # the check can fail

    cff = yaml.safe_load(path.read_text())
    assert cff["repository-code"] == REPOSITORY_URL
    refs = {ref["title"].split(":")[0]: ref for ref in cff["references"]}
    bib = _bib_family_names()
    for title, key in [("PERL", "carnemolla2026perl"), ("MMRL", "guo2025mmrl"), ("MMRL++", "guo2025mmrlpp"),
                       ("MMA", "yang2024mma"), ("R-MMA", "rmma2026")]:
        assert title in refs, f"CITATION.cff does not cite {title}"
        assert [a.get("family-names") for a in refs[title]["authors"]] == bib[key], title
    assert "arXiv:2605.18464" in json.dumps(refs["PERL"])


# ------------------------------------------------------------------------------------------- the CI workflow
def test_book_workflow_validates_and_publishes(tmp_path: Path) -> None:
    path = ROOT / ".github" / "workflows" / "book.yml"
    done = _check_jsonschema("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "book.yml"
    broken.write_text(path.read_text().replace("    runs-on: ubuntu-latest\n", "    runs_on: ubuntu-latest\n", 1))
    assert _check_jsonschema("vendor.github-workflows", broken).returncode != 0  # the check can fail

    workflow = yaml.safe_load(path.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    jobs = workflow["jobs"]
    runs = [step.get("run") for step in jobs["build"]["steps"]]
    assert runs.index("make test") < runs.index("make book")
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    deploy = jobs["deploy"]
    assert deploy["needs"] == "build" and deploy["if"] == "github.ref == 'refs/heads/main'"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")
    dist = jobs["dist"]
    assert dist["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert "make dist" in [s.get("run") for s in dist["steps"]]
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in dist["steps"])
    assert workflow["permissions"] == {"contents": "read"}  # nothing else may write


# ------------------------------------------------------------------------------------------- launch and run
def test_launch_buttons_and_binder_environment() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY_URL
    assert config["execute"]["execute_notebooks"] == "off"  # the chapters are executed by papermill
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [line for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith(("#", "--"))]
    assert pins == [d for d in dependencies if d.startswith("torch")]  # the same bounds, CPU wheels
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK) and 'pip install --no-cache-dir -e ".[book]"' in post.read_text()
    assert re.fullmatch(r"python-3\.1[1-9]\n", (ROOT / "binder" / "runtime.txt").read_text())


@pytest.mark.parametrize("chapter", sorted(RUN_BOX_EXAMPLES))
def test_run_box_command_reads_back_as_the_parameters(chapter: str) -> None:
    """What ``-p NAME VALUE`` hands the chapter (papermill's own type inference) is, through the chapter's
    ``as_list``/``as_options``, the example value; the box shows exactly that command."""
    from papermill.cli import _resolve_type

    assert (ROOT / "book" / f"{chapter}.ipynb").is_file()
    example = RUN_BOX_EXAMPLES[chapter]
    command = papermill_command(chapter, example)
    words = command.split(" ")[:5]
    assert words == ["papermill", f"book/{chapter}.ipynb", f"{chapter}.run.ipynb", "--cwd", "book"]
    argv = shlex.split(command)
    given = {argv[i + 1]: _resolve_type(argv[i + 2]) for i, word in enumerate(argv) if word == "-p"}
    assert set(given) == set(example)
    for name, value in example.items():
        if isinstance(value, list):
            assert as_list(given[name]) == value
        elif isinstance(value, dict):
            assert as_options(given[name]) == value
        else:
            assert given[name] == value
    box = run_this_chapter(chapter, example).data
    assert box.startswith("````{admonition} Run this chapter with other parameters") and command in box


def test_run_box_refuses_a_parameter_the_chapter_lacks() -> None:
    with pytest.raises(ParameterError, match="datset"):
        papermill_command("04_base_to_novel", {"datset": "dtd"})


def test_papermill_accepts_the_run_box_command(tmp_path: Path) -> None:
    """papermill itself parses the shown command and injects the parameters (--prepare-only: nothing executes)."""
    argv = shlex.split(papermill_command("04_base_to_novel", RUN_BOX_EXAMPLES["04_base_to_novel"]))
    out = tmp_path / "out.ipynb"
    argv[2] = str(out)
    done = subprocess.run([sys.executable, "-m", "papermill", *argv[1:], "--prepare-only"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads(out.read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    values = {t.targets[0].id: ast.literal_eval(t.value) for t in ast.parse("".join(injected["source"])).body}
    assert {k: as_list(v) for k, v in values.items()} == RUN_BOX_EXAMPLES["04_base_to_novel"]


def test_every_chapter_renders_its_run_box_as_an_admonition() -> None:
    """Every chapter ends with a run box; the cell needs the MyST markdown format (else the book shows the raw
    directive) and hides its input; its example parameters are the chapter's."""
    for path in sorted((ROOT / "book").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert "run_this_chapter(" in "".join(cells[-1]["source"]), f"{path.name} does not end with its run box"
        for cell in cells:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "run_this_chapter(" not in source:
                continue
            assert cell["metadata"].get("mystnb") == RUN_BOX_METADATA["mystnb"], path.name
            assert "remove-input" in cell["metadata"].get("tags", []), path.name
            call = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
                        and getattr(n.func, "id", "") == "run_this_chapter")
            assert ast.literal_eval(call.args[0]) == path.stem
            papermill_command(path.stem, ast.literal_eval(call.args[1]) if len(call.args) > 1 else {})
