"""perlkit smoke: the shortened CPU version end to end through the CLI, read by the real readers, and its guards."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perlkit.cli import main
from perlkit.data import DATASET_NAMES, PUBLISHED_COUNTS, check_dataset, load_dataset
from perlkit.data.registry import EUROSAT_RENAMES, EXPECTED_FILE
from perlkit.experiments import protocols
from perlkit.files import REPO_DATA
from perlkit.methods import list_methods
from perlkit.smoke import data_shapes, default_output, plan_data_root

REPO = REPO_DATA.parent
_SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "_build", ".ipynb_checkpoints"}


def _repo_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout outside caches and the virtualenv, with its size and modification time."""
    out = {}
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _SKIP and not d.endswith(".egg-info")]
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), REPO)] = (stat.st_size, stat.st_mtime_ns)
    return out


def _smoke(*argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``perlkit smoke --quick --json`` through the CLI entry point; return the exit code and the record."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["smoke", "--quick", "--json", "--no-progress", *argv])
    return code, json.loads(stdout.getvalue())


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh PERLKIT_CACHE shared by this module's runs (the synthetic root is written once)."""
    folder = tmp_path_factory.mktemp("perlkit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERLKIT_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def quick_run(cache: Path) -> tuple[int, dict[str, Any], dict, dict]:
    """One full quick smoke (every method, DTD / EuroSAT / SUN397 base-to-novel and ImageNet transfer)."""
    before = _repo_files()
    code, record = _smoke()
    return code, record, before, _repo_files()


def test_quick_smoke_passes_every_method_through_the_cli(quick_run: tuple) -> None:
    code, record, _, _ = quick_run
    assert code == 0, record["failed"]
    assert record["ok"] is True and record["failed"] == []
    assert set(record["runs"]) == set(list_methods())
    for method, cells in record["runs"].items():
        assert set(cells) == {"dtd", "eurosat", "sun397", "imagenet"}, method
        for dataset, run in cells.items():
            where = f"{method}/{dataset}"
            assert run["ok"] is True and run["error"] is None and run["traceback"] is None, where
            assert run["kind"] == ("imagenet_transfer" if dataset == "imagenet" else "b2n"), where
            assert run["seconds"] > 0 and run["eval_images"] > 0 and run["eval_images_per_s"] > 0, where
            assert run["cuda_max_allocated_mb"] is None and run["cuda_allocated_before_mb"] is None, where
            trains = method != "zeroshot"
            assert run["train_steps"] == ((1 if dataset == "imagenet" else 2) if trains else 0), where
            assert (run["train_images_per_s"] or 0) > 0 if trains else run["train_images_per_s"] is None, where
            assert (run["trainable_params"] > 0) == trains, where
        # base and novel test images of the quick DTD (4 classes, 1 test image each); transfer: all 15 test sets
        assert cells["dtd"]["eval_images"] == 4
        assert cells["imagenet"]["eval_images"] == sum(s.test for s in data_shapes(True).values())
        assert set(DATASET_NAMES) <= set(cells["imagenet"]["metrics"])
        assert {"base", "novel", "hm"} <= set(cells["dtd"]["metrics"])


def test_quick_smoke_record_fields_and_file(quick_run: tuple, cache: Path) -> None:
    _, record, _, _ = quick_run
    for key in ("schema", "device", "device_name", "provenance", "model", "weights", "pretrained", "quick",
                "seconds", "settings", "data", "runs", "notes"):
        assert key in record, key
    assert record["schema"] == "perlkit-smoke-v1" and record["device"] == "cpu" and record["quick"] is True
    assert record["device_name"].startswith("CPU") and record["model"] == "tiny-clip"
    assert {"git_commit", "torch", "open_clip", "created", "device"} <= set(record["provenance"])
    # the default weights are random ones saved to a file in the cache and loaded through the local-file path
    assert record["weights"] == "random" and Path(record["pretrained"]).is_file()
    assert Path(record["pretrained"]).is_relative_to(cache)
    settings = record["settings"]
    assert settings["steps"] == 2 and settings["transfer_steps"] == 1 and settings["shots"] == 16
    assert settings["methods"] == list_methods() and settings["datasets"] == ["dtd", "eurosat", "sun397", "imagenet"]
    assert record["data"]["written"] is True and record["data"]["read_errors"] == {}
    saved = cache / "bench" / "paper-cpu-smoke-quick.json"
    assert json.loads(saved.read_text()) == record


def test_real_readers_read_the_synthetic_root(quick_run: tuple) -> None:
    _, record, _, _ = quick_run
    root = Path(record["data"]["root"])
    shapes = data_shapes(True)
    for name in DATASET_NAMES:
        report = check_dataset(name, root)
        assert report.ok, (name, report.message, report.problems)
        assert report.num_classes == (shapes[name].num_classes, shapes[name].num_classes)
    eurosat = load_dataset("eurosat", root)
    assert eurosat.classnames == list(EUROSAT_RENAMES.values())[:4]  # folder AnnualCrop, prompt "Annual Crop Land"
    assert all(Path(d.impath).parent.name in EUROSAT_RENAMES for d in eurosat.train)
    imagenet = load_dataset("imagenet", root)
    assert len(imagenet.classnames) == 6 and len(imagenet.train) == 12 and not imagenet.val
    assert load_dataset("imagenet_a", root).classnames == imagenet.classnames[::2]  # a subset of ImageNet's classes


def test_quick_smoke_writes_nothing_into_the_repository(quick_run: tuple) -> None:
    _, _, before, after = quick_run
    created = sorted(set(after) - set(before))
    changed_data = sorted(p for p in after if p.startswith("data" + os.sep) and before.get(p) != after[p])
    assert created == [] and changed_data == []


def test_a_failing_method_does_not_stop_the_others(quick_run: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = protocols.build_method

    def build(name: str, *args: Any, **kwargs: Any):
        if name == "mma":
            raise RuntimeError("broken on purpose")
        return real_build(name, *args, **kwargs)

    monkeypatch.setattr(protocols, "build_method", build)
    code, record = _smoke("--methods", "mma", "perl", "zeroshot", "--datasets", "dtd")
    assert code == 1 and record["ok"] is False and record["failed"] == ["mma/dtd"]
    failed = record["runs"]["mma"]["dtd"]
    assert failed["error"] == "RuntimeError: broken on purpose" and "broken on purpose" in failed["traceback"]
    assert record["runs"]["perl"]["dtd"]["ok"] and record["runs"]["zeroshot"]["dtd"]["ok"]
    assert record["data"]["written"] is False  # the complete root of the first run is reused


def test_smoke_refuses_a_folder_it_did_not_create(cache: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["smoke", "--quick", "--root", str(foreign), "--no-progress"]) == 2
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folder left beside it
    assert main(["smoke", "--quick", "--datasets", "imagenet_r", "--no-progress"]) == 2  # no training split
    assert main(["smoke", "--quick", "--methods", "perll", "--no-progress"]) == 2


def test_output_paths_and_full_sizes() -> None:
    assert default_output("cuda", "ViT-B-16", quick=False, ship=True) == REPO_DATA / "bench" / "paper-cuda-smoke.json"
    assert default_output("cpu", "ViT-B-16", quick=False, ship=False).name == "paper-cpu-smoke.json"
    assert default_output("cpu", "ViT-B-32", quick=False, ship=False).name == "paper-ViT-B-32-cpu-smoke.json"
    full = data_shapes(False)
    assert {k: s.num_classes for k, s in full.items()} == {k: e.num_classes for k, e in PUBLISHED_COUNTS.items()}
    assert full["dtd"] == PUBLISHED_COUNTS["dtd"]  # every split at CoOp's published size
    for key in ("eurosat", "sun397"):
        assert (full[key].train, full[key].val) == (PUBLISHED_COUNTS[key].train, PUBLISHED_COUNTS[key].val)
    assert all(s.train >= 16 * s.num_classes for s in full.values() if s.train)
    plan = plan_data_root(full)
    expected = json.loads(plan.meta[EXPECTED_FILE])
    assert "dtd" not in expected and set(expected) == set(DATASET_NAMES) - {"dtd"}
    assert len(plan.images) == sum(s.train + s.val + s.test for s in full.values())
