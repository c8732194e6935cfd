"""``check_dataset``, ``format_report``, the ``data check`` handler, transforms and loaders."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_data_world import N_CLASSES, make_world

from perlkit.data import (
    DATASET_NAMES,
    DatasetError,
    ImageListDataset,
    build_transform,
    check_dataset,
    format_report,
    load_dataset,
    make_loader,
)
from perlkit.data.cli import add_data_commands, main


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 15 fabricated layouts (read-only)."""
    root = tmp_path_factory.mktemp("world")
    make_world(root, DATASET_NAMES)
    return root


def corrupt(path: str | Path) -> None:
    """Truncate an image so that its header still parses but its pixels do not decode."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def run_cli(argv: list[str]) -> int:
    """Parse ``argv`` the way perlkit.cli will (via add_data_commands) and call the handler."""
    parser = argparse.ArgumentParser(prog="perlkit")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------- check


def test_check_all_present(world: Path) -> None:
    reports = [check_dataset(n, world) for n in DATASET_NAMES]
    assert all(r.ok and r.status == "present" for r in reports), format_report(reports)
    pets = reports[DATASET_NAMES.index("oxford_pets")]
    assert pets.num_classes == (N_CLASSES, N_CLASSES)
    assert pets.counts["test"] == (10, 10) and pets.corrupt == [] and pets.missing_files == []
    assert pets.expected_source.endswith("perlkit_expected.json")


def test_check_missing(tmp_path: Path) -> None:
    r = check_dataset("sun397", tmp_path)
    assert r.status == "missing" and not r.ok
    assert str(tmp_path / "sun397") in r.message and "princeton" in r.message
    assert r.counts["train"] == (0, 15_880)  # published counts without perlkit_expected.json


def test_check_incomplete_split_file(tmp_path: Path) -> None:
    make_world(tmp_path, ["ucf101"])
    (tmp_path / "ucf101" / "split_zhou_UCF101.json").unlink()
    r = check_dataset("ucf101", tmp_path)
    assert r.status == "incomplete" and str(tmp_path / "ucf101" / "split_zhou_UCF101.json") in r.message


def test_check_incomplete_missing_images_and_counts(tmp_path: Path) -> None:
    make_world(tmp_path, ["oxford_flowers", "imagenet"])
    ds = load_dataset("oxford_flowers", tmp_path)
    gone = ds.test[0].impath
    Path(gone).unlink()
    r = check_dataset("oxford_flowers", tmp_path)
    assert r.status == "incomplete" and r.missing_files == [gone]
    assert r.counts["test"] == (9, 10)
    shutil.rmtree(tmp_path / "imagenet" / "images" / "train" / sorted(
        p.name for p in (tmp_path / "imagenet" / "images" / "train").iterdir())[0])
    r2 = check_dataset("imagenet", tmp_path)
    assert r2.status == "incomplete" and r2.counts["train"][0] < r2.counts["train"][1]
    text = format_report([r, r2])
    assert "missing file: " + gone in text and "train:" in text


def test_check_corrupt_image_named(tmp_path: Path) -> None:
    make_world(tmp_path, ["caltech101"])
    bad = load_dataset("caltech101", tmp_path).val[3].impath
    corrupt(bad)
    r = check_dataset("caltech101", tmp_path)
    assert r.status == "corrupt" and r.corrupt == [bad]
    assert "unreadable image: " + bad in format_report([r])
    assert check_dataset("caltech101", tmp_path, verify_images=False).status == "present"


def test_format_report_table(world: Path, tmp_path: Path) -> None:
    text = format_report([check_dataset("oxford_pets", world), check_dataset("dtd", tmp_path)])
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "status", "classes", "train", "val", "test", "corrupt"]
    assert lines[1].split()[:3] == ["OxfordPets", "present", "5/5"]
    assert lines[2].split()[:2] == ["DTD", "missing"]
    assert "DTD [missing]" in text


# ------------------------------------------------------------------------------------------- CLI


def test_cli_all_ok(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["data", "check", "--data-root", str(world)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("ImageNet-R", "Flowers102", "FGVCAircraft"))
    assert out.count("present") == 15


def test_cli_env_var_and_alias(world: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("PERLKIT_DATA", str(world))
    assert run_cli(["data", "check", "--dataset", "OxfordPets", "--dataset", "eurosat", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "OxfordPets" in out and "EuroSAT" in out and "ImageNet" not in out


def test_cli_missing_requested_dataset_fails(world: Path, tmp_path: Path, capsys) -> None:
    assert run_cli(["data", "check", "--data-root", str(tmp_path), "--dataset", "dtd"]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and str(tmp_path / "dtd") in out


def test_cli_bad_root_or_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("PERLKIT_DATA", raising=False)
    assert run_cli(["data", "check"]) == 2
    assert "PERLKIT_DATA" in capsys.readouterr().err
    assert run_cli(["data", "check", "--data-root", str(tmp_path), "--dataset", "mnist"]) == 2
    assert "unknown dataset 'mnist'" in capsys.readouterr().err


def test_cli_corrupt_fails_unless_skipped(tmp_path: Path, capsys) -> None:
    make_world(tmp_path, ["eurosat"])
    bad = load_dataset("eurosat", tmp_path).train[0].impath
    corrupt(bad)
    assert run_cli(["data", "check", "--data-root", str(tmp_path), "--dataset", "eurosat"]) == 1
    assert "unreadable image: " + bad in capsys.readouterr().out
    assert run_cli(["data", "check", "--data-root", str(tmp_path), "--dataset", "eurosat", "--skip-corrupt"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and bad in err


def test_cli_incomplete_fails_even_with_skip_corrupt(tmp_path: Path, capsys) -> None:
    make_world(tmp_path, ["eurosat"])
    table = json.loads((tmp_path / "perlkit_expected.json").read_text())
    table["eurosat"]["val"] = 99
    (tmp_path / "perlkit_expected.json").write_text(json.dumps(table))
    assert run_cli(["data", "check", "--data-root", str(tmp_path), "--dataset", "eurosat", "--skip-corrupt"]) == 1
    assert "val: 10 images found, expected 99" in capsys.readouterr().out


def test_standalone_main(world: Path, capsys) -> None:
    assert main(["data", "check", "--data-root", str(world), "--dataset", "dtd", "--no-verify"]) == 0
    assert "DTD" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- loaders


def test_transforms_shapes_and_normalisation() -> None:
    from PIL import Image

    img = Image.new("RGB", (40, 30), (255, 255, 255))
    ev = build_transform(16, train=False)(img)
    assert ev.shape == (3, 16, 16)
    assert torch.allclose(ev[:, 0, 0], (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073]))
                          / torch.tensor([0.26862954, 0.26130258, 0.27577711]), atol=1e-4)
    tr = build_transform(16, train=True)
    names = [type(t).__name__ for t in tr.transforms]
    assert names[:2] == ["RandomResizedCrop", "RandomHorizontalFlip"]
    assert tr.transforms[0].scale == (0.5, 1.0)
    assert tr(img).shape == (3, 16, 16)


def test_loader_deterministic_across_workers(world: Path) -> None:
    items = load_dataset("dtd", world).train
    tf = build_transform(8, train=False)

    def order(workers: int, seed: int) -> list[int]:
        loader = make_loader(items, tf, batch_size=4, shuffle=True, num_workers=workers, seed=seed)
        return [int(y) for _, ys in loader for y in ys]

    a = order(0, 7)
    assert a == order(0, 7) == order(1, 7)
    assert sorted(a) == sorted(d.label for d in items)
    assert a != order(0, 8)
    x, y = next(iter(make_loader(items, tf, batch_size=3, shuffle=False)))
    assert x.shape == (3, 3, 8, 8) and y.tolist() == [d.label for d in items[:3]]


def test_corrupt_image_raises_naming_file(tmp_path: Path) -> None:
    make_world(tmp_path, ["dtd"])
    items = load_dataset("dtd", tmp_path).test
    corrupt(items[1].impath)
    ds = ImageListDataset(items, build_transform(8, train=False))
    ds[0]
    with pytest.raises(DatasetError, match="--skip-corrupt") as exc:
        ds[1]
    assert items[1].impath in str(exc.value)
    loader = make_loader(items, build_transform(8, False), batch_size=4, shuffle=False, num_workers=1)
    with pytest.raises(DatasetError) as exc:
        list(loader)
    assert items[1].impath in str(exc.value)


def test_skip_corrupt_warns_per_file(tmp_path: Path) -> None:
    make_world(tmp_path, ["dtd"])
    items = load_dataset("dtd", tmp_path).test
    bad = [items[1].impath, items[4].impath]
    for p in bad:
        corrupt(p)
    Path(items[6].impath).unlink()  # a vanished file is skipped the same way
    bad.append(items[6].impath)
    with pytest.warns(UserWarning) as rec:
        ds = ImageListDataset(items + items[:2], build_transform(8, False), skip_corrupt=True)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 3 and all(any(p in m for m in msgs) for p in bad)
    assert ds.skipped == bad and len(ds) == len(items) + 2 - 4
    assert all(ds[i][0].shape == (3, 8, 8) for i in range(len(ds)))
    with pytest.warns(UserWarning):
        loader = make_loader(items, build_transform(8, False), batch_size=5, shuffle=True, skip_corrupt=True)
    assert sum(len(y) for _, y in loader) == len(items) - 3
