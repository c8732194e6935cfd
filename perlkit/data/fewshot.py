"""Dassl-exact few-shot sampling (with a JSON cache) and CoCoOp's base/novel class split."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from dataclasses import replace
from pathlib import Path

from perlkit.files import atomic_write_json

from .core import DatasetError, DatasetSplits, Datum

CACHE_FORMAT = "perlkit-fewshot/1"
SUBSETS: tuple[str, ...] = ("all", "base", "novel")


def dassl_fewshot(items: list[Datum], num_shots: int, rng: random.Random) -> list[Datum]:
    """Dassl's ``generate_fewshot_dataset`` (repeat=True) on one list, drawing from ``rng``.

    Labels are visited in order of first appearance; ``rng.sample`` takes K items of a class, or
    ``rng.choices`` (with replacement) when it has fewer. ``random.Random(seed)`` yields the same stream as
    Dassl's ``random.seed(seed)``, so the samples are the ones CoOp trains on.
    """
    if num_shots < 1:
        return list(items)
    tracker: dict[int, list[Datum]] = {}
    for item in items:
        tracker.setdefault(item.label, []).append(item)
    out: list[Datum] = []
    for group in tracker.values():
        if len(group) >= num_shots:
            out.extend(rng.sample(group, num_shots))
        else:
            out.extend(rng.choices(group, k=num_shots))
    return out


def fewshot_cache_path(splits: DatasetSplits, shots: int, seed: int) -> Path:
    """Where the sampled split of ``splits`` is cached (``<dataset>/split_fewshot/shot_K-seed_S.json``)."""
    return Path(splits.root) / "split_fewshot" / f"shot_{shots}-seed_{seed}.json"


def _rel(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _fingerprint(splits: DatasetSplits) -> str:
    h = hashlib.sha256()
    for split in ("train", "val"):
        h.update(f"[{split}]\n".encode())
        for d in getattr(splits, split):
            h.update(f"{_rel(d.impath, splits.root)}\t{d.label}\n".encode())
    return h.hexdigest()


def _read_cache(path: Path, splits: DatasetSplits, fingerprint: str) -> dict[str, list[Datum]] | None:
    """Cached train/val lists, or None when the cache was made from a different source split."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"few-shot cache {path} is unreadable ({exc}); delete it to resample") from exc
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise DatasetError(f"few-shot cache {path} is not a {CACHE_FORMAT} file; delete it to resample")
    if payload.get("source_sha256") != fingerprint:
        warnings.warn(
            f"few-shot cache {path} was sampled from a different {splits.name} split; resampling and overwriting it",
            stacklevel=3,
        )
        return None
    known = {(_rel(d.impath, splits.root), d.label) for d in (*splits.train, *splits.val)}
    out: dict[str, list[Datum]] = {}
    for split in ("train", "val"):
        entries = payload.get(split)
        if not isinstance(entries, list):
            raise DatasetError(f"few-shot cache {path}: field {split!r} is missing; delete the file to resample")
        items = []
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and tuple(entry) in known):
                raise DatasetError(
                    f"few-shot cache {path}: entry {entry!r} is not in the {splits.name} split; "
                    "delete the file to resample"
                )
            rel, label = entry
            items.append(Datum(os.path.join(splits.root, rel), label, splits.classnames[label]))
        out[split] = items
    return out


def sample_fewshot(splits: DatasetSplits, shots: int = 16, seed: int = 1, cache: bool = True) -> DatasetSplits:
    """Sample K training shots and min(K, 4) validation shots per class exactly as Dassl/CoOp do.

    Exists so that every method trains on the very images CoOp's seeds 1/2/3 select. Train is sampled
    before val from one ``random.Random(seed)``. Datasets without a val split (ImageNet) keep val empty;
    test is untouched. ``shots < 1`` returns the splits unchanged. The result is cached as JSON at
    ``<dataset folder>/split_fewshot/shot_{K}-seed_{seed}.json`` (written atomically) and reused later.
    """
    if splits.subset != "all":
        raise DatasetError(
            f"sample_fewshot was given the {splits.subset!r} classes of {splits.name}; Dassl samples shots over "
            "all classes first and then calls subsample_classes, so call sample_fewshot before subsample_classes"
        )
    if splits.shots:
        raise DatasetError(f"{splits.name} is already a {splits.shots}-shot split (seed {splits.seed})")
    if shots < 1:
        return splits
    path = fewshot_cache_path(splits, shots, seed)
    fingerprint = _fingerprint(splits)
    if cache and path.exists():
        cached = _read_cache(path, splits, fingerprint)
        if cached is not None:
            return replace(splits, train=cached["train"], val=cached["val"], shots=shots, seed=seed)
    rng = random.Random(seed)
    train = dassl_fewshot(splits.train, shots, rng)
    val = dassl_fewshot(splits.val, min(shots, 4), rng)
    if cache:
        payload = {
            "format": CACHE_FORMAT,
            "dataset": splits.name,
            "shots": shots,
            "seed": seed,
            "source_sha256": fingerprint,
            "train": [[_rel(d.impath, splits.root), d.label] for d in train],
            "val": [[_rel(d.impath, splits.root), d.label] for d in val],
        }
        try:
            atomic_write_json(path, payload)
        except OSError as exc:
            warnings.warn(f"could not write few-shot cache {path} ({exc}); continuing without it", stacklevel=2)
    return replace(splits, train=train, val=val, shots=shots, seed=seed)


def subsample_classes(splits: DatasetSplits, subset: str) -> DatasetSplits:
    """Keep the base or novel half of the classes and relabel from 0 (CoCoOp's ``subsample_classes``).

    The label ids present in train (test when there is no train) are sorted; the first ceil(n/2) are base,
    the rest novel. Train, val and test are filtered alike, so base and novel become two separate
    closed-set problems. ``"new"`` is accepted as CoOp's spelling of ``"novel"``.
    """
    subset = {"new": "novel"}.get(subset, subset)
    if subset not in SUBSETS:
        raise DatasetError(f"unknown class subset {subset!r}; use one of {', '.join(SUBSETS)}")
    if subset == "all":
        return splits
    if splits.subset != "all":
        raise DatasetError(f"{splits.name} is already restricted to its {splits.subset!r} classes")
    source = splits.train or splits.test
    labels = sorted({d.label for d in source})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subset == "base" else labels[m:]
    relabel = {old: new for new, old in enumerate(selected)}

    def keep(items: list[Datum]) -> list[Datum]:
        return [Datum(d.impath, relabel[d.label], d.classname) for d in items if d.label in relabel]

    return replace(
        splits,
        classnames=[splits.classnames[y] for y in selected],
        train=keep(splits.train),
        val=keep(splits.val),
        test=keep(splits.test),
        subset=subset,
    )
