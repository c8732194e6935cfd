"""The fault suite: bad input gets one clear line and exit 2, nothing half-written counts as done, nothing the user
made is lost, and runs give the same numbers however they are reached (first in a process, mid-sweep, after a
kill, beside a second process on the same store).

The mini/data-side rows of the fault table (mini build, weights, split files) are in ``test_faults_mini_data.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_data_world import make_world

from perlkit.cli import main
from perlkit.engine import CheckpointError, load_checkpoint, save_checkpoint
from perlkit.experiments import ResultStore, RunSpec, Session, b2n_specs
from perlkit.files import StoreError
from perlkit.methods import build_method
from perlkit.profiles import Profile

REPO = Path(__file__).resolve().parents[1]


def tiny_profile(data_root: Path) -> Profile:
    """The paper profile's code path on a tiny random CLIP and a fabricated CoOp root."""
    return Profile("mini", "tiny-clip", None, None, str(data_root), "cpu", 64, 0, "test profile")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    make_world(root, ["dtd", "eurosat", "oxford_pets"])
    return root


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------------------------------- method options
@pytest.mark.parametrize(
    ("option", "culprit"),
    [
        ("steps=abc", "steps='abc'"), ("split=[]", "split=[]"), ("rank=1.5", "rank=1.5"), ('split="7"', "split='7'"),
        ("steps=1.5", "steps=1.5"), ("steps=true", "steps=True"), ("anchor_weight=abc", "anchor_weight='abc'"),
        ("steps=-1", "steps must be >= 0"),
    ],
)
def test_bad_method_option_is_one_line_exit_2(option: str, culprit: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", "perl", "--model", "tiny-clip", "--option", option]) == 2
    one_line_error(capsys, "perl", culprit)


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(ValueError, match="steps"):
        main(["--debug", "params", "--method", "perl", "--model", "tiny-clip", "--option", "steps=abc"])


def test_dataset_error_reaching_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["zeroshot", "--profile", "paper", "--model", "tiny-clip", "--pretrained", "random",
                 "--data-root", str(empty), "--json"])
    assert code == 2
    one_line_error(capsys, str(empty))


def test_permission_error_reaching_the_cli_is_one_line(monkeypatch, capsys: pytest.CaptureFixture) -> None:
    import perlkit.cli as cli

    def denied(args):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied", "/somewhere/result.json")

    monkeypatch.setattr(cli, "cmd_params", denied)
    assert main(["params", "--method", "perl"]) == 2
    one_line_error(capsys, "/somewhere/result.json")


def test_zeroshot_skip_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    make_world(root, ["dtd"])
    split = json.loads((root / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    broken = root / "dtd" / "images" / split["test"][0][0]
    broken.write_bytes(b"not an image")
    args = ["zeroshot", "--profile", "paper", "--model", "tiny-clip", "--pretrained", "random", "--data-root",
            str(root), "--datasets", "dtd", "--json"]
    assert main(args) == 2
    one_line_error(capsys, str(broken), "--skip-corrupt")
    assert main([*args, "--skip-corrupt"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmarks"][0]["test_images"] == len(split["test"]) - 1


# ------------------------------------------------------------------------------------------- outputs
def test_bench_writes_to_the_cache_not_the_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    shipped = {p: p.read_bytes() for p in (REPO / "data" / "bench").glob("*.json")}
    args = ["bench", "--profile", "mini", "--model", "tiny-clip", "--quick", "--no-progress", "--methods", "zeroshot",
            "--train-batches", "2", "--train-repeats", "1", "--eval-batch", "4", "--eval-rounds", "1",
            "--memory-classes", "0"]
    assert main(args) == 0
    assert list((tmp_path / "bench").glob("mini-tiny-clip-cpu.json"))
    assert {p: p.read_bytes() for p in (REPO / "data" / "bench").glob("*.json")} == shipped


def test_results_writes_to_the_cache_unless_shipped(tmp_path: Path, monkeypatch) -> None:
    import perlkit.experiments.sweeps as sweeps

    seen = []
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(sweeps.Session, "sweep", lambda self, specs, desc="": seen.append(self.store.write_dir))
    monkeypatch.setattr(sweeps.Session, "backbone", property(lambda self: None))
    assert main(["results", "--profile", "mini", "--parts", "b2n"]) == 0
    assert main(["results", "--profile", "mini", "--parts", "b2n", "--out", str(tmp_path / "elsewhere")]) == 0
    assert seen == [tmp_path / "results" / "mini", tmp_path / "elsewhere" / "mini"]
    assert main(["results", "--profile", "mini", "--ship", "--out", str(tmp_path)]) == 2


# ------------------------------------------------------------------------------------------- the store
def test_unwritable_store_fails_before_training(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """A store path under a regular file cannot be created, even by root (as a read-only cache)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    session = Session(tiny_profile(data_root), progress=False, store=ResultStore("mini", blocker / "results"))
    monkeypatch.setattr("perlkit.experiments.protocols.train", lambda *a, **k: pytest.fail("trained first"))
    with pytest.raises(StoreError, match="cannot write results"):
        session.run(RunSpec("b2n", "perl", "dtd", options={"steps": 1}))


def test_result_file_that_is_not_an_object_is_recomputed(data_root: Path, tmp_path: Path) -> None:
    session = Session(tiny_profile(data_root), progress=False, store=ResultStore("mini", tmp_path))
    spec = RunSpec("b2n", "zeroshot", "dtd")
    path = session.store.path_for(spec)
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2, 3]")
    with pytest.warns(UserWarning, match="not a result object"):
        assert session.store.get(spec) is None
    assert session.run(spec)["metrics"]["base"] >= 0
    assert isinstance(json.loads(path.read_text()), dict)


def test_disk_full_while_saving_leaves_the_run_not_done(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    session = Session(tiny_profile(data_root), progress=False, store=ResultStore("mini", tmp_path))
    spec = RunSpec("b2n", "perl", "dtd", options={"steps": 1})

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise StoreError(f"could not write {session.store.checkpoint_path(spec)}: File too large")

    monkeypatch.setattr("perlkit.experiments.protocols.save_checkpoint", full)
    with pytest.raises(StoreError, match=str(session.store.checkpoint_path(spec))):
        session.run(spec)
    assert not session.store.path_for(spec).exists()  # checkpoint first: no result marks the run done


def test_result_without_its_checkpoint_is_rerun(data_root: Path, tmp_path: Path) -> None:
    session = Session(tiny_profile(data_root), progress=False, store=ResultStore("mini", tmp_path))
    spec = RunSpec("b2n", "perl", "dtd", options={"steps": 1})
    first = session.run(spec)
    session.store.checkpoint_path(spec).unlink()
    assert session.store.get(spec) is None
    again = session.run(spec)
    assert again["metrics"] == first["metrics"] and session.store.checkpoint_path(spec).is_file()


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_refuses_other_weights_and_names_bad_files(tiny_backbone, tmp_path: Path) -> None:
    from perlkit.backbone import create_backbone

    perl = build_method("perl", tiny_backbone, steps=1)
    path = tmp_path / "perl.pt"
    save_checkpoint(perl, path)
    load_checkpoint(build_method("perl", tiny_backbone, steps=1), path)
    other = create_backbone("tiny-clip", None)
    with torch.no_grad():
        other.model.logit_scale.add_(0.5)  # same model name, other weights
    with pytest.raises(CheckpointError, match="other 'tiny-clip' weights"):
        load_checkpoint(build_method("perl", other, steps=1), path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=str(truncated)):
        load_checkpoint(perl, truncated)
    keyless = tmp_path / "keyless.pt"
    buffer = io.BytesIO()
    torch.save({"format": "perlkit-checkpoint-v1", "method": "perl"}, buffer)
    keyless.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match=f"{keyless}.*backbone"):
        load_checkpoint(perl, keyless)


@pytest.mark.parametrize("world", ["1", "2"])
def test_shipped_checkpoints_record_the_shipped_weights(world: str) -> None:
    from perlkit.profiles import get_profile

    profile = get_profile("mini", world=world)
    sha = profile.backbone().weights_sha256()
    files = sorted((REPO / "data" / "results" / "checkpoints" / profile.store_name).glob("*.pt"))
    assert files
    for path in files:
        assert torch.load(path, weights_only=True)["backbone"]["weights_sha256"] == sha, path


# ------------------------------------------------------------------------------------------- processes
WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from perlkit.experiments import ResultStore, Session, b2n_specs
    from perlkit.profiles import Profile
    data, store, order = sys.argv[1], sys.argv[2], sys.argv[3]
    profile = Profile("mini", "tiny-clip", None, None, data, "cpu", 64, 0, "test profile")
    session = Session(profile, progress=False, store=ResultStore("mini", store))
    specs = b2n_specs(["perl", "mma"], ["dtd", "eurosat", "oxford_pets"], options={"perl": {"steps": 1}})
    if order == "reversed":
        specs = specs[::-1]
    results = session.sweep(specs)
    computed = [r["spec"]["method"] + ":" + r["spec"]["dataset"] for r in results if "_path" not in r]
    print(json.dumps({r["spec"]["method"] + ":" + r["spec"]["dataset"]: r["metrics"] for r in results}))
    print(json.dumps(computed), file=sys.stderr)
    """
)


def run_worker(data_root: Path, store: Path, order: str = "forward", **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PERLKIT_CACHE": str(store.parent / "cache")}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(data_root), str(store), order],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def finish(proc: subprocess.Popen, computed: list | None = None) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    if computed is not None:
        computed.extend(json.loads(err.strip().splitlines()[-1]))
    return json.loads(out)


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sweep's metrics run once, uninterrupted, in a fresh process."""
    return finish(run_worker(data_root, tmp_path_factory.mktemp("reference") / "store"))


def result_files(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "mini").glob("*.json"))


def test_sigkill_during_a_sweep_resumes_with_identical_numbers(data_root: Path, reference: dict,
                                                               tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = run_worker(data_root, store)
    deadline = time.time() + 300
    while len(result_files(store)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(result_files(store)) < 6, "the kill should land mid-sweep"
    assert finish(run_worker(data_root, store)) == reference
    assert not [p for p in store.rglob("*.tmp")]


def test_two_sweeps_on_one_store_neither_corrupt_nor_duplicate(data_root: Path, reference: dict,
                                                               tmp_path: Path) -> None:
    store = tmp_path / "store"
    first, second = run_worker(data_root, store), run_worker(data_root, store, "reversed")
    computed: list[str] = []
    assert finish(first, computed) == reference and finish(second, computed) == reference
    assert sorted(computed) == sorted(reference)  # every run computed exactly once, by one of the two
    files = result_files(store)
    assert len(files) == 6
    for name in files:  # every file parses as a complete result
        assert json.loads((store / "mini" / name).read_text())["schema"] == "perlkit-result-v1"


def test_a_run_gives_the_same_numbers_first_in_process_and_mid_sweep(data_root: Path, reference: dict,
                                                                     tmp_path: Path) -> None:
    """Reversed order: the last spec of the reference sweep runs first in its process, and vice versa."""
    assert finish(run_worker(data_root, tmp_path / "store", "reversed")) == reference


def test_in_process_run_after_others_matches_a_fresh_process(data_root: Path, reference: dict, tmp_path: Path) -> None:
    session = Session(tiny_profile(data_root), progress=False, store=ResultStore("mini", tmp_path))
    torch.manual_seed(1234)  # whatever ran before in the process
    specs = b2n_specs(["perl", "mma"], ["dtd", "eurosat", "oxford_pets"], options={"perl": {"steps": 1}})
    result = session.run(specs[-1])
    assert result["metrics"] == reference["mma:oxford_pets"]


# ------------------------------------------------------------------------------------------- chapters
@pytest.mark.parametrize(("chapter", "parameter", "value"), [
    ("04_base_to_novel", "datasets", ["imagenet_sketch"]), ("04_base_to_novel", "datasets", "dtd, eurosat"),
    ("03_training", "dataset", "imagenet_sketch"), ("07_ablations", "datasets", []),
])
def test_chapter_refuses_a_dataset_its_protocol_cannot_run(chapter: str, parameter: str, value) -> None:
    """The check cell of each chapter runs before any work; the error names the parameter and the value."""
    from perlkit.book import ParameterError, check_parameters
    from perlkit.data import B2N_DATASETS

    with pytest.raises(ParameterError, match=parameter):
        check_parameters({parameter: value}, [parameter], chapter, datasets={parameter: B2N_DATASETS})
    check_parameters({parameter: "all"}, [parameter], chapter, datasets={parameter: B2N_DATASETS})


def test_chapters_check_their_dataset_parameters() -> None:
    """Every chapter with a dataset parameter passes it to check_parameters (the cell that runs first)."""
    for path in sorted((REPO / "book").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        params = next(("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", [])), "")
        for name in ("dataset", "datasets"):
            if re.search(rf"^{name} = ", params, flags=re.M):
                check = next("".join(c["source"]) for c in cells if "check_parameters(" in "".join(c["source"]))
                assert f'"{name}": ' in check.split("datasets={")[-1], (path.name, name)


def test_base_to_novel_refuses_a_test_only_dataset(tmp_path: Path) -> None:
    from perlkit.data import DatasetError

    root = tmp_path / "data"
    make_world(root, ["imagenet_sketch", "imagenet"])
    session = Session(tiny_profile(root), progress=False, store=ResultStore("mini", tmp_path / "store"))
    with pytest.raises(DatasetError, match="no training images"):
        session.run(RunSpec("b2n", "zeroshot", "imagenet_sketch"))
    assert not list((tmp_path / "store").rglob("*.json"))  # no junk result cached
