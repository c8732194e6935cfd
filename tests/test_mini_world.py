"""Tests of the mini world: deterministic rendering and the 15 CoOp layouts of a tiny build."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from perlkit.mini import build_mini_world, default_mini_root
from perlkit.mini.build import DATASET_DIR, IMAGE_DIR, MARKER, SPLIT_FILE, expected_counts
from perlkit.mini.world import BENCHMARKS, WORLD_VERSION, bench_concepts_cached, render_bench_image

SCALE = 0.05


def _png(img) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_renderer_deterministic_per_seed() -> None:
    for bi in range(len(BENCHMARKS)):
        a = _png(render_bench_image(0, bi, 2, 0, 0))
        assert a == _png(render_bench_image(0, bi, 2, 0, 0))
        assert a != _png(render_bench_image(1, bi, 2, 0, 0))
        img = render_bench_image(0, bi, 0 if BENCHMARKS[bi].per_class[0] else 2, 1, 3)
        assert img.size == (64, 64) and img.mode == "RGB"


def test_class_names_unique_and_sizes() -> None:
    for bi, b in enumerate(BENCHMARKS):
        names = [c.name for c in bench_concepts_cached(bi)]
        assert len(set(names)) == len(names), b.key
        assert all(n.isascii() and n.strip() == n for n in names)
        tr, va, te = b.per_class
        if tr:
            assert tr >= 16 and (va >= 4 or b.key == "imagenet"), b.key
        assert te >= 8, b.key
    assert len(BENCHMARKS) == 15


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    assert default_mini_root("1") == tmp_path / f"mini-{WORLD_VERSION}"  # this module is world 1's
    assert default_mini_root() == tmp_path / "mini-2"  # the default world's


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mini_world(tmp_path_factory.mktemp("w") / "mini", seed=0, progress=False, scale=SCALE)


def test_tiny_build_layouts(tiny_world: Path) -> None:
    root = tiny_world
    exp = json.loads((root / "perlkit_expected.json").read_text())
    assert exp == expected_counts(SCALE) and set(exp) == {b.key for b in BENCHMARKS}
    assert "synthetic" in (root / "README.md").read_text()
    assert (root / MARKER).is_file()
    for key, info in exp.items():
        ddir = root / DATASET_DIR[key]
        assert ddir.is_dir(), key
        n_png = sum(1 for _ in ddir.rglob("*.png"))
        assert n_png == info["train"] + info["val"] + info["test"], key  # no two items share a file
        if key in SPLIT_FILE:
            split = json.loads((ddir / SPLIT_FILE[key]).read_text())
            prefix = ddir / IMAGE_DIR[key] if IMAGE_DIR[key] else ddir
            for s in ("train", "val", "test"):
                assert len(split[s]) == info[s], (key, s)
                for rel, label, cname in split[s]:
                    assert (prefix / rel).is_file(), (key, rel)
                    assert 0 <= label < info["num_classes"] and isinstance(cname, str)
            labels = sorted({x[1] for x in split["train"]})
            assert labels == list(range(info["num_classes"]))
    inet = root / "imagenet"
    names = (inet / "classnames.txt").read_text().splitlines()
    assert len(names) == 100 and names[0].startswith("n00000001 ")
    assert len(list((inet / "images" / "train").iterdir())) == 100
    assert sum(1 for _ in (inet / "images" / "train").rglob("*.png")) == exp["imagenet"]["train"]
    assert sum(1 for _ in (inet / "images" / "val").rglob("*.png")) == exp["imagenet"]["test"]
    air = root / "fgvc_aircraft"
    variants = (air / "variants.txt").read_text().splitlines()
    assert len(variants) == exp["fgvc_aircraft"]["num_classes"]
    for s in ("train", "val", "test"):
        lines = (air / f"images_variant_{s}.txt").read_text().splitlines()
        assert len(lines) == exp["fgvc_aircraft"][s]
        for ln in lines:
            iid, var = ln.split(" ", 1)
            assert var in variants and (air / "images" / f"{iid}.png").is_file()
    cat = json.loads((root / "oxford_flowers" / "cat_to_name.json").read_text())
    assert len(cat) == exp["oxford_flowers"]["num_classes"]
    v2 = root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    assert sorted(int(p.name) for p in v2.iterdir()) == list(range(100))
    for d, sub, n in (("imagenet-sketch", "images", 100), ("imagenet-adversarial", "imagenet-a", 40),
                      ("imagenet-rendition", "imagenet-r", 40)):
        assert (root / d / "classnames.txt").is_file()
        assert len(list((root / d / sub).iterdir())) == n
    assert sorted(p.name for p in (root / "eurosat" / "2750").iterdir())[0] == "AnnualCrop"


def test_rebuild_byte_identical_and_reuse(tiny_world: Path, tmp_path: Path) -> None:
    marker_mtime = (tiny_world / MARKER).stat().st_mtime_ns
    assert build_mini_world(tiny_world, seed=0, progress=False, scale=SCALE) == tiny_world  # reused
    assert (tiny_world / MARKER).stat().st_mtime_ns == marker_mtime
    again = build_mini_world(tmp_path / "mini", seed=0, progress=False, scale=SCALE)
    assert _tree_digest(again) == _tree_digest(tiny_world)


def test_unmarked_folder_is_refused_and_kept(tmp_path: Path) -> None:
    """A folder perlkit did not finish building may hold the user's files: refused, nothing deleted."""
    from perlkit.mini.build import MiniWorldError

    root = tmp_path / "mini"
    (root / "imagenet").mkdir(parents=True)
    (root / "imagenet" / "junk.png").write_bytes(b"x")
    with pytest.raises(MiniWorldError, match=str(root)):
        build_mini_world(root, seed=0, progress=False, scale=0.01)
    assert (root / "imagenet" / "junk.png").read_bytes() == b"x" and not (root / MARKER).exists()
    assert not any(p.name.startswith(".mini.tmp") for p in tmp_path.iterdir())
