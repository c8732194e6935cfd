"""The mini world is read by the real readers: `perlkit data check` passes on it and catches a corrupted PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from perlkit.cli import main as perlkit_main
from perlkit.data import DATASET_NAMES, load_dataset, sample_fewshot, subsample_classes
from perlkit.mini import build_mini_world


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mini_world(tmp_path_factory.mktemp("mini") / "root", seed=0, progress=False, scale=0.02)


def test_data_check_passes_on_fresh_mini_root(mini_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert perlkit_main(["data", "check", "--data-root", str(mini_root)]) == 0
    out = capsys.readouterr().out.lower()
    assert all(name in out for name in ("imagenet", "eurosat", "imagenet-r"))


def test_every_mini_benchmark_loads_and_splits(mini_root: Path) -> None:
    for name in DATASET_NAMES:
        splits = load_dataset(name, mini_root)
        assert splits.test and len(splits.classnames) >= 2
        if splits.train:
            few = sample_fewshot(splits, shots=2, seed=1, cache=False)
            base, novel = subsample_classes(few, "base"), subsample_classes(few, "novel")
            assert len(base.classnames) + len(novel.classnames) == len(splits.classnames)


def test_garbage_png_fails_check_and_is_named(mini_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(mini_root / "eurosat", root / "eurosat")
    shutil.copy(mini_root / "perlkit_expected.json", root / "perlkit_expected.json")
    victim = sorted((root / "eurosat").rglob("*.png"))[3]
    victim.write_bytes(b"this is not a png")
    code = perlkit_main(["data", "check", "--data-root", str(root), "--dataset", "eurosat"])
    captured = capsys.readouterr()
    assert code != 0
    assert victim.name in captured.out + captured.err
