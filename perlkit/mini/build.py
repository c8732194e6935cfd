"""Write the 15 mini benchmarks as PNG files in the exact CoOp/Dassl folder layouts, atomically."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import multiprocessing as mp
import numbers
import os
import shutil
import signal
from pathlib import Path

from tqdm.auto import tqdm

from perlkit.data.registry import SPECS
from perlkit.files import cache_root, code_fingerprint, remove_stale_temps, temp_sibling
from perlkit.mini.world import Bench
from perlkit.mini.worlds import DEFAULT_WORLD, get_world, shipped_world

SPLITS = ("train", "val", "test")
MARKER = "BUILD_COMPLETE"


class MiniWorldError(ValueError):
    """The mini world cannot be built as asked (a folder holding other files, a bad seed or scale): says what to do."""


#: the code that decides a world's pixels, by version (world 2 draws with world 1's renderer and its own additions)
WORLD_CODE = {"1": ("world.py", "render.py"), "2": ("world.py", "render.py", "world2.py", "render2.py")}


@functools.cache
def world_fingerprint(world: str = DEFAULT_WORLD) -> str:
    """What decides a mini world's pixels: the renderer and world code (syntax only) and the world version
    (bumped with any change to how ``build_mini_world`` writes files). Results on that world carry it, so a new world
    makes them stale. Computed once a process (parsing the renderer takes ~0.1 s; every result lookup asks)."""
    design = shipped_world(world)
    code = code_fingerprint([Path(__file__).with_name(name) for name in WORLD_CODE[design.version]])
    return f"mini-world-{design.module.WORLD_VERSION}-{code[:16]}"


def default_mini_root(world: str = DEFAULT_WORLD) -> Path:
    """Where a mini world lives by default: $PERLKIT_CACHE (or ~/.cache/perlkit) / mini-<version>."""
    return cache_root() / f"mini-{get_world(world).module.WORLD_VERSION}"


def split_counts(b: Bench, scale: float) -> tuple[int, int, int]:
    """Per-class images in train/val/test after scaling (at least 1 where the full size is non-zero)."""
    return tuple(0 if n == 0 else max(1, int(math.ceil(n * scale))) for n in b.per_class)  # type: ignore[return-value]


def wnid(label: int) -> str:
    """Synthetic WordNet-style id of a mini-ImageNet class."""
    return f"n{label + 1:08d}"


def _folder(name: str) -> str:
    return name.replace(" ", "_")


def _png_bytes(img) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def plan_items(b: Bench, bench_index: int, scale: float, world: str = DEFAULT_WORLD) -> list[tuple[int, int, int, str]]:
    """All (split, label, i, relpath-from-dataset-dir) items of a benchmark, in label order."""
    concepts = get_world(world).module.bench_concepts_cached(bench_index)
    counts = split_counts(b, scale)
    items = []
    serial = 0
    for split in range(3):
        for label, c in enumerate(concepts):
            for i in range(counts[split]):
                serial += 1
                items.append((split, label, i, _relpath(b, split, label, c.name, i, serial)))
    return items


def _relpath(b: Bench, split: int, label: int, name: str, i: int, serial: int) -> str:
    f = _folder(name)
    k = b.key
    if k == "imagenet":
        return f"images/{'train' if split == 0 else 'val'}/{wnid(label)}/{wnid(label)}_{i:05d}.png"
    if k == "caltech101":
        return f"101_ObjectCategories/{f}/image_{serial:05d}.png"
    if k == "oxford_pets":
        return f"images/{f}_{serial}.png"
    if k == "stanford_cars":
        return f"{'cars_test' if split == 2 else 'cars_train'}/{serial:05d}.png"
    if k == "oxford_flowers":
        return f"jpg/image_{serial:05d}.png"
    if k == "food101":
        return f"images/{f}/{serial:06d}.png"
    if k == "fgvc_aircraft":
        return f"images/{1000000 + serial:07d}.png"
    if k == "sun397":
        return f"SUN397/{f[0]}/{f}/sun_{serial:06d}.png"
    if k == "dtd":
        return f"images/{f}/{f}_{serial:04d}.png"
    if k == "eurosat":
        return f"2750/{_EUROSAT_FOLDER[name]}/{_EUROSAT_FOLDER[name]}_{serial}.png"
    if k == "ucf101":
        return f"UCF-101-midframes/{f}/v_{f}_g{serial // 7 + 1:02d}_c{serial % 7 + 1:02d}.png"
    if k == "imagenet_v2":
        return f"imagenetv2-matched-frequency-format-val/{label}/{i:05d}.png"
    if k == "imagenet_sketch":
        return f"images/{wnid(label)}/sketch_{i:05d}.png"
    if k == "imagenet_a":
        return f"imagenet-a/{wnid(_AR_LABEL[label])}/a_{i:05d}.png"
    if k == "imagenet_r":
        return f"imagenet-r/{wnid(_AR_LABEL[label])}/r_{i:05d}.png"
    raise KeyError(k)


def _eurosat_folders() -> dict[str, str]:
    from perlkit.mini.world import EUROSAT_NAMES
    return {v: k for k, v in EUROSAT_NAMES.items()}


_EUROSAT_FOLDER = _eurosat_folders()
_AR_LABEL = [i for i in range(100) if i % 5 in (1, 3)]

# the layout comes from the readers' own registry, so the mini world is written exactly where they look
DATASET_DIR = {key: spec.folder for key, spec in SPECS.items()}
SPLIT_FILE = {key: spec.split_file for key, spec in SPECS.items() if spec.split_file}
# the image dir that split-zhou relpaths are relative to (Cars: the dataset dir itself)
IMAGE_DIR = {key: "" if SPECS[key].paths_relative_to_dataset_dir else SPECS[key].image_dir for key in SPLIT_FILE}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _meta_files(b: Bench, items: list[tuple[int, int, int, str]], world: str = DEFAULT_WORLD) -> dict[str, bytes]:
    """Split files, class-name files and other metadata of a benchmark (relpath -> bytes)."""
    W = get_world(world).module  # noqa: N806
    object_concepts = W.DOMAINS["object"]
    concepts = W.bench_concepts_cached([x.key for x in W.BENCHMARKS].index(b.key))
    out: dict[str, bytes] = {}
    if b.domain == "object" and b.key != "caltech101":
        out["classnames.txt"] = _text([f"{wnid(i)} {c.name}" for i, c in enumerate(object_concepts())])
    if b.key in SPLIT_FILE:
        prefix = IMAGE_DIR[b.key]
        split: dict[str, list] = {"train": [], "val": [], "test": []}
        for s, label, _i, rel in items:
            r = rel[len(prefix) + 1:] if prefix else rel
            split[SPLITS[s]].append([r, label, concepts[label].name])
        out[SPLIT_FILE[b.key]] = json.dumps(split, indent=None).encode()
    if b.key == "oxford_flowers":
        out["cat_to_name.json"] = json.dumps({str(i + 1): c.name for i, c in enumerate(concepts)}, indent=1).encode()
    if b.key == "fgvc_aircraft":
        out["variants.txt"] = _text([c.name for c in concepts])
        for s in range(3):
            out[f"images_variant_{SPLITS[s]}.txt"] = _text(
                [f"{Path(rel).stem} {concepts[label].name}" for sp, label, _i, rel in items if sp == s])
    return out


def expected_counts(scale: float = 1.0, world: str = DEFAULT_WORLD) -> dict[str, dict[str, int]]:
    """perlkit_expected.json content: classes and train/val/test counts of each benchmark."""
    W = get_world(world).module  # noqa: N806
    out = {}
    for bi, b in enumerate(W.BENCHMARKS):
        n = len(W.bench_concepts_cached(bi))
        tr, va, te = split_counts(b, scale)
        out[b.key] = {"num_classes": n, "train": tr * n, "val": va * n, "test": te * n}
    return out


README = """# perlkit mini world (version {version})

This folder is the **perlkit mini world**: 15 small *synthetic* benchmarks rendered procedurally by
`perlkit mini build` (seed {seed}, scale {scale}). They are **not** the real ImageNet/CoOp datasets; they only copy
their roles (a 100-class source, 10 targets with their own vocabularies and domains, 4 shifted versions of the
source) and their exact CoOp/Dassl folder layouts and split-file formats, so that the real readers read them.
`perlkit_expected.json` lists classes and split sizes. Rebuilding with the same seed gives byte-identical files.
"""


def _config(seed: int, scale: float, world: str = DEFAULT_WORLD) -> dict:
    """What a build's marker must say for it to be reused: world 2 also records its code's fingerprint, since its
    version stays "2" while its design changes (a stale build was once reused and calibrated)."""
    config = {"world_version": get_world(world).module.WORLD_VERSION, "seed": seed, "scale": scale}
    # world 1's builds predate the code record; every later world keeps it, whichever world is the default
    return config if get_world(world).version == "1" else {**config, "code": world_fingerprint(world)}


def is_complete(root: Path, seed: int = 0, scale: float = 1.0, world: str = DEFAULT_WORLD) -> bool:
    """True when root holds a finished build of this world version, seed and scale."""
    m = root / MARKER
    if not m.is_file():
        return False
    info = _marker_info(root)
    return info is not None and info.get("config") == _config(seed, scale, world)


def _marker_info(root: Path) -> dict | None:
    """The parsed marker of a world perlkit built at root, or None when there is none (or it is not perlkit's)."""
    try:
        info = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(info, dict) and isinstance(info.get("config"), dict) and "world_version" in info["config"]
    return info if ok else None


def _own_entries() -> set[str]:
    """Top-level names a mini world build writes (anything else in the folder belongs to someone else)."""
    return set(DATASET_DIR.values()) | {"perlkit_expected.json", "README.md", MARKER}


def check_replaceable(root: Path) -> None:
    """Refuse a target that holds anything perlkit did not build, before any work (and again before replacing it)."""
    if not root.exists() and not root.is_symlink():
        return
    if not root.is_dir():
        raise MiniWorldError(f"{root} exists and is not a folder; pass --root a new or empty folder for the mini world")
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        return
    info = _marker_info(root)
    if info is None:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise MiniWorldError(
            f"{root} is not empty ({shown}) and is not a mini world built by perlkit (no valid {MARKER} file); "
            f"perlkit will not delete or overwrite it. Pass --root a new or empty folder (e.g. {root / 'mini-world'}), "
            "or remove the folder yourself if it is an old mini world.")
    foreign = [e for e in entries if e not in _own_entries()]
    if foreign:
        raise MiniWorldError(
            f"{root} is a mini world built by perlkit ({info['config']}) but also holds files perlkit did not write "
            f"({', '.join(foreign[:5])}); move them out before rebuilding it with another seed or scale, or pass "
            "--root another folder.")


def check_config(seed: int, scale: float) -> tuple[int, float]:
    """Refuse a seed or scale that would fail mid-build or label a world with a size it does not have."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise MiniWorldError(f"mini world seed must be a non-negative integer, got {seed!r}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise MiniWorldError(f"mini world scale must be a fraction of the images per class in (0, 1], got {scale!r}")
    return int(seed), scale if isinstance(scale, int | float) else float(scale)


def _install(tmp: Path, root: Path, seed: int, scale: float, world: str = DEFAULT_WORLD) -> None:
    """Move a finished build into place; a former perlkit world is moved into a temp sibling first, then deleted."""
    if is_complete(root, seed, scale, world):  # another process finished the same build meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return
    check_replaceable(root)  # again: something may have been put there while rendering
    old = None
    if root.is_dir() and any(root.iterdir()):
        old = temp_sibling(root, "old")
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops them (no traceback from every worker, no hang)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_png(job: tuple[str, int, int, int, int, int]) -> bytes:
    return _png_bytes(get_world(job[0]).module.render_bench_image(*job[1:]))


def build_mini_world(root: Path | None = None, seed: int = 0, progress: bool = True, scale: float = 1.0,
                     workers: int | None = None, world: str = DEFAULT_WORLD) -> Path:
    """Render all 15 mini benchmarks under root (atomically: temp sibling + os.replace); reuse a complete build.

    Every image has its own RNG stream, so the bytes do not depend on ``workers`` (default: up to 2 processes).
    A folder holding anything but a mini world perlkit built is refused (MiniWorldError), never deleted; temp
    folders of killed builds are removed, and this build's own on any failure.
    """
    seed, scale = check_config(seed, scale)
    world = shipped_world(world).version  # an unknown version or a candidate design fails here, before any work
    root = Path(root) if root is not None else default_mini_root(world)
    remove_stale_temps(root)
    if is_complete(root, seed, scale, world):
        return root
    check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(root, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _render_into(tmp, seed, scale, progress, workers, world)
        _install(tmp, root, seed, scale, world)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _render_into(tmp: Path, seed: int, scale: float, progress: bool, workers: int | None,
                 world: str = DEFAULT_WORLD) -> None:
    """Write every image, split file and the marker of one world into the (new, empty) folder tmp."""
    manifest = hashlib.sha256()
    plans = [(bi, b, plan_items(b, bi, scale, world)) for bi, b in enumerate(get_world(world).module.BENCHMARKS)]
    total = sum(len(p) for _, _, p in plans)
    bar = tqdm(total=total, desc="mini world", disable=not progress, unit="img")
    workers = max(1, min(os.cpu_count() or 1, 2)) if workers is None else workers
    pool = mp.get_context("fork").Pool(workers, initializer=_ignore_sigint) if workers > 1 else None
    finished = False
    try:
        for bi, b, items in plans:
            ddir = tmp / DATASET_DIR[b.key]
            jobs = [(world, seed, bi, split, label, i) for split, label, i, _rel in items]
            datas = pool.imap(_render_png, jobs, chunksize=32) if pool else map(_render_png, jobs)
            for (_s, _l, _i, rel), data in zip(items, datas, strict=True):
                _write(ddir / rel, data)
                manifest.update(f"{b.key}/{rel}\0".encode() + hashlib.sha256(data).digest())
                bar.update(1)
            for rel, data in _meta_files(b, items, world).items():
                _write(ddir / rel, data)
                manifest.update(f"{b.key}/{rel}\0".encode() + hashlib.sha256(data).digest())
        finished = True
    finally:
        if pool is not None:  # on Ctrl-C or an error, stop the workers: close() would wait for the queued images
            if finished:
                pool.close()
            else:
                pool.terminate()
            pool.join()
    bar.close()
    exp = json.dumps(expected_counts(scale, world), indent=1).encode()
    _write(tmp / "perlkit_expected.json", exp)
    version = get_world(world).module.WORLD_VERSION
    _write(tmp / "README.md", README.format(version=version, seed=seed, scale=scale).encode())
    manifest.update(exp)
    marker = {"config": _config(seed, scale, world), "manifest_sha256": manifest.hexdigest(), "num_images": total}
    (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")


def ensure_mini_world(root: Path | None = None, world: str = DEFAULT_WORLD) -> Path:
    """Return the default-seed mini world at root, building it first if it is absent or incomplete."""
    return build_mini_world(root, seed=0, progress=True, world=world)
