"""``perlkit smoke``: every method trains and evaluates end to end on the paper profile's path, in minutes.

Unit tests run tiny models on the CPU; they never see a GPU, bf16 autocast, 1,000 classes, loader worker processes or
a ViT-B/16. This command does, the way a user runs the paper profile. It writes a synthetic data root in the CoOp
layout (the readers' own registry, ``perlkit.data.registry.SPECS``, says where every folder and split file goes) with
the real benchmarks' class counts, then runs, through the real readers, few-shot sampler, loaders, engine and result
store (``perlkit.experiments.Session`` with the ``paper`` profile):

* a base-to-novel run of every registered method on DTD, EuroSAT and SUN397 (397 classes), its training capped at
  ``--steps`` optimiser steps;
* an ImageNet-transfer run of every method with one training step (the text side over all 1,000 classes), evaluated
  on ImageNet and the 14 other test sets, as the cross-dataset and domain-generalisation chapters do;

with random weights of the chosen architecture (by default saved once to a file in the cache and loaded through the
local-file path, as OpenAI's weights are) on the chosen device. Nothing in the repository is written unless ``--ship``.

Synthetic data: 32x32 JPEGs (a pool of 64 distinct random images, so that writing ~60,000 files takes seconds), class
names from the registry where it has them (EuroSAT, Caltech101's renamed classes), pseudo-words elsewhere. The full
version has every class of every benchmark; DTD has CoOp's published sizes in every split, EuroSAT and SUN397 in
train and val; the other training splits hold 16 images a class (20 for ImageNet) and the test splits are small, so
that the run fits in about four minutes on one H100 (``perlkit_expected.json`` in the root lists every dataset that is
not at its published size, as the readers require). ``--quick`` writes a few classes a dataset and runs tiny-clip on
the CPU in seconds (the unit tests run it). The decode cost of real photos is not measured (the JPEGs are tiny).

JSON record (``perlkit-smoke-v1``)::

    schema, ok (every run passed), failed ["method/dataset", ...], device ("cuda" | "cpu"), device_name,
    provenance (perlkit.files.provenance), model, weights ("random" | "random-file" | tag or path), pretrained,
    quick, seconds (wall time of the whole command), backbone_seconds,
    settings {methods, datasets, steps, transfer_steps, shots, seed, protocol, template, eval_batch_size, num_workers,
              threads, autocast, test_per_class}
    data {root, written, write_seconds, files, image_px, read_seconds, read_errors {dataset: message},
          datasets {key: {num_classes, train, val, test, published_sizes}}}
    runs {method: {dataset: {
        kind ("b2n" | "imagenet_transfer"), ok, error (null or "Type: message"), traceback (last frames, or null),
        seconds (the whole run: build, sampling, training, evaluation, result file),
        trainable_params, train_steps, train_images, train_seconds, train_images_per_s,
        eval_images, eval_seconds, eval_images_per_s (every test set of the run, classifiers included),
        cuda_allocated_before_mb, cuda_max_allocated_mb (torch.cuda.max_memory_allocated, reset per run; null on CPU),
        metrics (accuracies; meaningless with random weights, they show that evaluation ran)}}}
    notes [str, ...]

Train and eval images per second include data loading (the engine's and the protocol's own clocks); the dataset
"imagenet" in ``--datasets`` and in ``runs`` stands for the ImageNet-transfer run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from perlkit.backbone import create_backbone
from perlkit.bench.record import SMOKE_MARK
from perlkit.data import B2N_DATASETS, DATASET_NAMES, PUBLISHED_COUNTS, Expected, canonical_name
from perlkit.data.registry import EXPECTED_FILE, RENAMES, SPECS
from perlkit.experiments import ResultStore, RunSpec, Session
from perlkit.files import (
    REPO_DATA,
    atomic_write_bytes,
    atomic_write_json,
    cache_root,
    device_name,
    output_root,
    provenance,
    remove_stale_temps,
    temp_sibling,
)
from perlkit.methods import list_methods
from perlkit.profiles import RANDOM_WEIGHTS, get_profile

SCHEMA = "perlkit-smoke-v1"
DATA_VERSION = 1
FULL_MODEL, QUICK_MODEL = "ViT-B-16", "tiny-clip"
DEFAULT_DATASETS = ("dtd", "eurosat", "sun397", "imagenet")
FULL_STEPS, QUICK_STEPS, TRANSFER_STEPS = 20, 2, 1
IMAGE_PX = 32
POOL_SIZE = 64
MARKER = "SMOKE_DATA_COMPLETE"
TRANSFER = "imagenet"  # in --datasets and in the record: the ImageNet-transfer run
RANDOM_FILE = "random-file"
SPLITS = ("train", "val", "test")


class SmokeError(ValueError):
    """A smoke run that cannot start (a data root that is not ours, an unknown method, no GPU): what to do instead."""


# ------------------------------------------------------------------------------------------- synthetic data
def data_shapes(quick: bool, test_per_class: int | None = None) -> dict[str, Expected]:
    """Class count and split sizes of every synthetic dataset (the full version: every class of every benchmark).

    ``test_per_class`` caps the test split (a CPU check of ViT-B/16 evaluates a handful of images).
    """
    shapes: dict[str, Expected] = {}
    for key in DATASET_NAMES:
        real = PUBLISHED_COUNTS[key]
        if quick:
            classes = {"imagenet": 6, "imagenet_v2": 6, "imagenet_sketch": 6, "imagenet_a": 3, "imagenet_r": 3}
            n = classes.get(key, min(real.num_classes, 4))
            shape = Expected(n, 2 * n if real.train else 0, n if real.val else 0, n)
        elif key == "dtd":
            shape = real  # every split at CoOp's published size: checked against the published counts
        elif key in ("eurosat", "sun397"):
            test = {"eurosat": 100, "sun397": 5}[key] * real.num_classes
            shape = Expected(real.num_classes, real.train, real.val, test)
        elif key == "imagenet":
            shape = Expected(real.num_classes, 20 * real.num_classes, 0, 2 * real.num_classes)
        elif real.train == 0:  # ImageNet-V2, -Sketch, -A, -R: test sets only
            shape = Expected(real.num_classes, 0, 0, real.num_classes)
        else:
            n = real.num_classes
            shape = Expected(n, 16 * n, 4 * n, 2 * n)
        if test_per_class is not None:
            test = min(shape.test, test_per_class * shape.num_classes)
            shape = Expected(shape.num_classes, shape.train, shape.val, test)
        shapes[key] = shape
    return shapes


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cr", "dr", "gl", "pl", "st")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")


def synthetic_classnames(key: str, n: int) -> list[tuple[str, str]]:
    """(folder name, class name) of ``n`` classes: the registry's real names where it has them, else pseudo-words.

    EuroSAT's folders and Caltech101's renamed folders keep their raw names, with the renamed class name in the split
    file, as CoOp's split files have them.
    """
    real = list(RENAMES.get(key, {}).items())[:n]
    out = list(real)
    seen = {name for _, name in out}
    rng = random.Random(f"perlkit-smoke-{key}")
    while len(out) < n:
        words = ["".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))
                 for _ in range(rng.choice((1, 1, 2)))]
        name = " ".join(words)
        if name not in seen:
            seen.add(name)
            out.append((name.replace(" ", "_"), name))
    return out


def wnid(label: int) -> str:
    """A WordNet-style folder name for synthetic ImageNet class ``label``."""
    return f"n{label + 1:08d}"


def _per_class(total: int, classes: int) -> list[int]:
    """Spread ``total`` images over ``classes`` as evenly as possible (the first ones get the remainder)."""
    base, extra = divmod(total, classes)
    return [base + (1 if c < extra else 0) for c in range(classes)]


@dataclass
class _Plan:
    """Files of a synthetic root: images (relative path -> pool index) and metadata (relative path -> bytes)."""

    images: dict[str, int] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)

    def image(self, rel: str, label: int, serial: int) -> str:
        self.images[rel] = (label * 7 + serial) % POOL_SIZE
        return rel


def _lines(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _plan_dataset(plan: _Plan, key: str, shape: Expected, imagenet: list[str]) -> None:
    """Add one dataset to the plan in the layout of its reader kind, at the registry's folder, image dir and files."""
    spec = SPECS[key]
    top = spec.folder
    counts = {s: _per_class(getattr(shape, s), shape.num_classes) for s in SPLITS}
    if spec.kind == "zhou":
        prefix = top if spec.paths_relative_to_dataset_dir else f"{top}/{spec.image_dir}"
        classes = synthetic_classnames(key, shape.num_classes)
        split: dict[str, list] = {s: [] for s in SPLITS}
        serial = 0
        for s in SPLITS:
            for label, (folder, name) in enumerate(classes):
                for _ in range(counts[s][label]):
                    serial += 1
                    rel = f"{folder}/{folder}_{serial:06d}.jpg"
                    plan.image(f"{prefix}/{rel}", label, serial)
                    split[s].append([rel, label, name])
        plan.meta[f"{top}/{spec.split_file}"] = json.dumps(split).encode()
    elif spec.kind == "aircraft":
        names = [name for _, name in synthetic_classnames(key, shape.num_classes)]
        plan.meta[f"{top}/variants.txt"] = _lines(names)
        serial = 0
        for s in SPLITS:
            lines = []
            for label, name in enumerate(names):
                for _ in range(counts[s][label]):
                    serial += 1
                    image_id = f"{1000000 + serial:07d}"
                    plan.image(f"{top}/{spec.image_dir}/{image_id}.jpg", label, serial)
                    lines.append(f"{image_id} {name}")
            plan.meta[f"{top}/images_variant_{s}.txt"] = _lines(lines)
    else:  # the ImageNet family: classnames.txt, one folder a class
        plan.meta[f"{top}/classnames.txt"] = _lines([f"{wnid(i)} {name}" for i, name in enumerate(imagenet)])
        if spec.kind == "imagenet":
            folders = {"train": "train", "test": "val"}
            labels = list(range(shape.num_classes))
        elif spec.kind == "imagenet_subset":  # -A / -R: a spread-out subset of ImageNet's classes
            folders = {"test": ""}
            labels = sorted({round(j * len(imagenet) / shape.num_classes) for j in range(shape.num_classes)})
        else:
            folders = {"test": ""}
            labels = list(range(shape.num_classes))
        for s, sub in folders.items():
            for index, label in enumerate(labels):
                folder = str(label) if spec.kind == "imagenet_v2" else wnid(label)
                where = "/".join(p for p in (top, spec.image_dir, sub, folder) if p)
                for i in range(counts[s][index]):
                    plan.image(f"{where}/{folder}_{s}_{i:05d}.jpg", label, i)


def plan_data_root(shapes: dict[str, Expected]) -> _Plan:
    """Every file of a synthetic root, plus ``perlkit_expected.json`` for the datasets not at published sizes."""
    plan = _Plan()
    imagenet = [name for _, name in synthetic_classnames("imagenet", shapes["imagenet"].num_classes)]
    for key, shape in shapes.items():
        if SPECS[key].kind in ("imagenet_v2", "imagenet_sketch") and shape.num_classes != len(imagenet):
            raise SmokeError(f"{key} must have ImageNet's {len(imagenet)} classes (it reads its classnames.txt)")
        _plan_dataset(plan, key, shape, imagenet)
    expected = {k: asdict(s) for k, s in shapes.items() if s != PUBLISHED_COUNTS[k]}
    plan.meta[EXPECTED_FILE] = json.dumps(expected, indent=1, sort_keys=True).encode()
    return plan


def _jpeg_pool() -> list[bytes]:
    """POOL_SIZE distinct small random JPEGs, the same bytes every time."""
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(POOL_SIZE):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (IMAGE_PX, IMAGE_PX, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        pool.append(buffer.getvalue())
    return pool


def _data_config(shapes: dict[str, Expected]) -> dict[str, Any]:
    return {"version": DATA_VERSION, "image_px": IMAGE_PX, "shapes": {k: asdict(v) for k, v in shapes.items()}}


def default_data_root(shapes: dict[str, Expected]) -> Path:
    """``<cache>/smoke/data-<digest of the sizes>``: one folder per set of sizes, reused by later runs."""
    digest = hashlib.sha1(json.dumps(_data_config(shapes), sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / "smoke" / f"data-{digest}"


def is_complete(root: Path, shapes: dict[str, Expected]) -> bool:
    """Whether ``root`` holds a finished synthetic root of exactly these sizes."""
    try:
        info = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("config") == _data_config(shapes)


def build_data_root(
    shapes: dict[str, Expected], root: str | os.PathLike | None = None, progress: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Write the synthetic root (or reuse a complete one); returns the root and what was done.

    Written into a temporary sibling folder and renamed into place when complete, so a killed run never leaves a
    half-written root behind; an existing folder that is not a complete root of these sizes is refused, never
    deleted or written into (only an empty folder is replaced).
    """
    root = Path(root) if root is not None else default_data_root(shapes)
    info: dict[str, Any] = {"root": str(root), "written": False, "write_seconds": 0.0, "files": None}
    if is_complete(root, shapes):
        info["files"] = json.loads((root / MARKER).read_text()).get("files")
        return root, info
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SmokeError(
            f"{root} exists and is not a complete smoke data root of these sizes; the smoke never writes into or "
            "deletes a folder it did not create: pass another --root (or none, for the cache's)"
        )
    start = time.perf_counter()
    plan = plan_data_root(shapes)
    pool = _jpeg_pool()
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)  # what killed smoke builds left behind
    tmp = temp_sibling(root, "tmp")
    tmp.mkdir()
    try:
        for folder in sorted({str(Path(rel).parent) for rel in (*plan.images, *plan.meta)}):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        for rel, data in plan.meta.items():
            (tmp / rel).write_bytes(data)
        items = list(plan.images.items())
        chunks = [items[i:i + 512] for i in range(0, len(items), 512)]

        def write(chunk: list[tuple[str, int]]) -> int:
            for rel, index in chunk:
                with open(tmp / rel, "wb") as handle:
                    handle.write(pool[index])
            return len(chunk)

        bar = tqdm(total=len(items), desc="smoke data root", unit="img", disable=not progress)
        with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as threads:
            for done in threads.map(write, chunks):
                bar.update(done)
        bar.close()
        (tmp / MARKER).write_text(json.dumps({"config": _data_config(shapes), "files": len(items)}, indent=1) + "\n")
        try:
            os.replace(tmp, root)  # onto a missing or empty folder
        except OSError:
            if not is_complete(root, shapes):  # another process finished the same root first: use theirs
                raise
            shutil.rmtree(tmp)
            return root, info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours, half-written
        raise
    info.update(written=True, write_seconds=round(time.perf_counter() - start, 2), files=len(plan.images))
    return root, info


# ------------------------------------------------------------------------------------------- weights
def random_weights_file(model: str) -> Path:
    """Random weights of ``model`` saved once to ``<cache>/smoke/random-<model>.pt`` (seed 0), for the file path."""
    path = cache_root() / "smoke" / f"random-{model}.pt"
    if not path.is_file():
        clip = create_backbone(model, None).model  # seeded inside, without touching the caller's RNG
        buffer = io.BytesIO()
        torch.save(clip.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return path


# ------------------------------------------------------------------------------------------- the runs
class _MeteredSession(Session):
    """The protocols' Session, adding up every evaluation's images and seconds (classifier and loading included)."""

    def reset_meter(self) -> None:
        self.eval_images, self.eval_seconds = 0, 0.0

    def score(self, *args: Any, **kwargs: Any) -> Any:
        result = super().score(*args, **kwargs)
        self.eval_images += result.total
        self.eval_seconds += result.seconds
        return result


@dataclass(frozen=True)
class SmokeSettings:
    """What one smoke run does; ``settings_for`` fills the defaults of the full and the quick version."""

    model: str
    pretrained: str
    device: str
    quick: bool
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    steps: int
    transfer_steps: int = TRANSFER_STEPS
    test_per_class: int | None = None


def settings_for(
    *, quick: bool = False, device: str | None = None, model: str | None = None, pretrained: str | None = None,
    methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None, steps: int | None = None,
    test_per_class: int | None = None,
) -> SmokeSettings:
    """Defaults filled in and every name checked before anything is written or built."""
    known = list_methods()
    methods = list(dict.fromkeys(methods or known))
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise SmokeError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(known)}")
    chosen = []
    for name in datasets or DEFAULT_DATASETS:
        key = canonical_name(name)
        if key != TRANSFER and key not in B2N_DATASETS:
            raise SmokeError(f"{key} has no training split; choose base-to-novel datasets "
                             f"({', '.join(B2N_DATASETS[1:])}) or '{TRANSFER}' (the ImageNet-transfer run)")
        chosen.append(key)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise SmokeError("--device cuda was asked for but torch sees no CUDA device")
    if steps is not None and steps < 1:
        raise SmokeError("--steps must be at least 1 (a smoke run trains)")
    if test_per_class is not None and test_per_class < 1:
        raise SmokeError("--test-per-class must be at least 1")
    return SmokeSettings(
        model=model or (QUICK_MODEL if quick else FULL_MODEL), pretrained=pretrained or RANDOM_FILE, device=device,
        quick=quick, methods=tuple(methods), datasets=tuple(dict.fromkeys(chosen)),
        steps=steps or (QUICK_STEPS if quick else FULL_STEPS), test_per_class=test_per_class,
    )


def _mb(value: int) -> float:
    return round(value / 2**20, 1)


def _rate(images: int, seconds: float) -> float | None:
    return round(images / seconds, 2) if images and seconds > 0 else None


def _release(device: torch.device, collect: bool = False) -> None:
    """Hand freed CUDA blocks back before the next run; ``collect`` also breaks the cycles a caught error leaves
    (a full ``gc.collect`` takes ~0.5 s with a CLIP loaded, so it is kept for failures)."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def run_one(session: _MeteredSession, spec: RunSpec) -> dict[str, Any]:
    """One run through ``Session.run`` (recomputed), timed and measured; a failure is recorded, never raised."""
    device = session.backbone.device
    record: dict[str, Any] = {
        "kind": spec.kind, "ok": False, "error": None, "traceback": None, "seconds": None, "trainable_params": None,
        "train_steps": None, "train_images": None, "train_seconds": None, "train_images_per_s": None,
        "eval_images": None, "eval_seconds": None, "eval_images_per_s": None,
        "cuda_allocated_before_mb": None, "cuda_max_allocated_mb": None, "metrics": None,
    }
    _release(device)
    if device.type == "cuda":
        record["cuda_allocated_before_mb"] = _mb(torch.cuda.memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
    session.reset_meter()
    start = time.perf_counter()
    try:
        payload = session.run(spec, recompute=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train = payload["train"]
        record.update(
            ok=True, trainable_params=payload["trainable_params"], train_steps=len(train.get("steps", [])),
            train_images=train.get("images", 0), train_seconds=round(train.get("seconds", 0.0), 3),
            train_images_per_s=_rate(train.get("images", 0), train.get("seconds", 0.0)), metrics=payload["metrics"],
        )
    except Exception as err:  # noqa: BLE001  (a failing method is a result; the others still run)
        record["error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"
        record["traceback"] = "".join(traceback.format_exception(err, limit=-4)).strip()
    record["seconds"] = round(time.perf_counter() - start, 3)
    record.update(eval_images=session.eval_images, eval_seconds=round(session.eval_seconds, 3),
                  eval_images_per_s=_rate(session.eval_images, session.eval_seconds))
    if device.type == "cuda":
        record["cuda_max_allocated_mb"] = _mb(torch.cuda.max_memory_allocated(device))
    _release(device, collect=not record["ok"])
    return record


def _say(message: str) -> None:
    """One line on stderr per phase, with or without progress bars: a run stopped from outside still shows where
    its time went."""
    print(f"perlkit smoke: {message}", file=sys.stderr, flush=True)


def run_smoke(
    settings: SmokeSettings, root: str | os.PathLike | None = None, progress: bool = True, out: Path | None = None,
) -> dict[str, Any]:
    """Write (or reuse) the synthetic root, run every method on every chosen dataset, and return the JSON record;
    with ``out``, the record so far (``"complete": false``) is written there after every run, so a run killed by a
    time limit keeps what it measured."""
    wall = time.perf_counter()
    device = torch.device(settings.device)
    shapes = data_shapes(settings.quick, settings.test_per_class)
    root, data = build_data_root(shapes, root, progress=progress)
    _say(f"data root {root} ready after {time.perf_counter() - wall:.1f} s")
    pretrained = str(random_weights_file(settings.model)) if settings.pretrained == RANDOM_FILE else settings.pretrained
    # tiny-clip: worker start-up and a second OpenMP thread (spin-waiting on a shared machine) would dominate
    overrides = {"num_workers": 0, "threads": 1} if settings.quick else {}
    profile = get_profile("paper", data_root=str(root), model=settings.model, pretrained=pretrained,
                          device=str(device), **overrides)
    store_dir = cache_root() / "smoke" / f"results-{settings.model}-{device.type}"
    session = _MeteredSession(profile, progress=progress, store=ResultStore(profile.store_name, root=store_dir))

    start = time.perf_counter()
    _ = session.backbone  # built before any run, so that its random draws never shift a run's seed
    backbone_seconds = round(time.perf_counter() - start, 2)
    _say(f"{settings.model} loaded on {device} in {backbone_seconds} s")

    # read every dataset the runs need once, so that a run's seconds are its own
    transfer = TRANSFER in settings.datasets
    needed = DATASET_NAMES if transfer else [d for d in settings.datasets if d != TRANSFER]
    start, read_errors = time.perf_counter(), {}
    for name in needed:
        try:
            session.dataset(name)
        except Exception as err:  # noqa: BLE001  (the runs that need it fail with the same message)
            read_errors[name] = f"{type(err).__name__}: {err}"
    data.update(read_seconds=round(time.perf_counter() - start, 2), read_errors=read_errors, image_px=IMAGE_PX,
                datasets={k: {**asdict(s), "published_sizes": s == PUBLISHED_COUNTS[k]} for k, s in shapes.items()})

    specs = []
    for method in settings.methods:
        for dataset in settings.datasets:
            if dataset == TRANSFER:
                specs.append(RunSpec("imagenet_transfer", method, "imagenet", profile="paper",
                                     train_overrides={"max_steps": settings.transfer_steps}))
            else:
                specs.append(RunSpec("b2n", method, dataset, profile="paper",
                                     train_overrides={"max_steps": settings.steps}))
    runs: dict[str, dict[str, Any]] = {m: {} for m in settings.methods}
    bar = tqdm(specs, desc="smoke runs", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.method} {spec.dataset if spec.kind == 'b2n' else 'imagenet transfer'}")
        run = runs[spec.method][spec.dataset] = run_one(session, spec)
        _say(f"{spec.kind} {spec.method} {spec.dataset}: {'ok' if run['ok'] else 'FAILED'} in {run['seconds']:.1f} s")
        if out is not None:
            atomic_write_json(out, _record(settings, device, profile, session, specs, runs, data, wall,
                                           backbone_seconds, complete=False))
    bar.close()
    return _record(settings, device, profile, session, specs, runs, data, wall, backbone_seconds, complete=True)


def _record(settings: SmokeSettings, device: torch.device, profile: Any, session: _MeteredSession,
            specs: list[RunSpec], runs: dict[str, dict[str, Any]], data: dict[str, Any], wall: float,
            backbone_seconds: float, complete: bool) -> dict[str, Any]:
    """The smoke's JSON record from what has run so far."""
    failed = [f"{m}/{d}" for m, cells in runs.items() for d, r in cells.items() if not r["ok"]]
    first = specs[0] if specs else RunSpec("b2n", "zeroshot", "dtd")
    notes = [
        "random weights: accuracies are meaningless; the record shows that every run trains and evaluates",
        f"'{TRANSFER}' is the ImageNet-transfer run: {settings.transfer_steps} training step(s) over all ImageNet "
        "classes, then evaluation on ImageNet and the 14 other test sets",
        f"images are {IMAGE_PX}x{IMAGE_PX} JPEGs: loading costs exclude decoding real photos",
        "the first run of the process also pays one-off costs (CUDA kernels, autocast caches)",
    ]
    if device.type != "cuda":
        notes.append("CPU run: bf16 autocast and CUDA memory were not exercised")
    return {
        "schema": SCHEMA,
        "complete": complete,
        "ok": complete and not failed,
        "failed": failed,
        "device": device.type,
        "device_name": device_name(device),
        "provenance": provenance(device),
        "model": settings.model,
        "weights": "random" if settings.pretrained in (RANDOM_FILE, *RANDOM_WEIGHTS) else settings.pretrained,
        "pretrained": profile.pretrained,
        "quick": settings.quick,
        "seconds": round(time.perf_counter() - wall, 1),
        "backbone_seconds": backbone_seconds,
        "settings": {
            "methods": list(settings.methods), "datasets": list(settings.datasets), "steps": settings.steps,
            "transfer_steps": settings.transfer_steps, "shots": first.shots, "seed": first.seed,
            "protocol": first.protocol, "template": first.template, "eval_batch_size": profile.eval_batch_size,
            "num_workers": profile.num_workers, "threads": torch.get_num_threads(),
            "autocast": "bf16" if device.type == "cuda" else None, "test_per_class": settings.test_per_class,
            "store": str(session.store.write_dir),
        },
        "data": data,
        "runs": runs,
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------- command line
def default_output(device: torch.device | str, model: str, quick: bool, ship: bool) -> Path:
    """``<cache>/bench/paper-<device>-smoke.json`` (``--ship``: the repository's ``data/bench/``).

    The device tag is the device type ('cuda' or 'cpu'); another model than ViT-B/16 is named in the file, and
    ``--quick`` adds ``-quick``.
    """
    folder = (output_root(None, ship, REPO_DATA) or cache_root()) / "bench"  # --ship only from a checkout
    stem = "paper" if quick or model == FULL_MODEL else f"paper-{model}"
    return folder / f"{stem}-{torch.device(device).type}{SMOKE_MARK}{'-quick' if quick else ''}.json"


def _cell(run: dict[str, Any]) -> str:
    if not run["ok"]:
        return "FAILED"
    peak = f" {run['cuda_max_allocated_mb'] / 1024:.1f}G" if run["cuda_max_allocated_mb"] is not None else ""
    return f"ok {run['seconds']:.1f}s{peak}"


def format_table(record: dict[str, Any]) -> str:
    """A plain-text summary for the terminal: one row a method, one column a dataset, then every failure."""
    datasets = record["settings"]["datasets"]
    lines = [
        f"perlkit smoke: {record['model']} ({record['weights']} weights) on {record['device_name']}, "
        f"{record['seconds']:.0f} s; data root {record['data']['root']}",
        f"{'method':<10}" + "".join(f"{d:>20}" for d in datasets),
    ]
    for method, cells in record["runs"].items():
        lines.append(f"{method:<10}" + "".join(f"{_cell(cells[d]):>20}" for d in datasets))
    lines.append("cells: seconds of the run" + (", peak CUDA memory (GiB)" if record["device"] == "cuda" else ""))
    for method, cells in record["runs"].items():
        for dataset, run in cells.items():
            if not run["ok"]:
                lines.append(f"FAILED {method}/{dataset}: {run['error']}")
    lines.append("every run passed" if record["ok"] else f"{len(record['failed'])} run(s) failed")
    return "\n".join(lines)


def cmd_smoke(args: argparse.Namespace) -> int:
    """Run the smoke, write its JSON record, print a table (or the JSON); exit 1 when any run failed."""
    settings = settings_for(
        quick=args.quick, device=args.device, model=args.model, pretrained=args.pretrained, methods=args.methods,
        datasets=args.datasets, steps=args.steps, test_per_class=args.test_per_class,
    )
    out = default_output(settings.device, settings.model, settings.quick, args.ship)
    record = run_smoke(settings, root=args.root, progress=not args.no_progress, out=out)
    atomic_write_json(out, record)
    print(f"perlkit smoke: wrote {out}", file=sys.stderr)
    print(json.dumps(record, indent=2, sort_keys=True) if args.json else format_table(record))
    return 0 if record["ok"] else 1


def add_smoke_command(sub: argparse._SubParsersAction) -> None:
    """Register ``perlkit smoke`` on the CLI's subparsers."""
    p = sub.add_parser(
        "smoke", help="every method trains and evaluates end to end (paper profile, random weights, synthetic data)",
        description="Every method trains and evaluates end to end on the paper profile's path (readers, loaders, "
                    "engine, result store) with random weights, on a synthetic data root of the real benchmarks' "
                    "class counts; writes a JSON record of seconds, images/s, peak CUDA memory and pass/fail. "
                    "Exits 1 when any run failed.",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--model", default=None,
                   help=f"open_clip architecture (default {FULL_MODEL}; --quick: {QUICK_MODEL})")
    p.add_argument("--pretrained", default=None,
                   help=f"'{RANDOM_FILE}' (default: random weights saved once to the cache and loaded from the file), "
                        "'random' (random weights in memory), or an open_clip tag or weights file")
    p.add_argument("--root", default=None, help="where to write the synthetic data root (default: in the cache)")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help=f"subset of the methods (default: all: {', '.join(list_methods())})")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                   help=f"base-to-novel datasets, '{TRANSFER}' for the ImageNet-transfer run "
                        f"(default: {' '.join(DEFAULT_DATASETS)})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps of each base-to-novel run (default {FULL_STEPS}; --quick: {QUICK_STEPS})")
    p.add_argument("--test-per-class", type=int, default=None, metavar="N",
                   help="cap every synthetic test split at N images a class (CPU checks of large models)")
    p.add_argument("--quick", action="store_true",
                   help=f"the shortened CPU version: {QUICK_MODEL}, a few classes and images a dataset (seconds)")
    p.add_argument("--ship", action="store_true", help="write the record into the repository's data/bench/")
    p.add_argument("--json", action="store_true", help="print the JSON record instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=cmd_smoke)
