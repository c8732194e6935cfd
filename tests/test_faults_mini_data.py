"""Fault suite, mini world and data side (issue 15): nothing of the user's deleted, no half-built leftovers after a
kill, advice that restores before it retrains, no unpickling of arbitrary objects, and bad split entries named."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from perlkit import files
from perlkit.cli import main as perlkit_main
from perlkit.data import DatasetError, load_dataset
from perlkit.data.check import check_dataset
from perlkit.mini import build as B
from perlkit.mini import weights as Wt
from perlkit.mini.build import MARKER, MiniWorldError, build_mini_world

SCALE = 0.01  # the smallest world: one image per class and split (1,455 images, ~8 s on 2 cores)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted build, the reference every other build here must equal."""
    return build_mini_world(tmp_path_factory.mktemp("ref") / "mini", seed=0, progress=False, scale=SCALE)


def _marker(root: Path) -> dict:
    return json.loads((root / MARKER).read_text())


def _temps(root: Path) -> list[str]:
    return sorted(p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}."))


# ------------------------------------------------------------------------------------------ mini build: user files
def test_build_refuses_a_users_folder_and_keeps_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "thesis"
    root.mkdir()
    (root / "chapter1.tex").write_text("precious")
    with pytest.raises(MiniWorldError, match="not a mini world built by perlkit") as err:
        build_mini_world(root, scale=SCALE, progress=False)
    assert str(root) in str(err.value) and "--root" in str(err.value)
    assert perlkit_main(["mini", "build", "--root", str(root), "--scale", str(SCALE)]) == 2
    msg = capsys.readouterr().err
    assert str(root) in msg and msg.count("\n") == 1
    assert (root / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in root.iterdir()) == ["chapter1.tex"] and _temps(root) == []


def test_build_refuses_a_file_and_a_foreign_marker(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MiniWorldError, match="not a folder"):
        build_mini_world(tmp_path / "afile", scale=SCALE, progress=False)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MARKER).write_text("[]")  # valid JSON, but not perlkit's marker (used to raise AttributeError)
    (fake / "data.csv").write_text("1,2")
    with pytest.raises(MiniWorldError, match="not a mini world built by perlkit"):
        build_mini_world(fake, scale=SCALE, progress=False)
    assert (fake / "data.csv").read_text() == "1,2"


def test_perlkit_world_of_another_seed_is_replaced_but_not_with_user_files_in_it(world: Path, tmp_path: Path) -> None:
    other = tmp_path / "mini"
    shutil.copytree(world, other)
    info = _marker(other)
    info["config"]["seed"] = 7  # a world perlkit built with another seed
    (other / MARKER).write_text(json.dumps(info))
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MiniWorldError, match="notes.txt"):
        build_mini_world(other, seed=0, scale=SCALE, progress=False)
    assert (other / "notes.txt").read_text() == "mine"
    (other / "notes.txt").unlink()
    assert build_mini_world(other, seed=0, scale=SCALE, progress=False) == other
    assert _marker(other) == _marker(world)
    assert _temps(other) == []


@pytest.mark.parametrize("kw", [{"scale": float("nan")}, {"scale": float("inf")}, {"scale": 0.0}, {"scale": -1.0},
                                {"scale": 1.5}, {"seed": -1}, {"seed": 1.5}, {"seed": True}])
def test_bad_seed_or_scale_is_refused_before_any_work(tmp_path: Path, kw: dict) -> None:
    args = {"seed": 0, "scale": SCALE, **kw}
    with pytest.raises(MiniWorldError, match="seed" if "seed" in kw else "scale"):
        build_mini_world(tmp_path / "mini", progress=False, **args)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ mini build: temp folders
_BUILD = """
import signal, sys, time
# a terminal's foreground job: Ctrl-C raises KeyboardInterrupt (a background job, e.g. under `cmd &` in CI, inherits
# SIGINT ignored, and so would every build the test starts)
signal.signal(signal.SIGINT, signal.default_int_handler)
from perlkit.mini import build
real_write, written = build._write, [0]
def slow_write(path, data):  # after 200 images, 20 ms an image: the test's signal lands mid-build even on a busy box
    real_write(path, data)
    written[0] += 1
    if written[0] > 200:
        time.sleep(0.02)
build._write = slow_write
build.build_mini_world(sys.argv[1], seed=0, scale=float(sys.argv[2]), progress=False, workers=int(sys.argv[3]))
"""


def _build_until_half_done(root: Path, workers: int) -> subprocess.Popen:
    """A build in a subprocess (its own process group, as a shell job), once its temp folder holds some images."""
    proc = subprocess.Popen([sys.executable, "-c", _BUILD, str(root), str(SCALE), str(workers)],
                            env=dict(os.environ), start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        tmps = [p for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.tmp-")]
        if tmps and sum(1 for _ in tmps[0].rglob("*.png")) >= 200:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the build ended (or never started) before it could be interrupted")


def test_sigkill_during_build_leaves_no_temp_after_the_next_build(world: Path, tmp_path: Path) -> None:
    root = tmp_path / "mini"
    proc = _build_until_half_done(root, workers=1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = _temps(root)
    assert len(left) == 1 and not root.exists()  # the killed build's half-written folder
    assert build_mini_world(root, seed=0, scale=SCALE, progress=False) == root
    assert _temps(root) == []
    assert _marker(root) == _marker(world)  # same manifest (every file's path and bytes) as an uninterrupted build


def test_ctrl_c_during_a_parallel_build_exits_and_removes_its_temp(tmp_path: Path) -> None:
    root = tmp_path / "mini"
    proc = _build_until_half_done(root, workers=2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the parent and its pool workers
    try:
        proc.wait(timeout=60)  # it used to hang in pool.join(), waiting for images its dead workers never made
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and _temps(root) == [] and not root.exists()


def test_a_failing_build_removes_its_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = B._write

    def failing_write(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 100:
            raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(B, "_write", failing_write)
    root = tmp_path / "mini"
    with pytest.raises(OSError, match="No space left"):
        build_mini_world(root, scale=SCALE, progress=False, workers=1)
    assert calls["n"] == 100 and _temps(root) == [] and not root.exists()


def test_only_dead_local_temps_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "mini"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = files._host()
    try:
        names = {
            f".mini.tmp-{host}-{dead.pid}": False,  # a killed build on this machine: removed
            f".mini.old-{host}-{dead.pid}": False,
            f".mini.tmp-{dead.pid}": False,  # the name older perlkit versions used
            f".mini.tmp-{host}-{sleeper.pid}": True,  # a live build: kept
            f".mini.tmp-otherhost-{dead.pid}": True,  # another machine's build on a shared disk: kept
            ".mini.tmp-notes": True,  # not perlkit's pattern: kept
            ".other.tmp-1": True,
        }
        for name in names:
            (tmp_path / name).mkdir()
            (tmp_path / name / "f").write_text("x")
        removed = files.remove_stale_temps(root)
        assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep)
    finally:
        sleeper.kill()
        sleeper.wait()


# ------------------------------------------------------------------------------------------ mini weights
def test_flipped_byte_advice_restores_before_retraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "data" / "mini" / "mini-clip.pt"
    shipped.parent.mkdir(parents=True)
    shutil.copy(Wt.mini_weights_path(), shipped)
    shutil.copy(Wt.mini_weights_path().with_suffix(".sha256"), shipped.with_suffix(".sha256"))
    data = bytearray(shipped.read_bytes())
    data[len(data) // 3] ^= 0x01
    shipped.write_bytes(bytes(data))
    monkeypatch.setattr(Wt, "mini_weights_path", lambda world="2": shipped)
    with pytest.raises(ValueError, match="fail the checksum") as err:
        Wt.verify_mini_weights()
    msg = str(err.value)
    assert str(shipped) in msg
    first, retrain = msg.index("git checkout -- perlkit/assets/mini-2/mini-clip.pt"), msg.index("perlkit mini pretrain")
    assert first < msg.index("reinstall") < retrain
    shipped.unlink()
    with pytest.raises(FileNotFoundError, match="git checkout -- perlkit/assets/mini-2/mini-clip.pt"):
        Wt.verify_mini_weights()


def test_flipped_byte_in_a_copy_says_copy_the_shipped_file(tmp_path: Path) -> None:
    copy = tmp_path / "mini-clip.pt"
    data = bytearray(Wt.mini_weights_path().read_bytes())
    data[-100] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        Wt.verify_mini_weights(copy)
    msg = str(err.value)
    assert msg.index(f"copy the shipped {Wt.mini_weights_path()}") < msg.index("git checkout") < msg.index("pretrain")


# ------------------------------------------------------------------------------------------ mini pretrain
class _Payload:
    """An object whose unpickling creates a file: what weights_only=False would run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (str(self.target), "w"))


def test_resume_file_is_never_unpickled_beyond_tensors(tmp_path: Path) -> None:
    from perlkit.mini.pretrain import pretrain_mini_clip
    out, ran = tmp_path / "out", tmp_path / "payload-ran"
    out.mkdir()
    torch.save({"model": _Payload(ran), "step": 0}, out / "pretrain_ckpt.pt")
    with pytest.raises(ValueError, match="pretrain_ckpt.pt") as err:
        pretrain_mini_clip(out, steps=1, batch_size=2, progress=False, final_eval=False)
    assert "delete it" in str(err.value)
    assert not ran.exists() and not (out / "mini-clip.pt").exists()


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", None])
def test_truncated_or_keyless_resume_file_is_named(tmp_path: Path, content: bytes | None) -> None:
    from perlkit.mini.pretrain import load_resume_state
    ckpt = tmp_path / "pretrain_ckpt.pt"
    if content is None:
        torch.save({"model": {}, "step": 3}, ckpt)
    else:
        ckpt.write_bytes(content)
    with pytest.raises(ValueError, match=str(ckpt)):
        load_resume_state(ckpt)


@pytest.mark.slow
def test_pretraining_interrupted_mid_phase_resumes_byte_identical(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from perlkit.mini import pretrain as P
    ph = dict(P.PHASES[0])
    monkeypatch.setattr(P, "PHASES", [dict(ph, steps=2), dict(ph, steps=2, lr=5e-4)])
    monkeypatch.setattr(P, "DEFAULT_STEPS", 4)
    monkeypatch.setitem(P.RECIPE, "checkpoint_every", 1)
    # world 1's schedule (patched above) and its recorded loss curve
    kw = {"steps": 4, "batch_size": 4, "progress": False, "final_eval": False, "world": "1"}
    straight = P.pretrain_mini_clip(tmp_path / "a", **kw)
    real_lr = P._lr

    def interrupt_at_step_3(step: int, phases: list[dict]) -> float:
        if step == 3:
            raise KeyboardInterrupt
        return real_lr(step, phases)

    monkeypatch.setattr(P, "_lr", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        P.pretrain_mini_clip(tmp_path / "b", **kw)
    state = P.load_resume_state(tmp_path / "b" / "pretrain_ckpt.pt")  # weights_only=True
    assert state["step"] == 3 and isinstance(state["torch_rng"], torch.Tensor)
    monkeypatch.setattr(P, "_lr", real_lr)
    resumed = P.pretrain_mini_clip(tmp_path / "b", **kw)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert resumed["loss_curve"] == straight["loss_curve"] == [[1, 1.5048], [2, 1.602], [3, 2.549], [4, 1.4462]]


def test_pretrain_refuses_bad_steps_before_writing(tmp_path: Path) -> None:
    from perlkit.mini.pretrain import pretrain_mini_clip
    from perlkit.mini.worlds import get_world

    total = sum(phase["steps"] for phase in get_world().phases)  # the default world's schedule
    for bad in (0, -3, total + 1, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer"):
            pretrain_mini_clip(tmp_path / "out", steps=bad, progress=False, final_eval=False)
    with pytest.raises(ValueError, match="eval_every"):
        pretrain_mini_clip(tmp_path / "out", steps=1, eval_every=-1, progress=False, final_eval=False)
    assert not (tmp_path / "out").exists()


def test_pretrain_writes_to_the_cache_unless_shipped(tmp_path: Path) -> None:
    from perlkit.mini.cli import pretrain_out_dir
    assert pretrain_out_dir(None, ship=False) == tmp_path / "cache" / "mini-clip"
    assert pretrain_out_dir(None, ship=True) == Wt.mini_weights_path().parent
    assert pretrain_out_dir(str(tmp_path / "x"), ship=False) == tmp_path / "x"
    with pytest.raises(ValueError, match="--ship"):
        pretrain_out_dir(str(tmp_path / "x"), ship=True)


# ------------------------------------------------------------------------------------------ data readers
def _copy_dataset(world: Path, dst: Path, name: str) -> Path:
    shutil.copytree(world / name, dst / name)
    shutil.copy(world / "perlkit_expected.json", dst / "perlkit_expected.json")
    return dst


def test_out_of_range_label_names_file_split_entry_and_label(world: Path, tmp_path: Path) -> None:
    root = _copy_dataset(world, tmp_path, "dtd")
    split_file = root / "dtd" / "split_zhou_DescribableTextures.json"
    split = json.loads(split_file.read_text())
    rel = split["val"][3][0]
    split["val"][3][1] = 99
    split_file.write_text(json.dumps(split))
    with pytest.raises(DatasetError) as err:
        load_dataset("dtd", root)
    msg = str(err.value)
    assert str(split_file) in msg and "val[3]" in msg and rel in msg and "label 99" in msg
    report = check_dataset("dtd", root, verify_images=False)
    assert report.status == "incomplete" and "val[3]" in report.message and "label 99" in report.message


def test_unreadable_folder_is_a_dataset_error(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    import perlkit.data.images as images
    root = _copy_dataset(world, tmp_path, "imagenet-sketch")
    locked = root / "imagenet-sketch" / "images" / "n00000003"
    real = os.scandir

    def scandir(path: str | os.PathLike) -> object:  # what a folder without read permission gives (root reads all)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(images.os, "scandir", scandir)
    with pytest.raises(DatasetError, match="n00000003.*Permission denied.*chmod"):
        load_dataset("imagenet_sketch", root)
    assert perlkit_main(["data", "check", "--data-root", str(root), "--dataset", "imagenet_sketch"]) == 1
    out = capsys.readouterr().out
    assert "incomplete" in out and str(locked) in out


def test_data_root_pointing_at_a_dataset_folder_gets_a_hint(world: Path, tmp_path: Path) -> None:
    root = _copy_dataset(world, tmp_path, "eurosat")
    hint = f"--data-root {root}"
    with pytest.raises(DatasetError, match="looks like a dataset folder") as err:
        load_dataset("eurosat", root / "eurosat")
    assert hint in str(err.value)
    report = check_dataset("eurosat", root / "eurosat", verify_images=False)
    assert report.status == "missing" and hint in report.message
    assert "looks like" not in check_dataset("dtd", root, verify_images=False).message
