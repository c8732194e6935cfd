"""Result cache: one JSON file per run, keyed by a hash of everything that determines the run.

Two layers are searched, in this order: the committed, read-only ``data/results/<profile>/`` (a full sweep run
once with ``make results``) and the writable user cache ``$PERLKIT_CACHE/results/<profile>/`` (default
``~/.cache/perlkit``). Writes are atomic, so a killed sweep resumes at the first missing run. An installed wheel has
no ``data/``, so there only the user cache is searched.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from perlkit import files
from perlkit.files import REPO_DATA, atomic_write_json, cache_root, ensure_writable, inside_repo_data

RESULT_SCHEMA = "perlkit-result-v1"
SHIPPED_RESULTS = REPO_DATA / "results"


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training + evaluation run; its hash is the cache key."""

    kind: str  # "b2n" | "imagenet_transfer"
    method: str
    dataset: str
    seed: int = 1
    shots: int = 16
    options: dict[str, Any] = field(default_factory=dict)  # method constructor options
    protocol: str = "unified"  # training recipe: "unified" (1 epoch) | "default" (the method's own paper)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    template: str = "coop"  # "coop" | "single"
    profile: str = "mini"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, stable key order."""
        return json.loads(json.dumps(asdict(self), sort_keys=True))

    @property
    def key(self) -> str:
        """A short stable hash of the spec, used as the file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:16]

    @property
    def filename(self) -> str:
        """Readable file name: kind, method, dataset, seed and the hash."""
        return f"{self.kind}-{self.method}-{self.dataset}-s{self.seed}-{self.key}.json"


def provenance(profile: dict[str, Any], device: torch.device, fingerprint: dict[str, str]) -> dict[str, Any]:
    """Who computed a number, where and with what: versions, commit, device, time, the run's profile, and the
    fingerprint of what decides its numbers (``run_fingerprint``)."""
    return files.provenance(device, profile=profile, fingerprint=fingerprint)


#: the modules whose code decides every run's numbers (a method's own file is added per run)
NUMERIC_MODULES = (
    "backbone.py", "engine.py", "methods/base.py", "data/core.py", "data/readers.py", "data/registry.py",
    "data/fewshot.py", "data/loading.py", "data/images.py", "data/prompts.py", "experiments/protocols.py",
)


@functools.cache
def _method_code(method: str) -> str:
    from perlkit.methods import get_method_class

    own = [inspect.getsourcefile(cls) for cls in get_method_class(method).__mro__ if cls.__module__.startswith(
        "perlkit.methods.")]
    return files.code_fingerprint([*(files.PACKAGE_ROOT / m for m in NUMERIC_MODULES), *own])


def run_fingerprint(method: str, weights_sha256: str, data: str = "") -> dict[str, str]:
    """What decides a run's numbers besides its spec: the code of the modules that compute it (syntax only, see
    ``files.code_fingerprint``), the frozen weights and, where perlkit makes the data itself, the data's identity
    (``Profile.data_identity``). A stored result with another fingerprint is stale."""
    fingerprint = {"code": _method_code(method), "weights_sha256": weights_sha256}
    return {**fingerprint, "data": data} if data else fingerprint


class ResultStore:
    """Looks runs up in the shipped results, then the user cache; writes only to the user cache (or ``root``).

    ``name`` is the folder of one backbone's results (a profile name, or a profile with other weights: see
    ``Profile.store_name``). A result marks its run as done only once its checkpoint is written (checkpoint first,
    then result, each atomically); a result of a trainable run in the writable folder whose checkpoint is missing is
    treated as missing, so the run is redone. ``claim`` lets several processes share one store without doing a run
    twice.
    """

    def __init__(self, name: str, root: str | os.PathLike | None = None, use_shipped: bool = True) -> None:
        self.name = name
        self.write_dir = Path(root) / name if root else cache_root() / "results" / name
        self.checkpoint_dir = Path(root) / "checkpoints" / name if root else cache_root() / "checkpoints" / name
        # shipped results first: the same spec then gives the same numbers on every machine (nbval stays stable)
        self.read_dirs = [self.write_dir]
        self.checkpoint_dirs = [self.checkpoint_dir]
        if use_shipped and not root and files.in_checkout():  # an installed wheel has no shipped layer
            self.read_dirs.insert(0, SHIPPED_RESULTS / name)
            self.checkpoint_dirs.insert(0, SHIPPED_RESULTS / "checkpoints" / name)

    def path_for(self, spec: RunSpec) -> Path:
        """Where a run's result is written."""
        return self.write_dir / spec.filename

    def checkpoint_path(self, spec: RunSpec) -> Path:
        """Where a run's trained parameters are written."""
        return self.checkpoint_dir / spec.filename.replace(".json", ".pt")

    def find_checkpoint(self, spec: RunSpec) -> Path | None:
        """A run's stored checkpoint, shipped ones first (as for results), or None."""
        name = spec.filename.replace(".json", ".pt")
        return next((folder / name for folder in self.checkpoint_dirs if (folder / name).is_file()), None)

    def ensure_writable(self) -> None:
        """Fail before any training when results or checkpoints could not be saved afterwards."""
        ensure_writable(self.write_dir, "results")
        ensure_writable(self.checkpoint_dir, "checkpoints")

    def get(self, spec: RunSpec, fingerprint: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The stored result of a run, or None; an unreadable file is reported and treated as missing, and with a
        ``fingerprint`` a result made by other code or weights is stale, so missing (``is_stale`` tells which)."""
        for folder in self.read_dirs:
            path = folder / spec.filename
            if not path.is_file():
                continue
            try:
                payload = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                warnings.warn(f"ignoring unreadable result file {path} ({err}); the run will be recomputed",
                              stacklevel=2)
                continue
            if not isinstance(payload, dict):
                warnings.warn(f"ignoring result file {path}: it holds a JSON {type(payload).__name__}, not a result "
                              "object; the run will be recomputed", stacklevel=2)
                continue
            if payload.get("schema") != RESULT_SCHEMA or payload.get("spec") != spec.to_dict():
                continue
            if fingerprint is not None and payload.get("provenance", {}).get("fingerprint") != fingerprint:
                continue
            unfinished = payload.get("trainable_params") and not self.checkpoint_path(spec).is_file()
            if unfinished and folder == self.write_dir and not inside_repo_data(folder):
                continue  # checkpoint deleted or never written: not done (the repository ships only a few checkpoints)
            payload["_path"] = str(path)
            return payload
        return None

    def is_stale(self, spec: RunSpec, fingerprint: dict[str, str]) -> bool:
        """Whether a result of the run is stored but was made by other code or weights."""
        return self.get(spec) is not None and self.get(spec, fingerprint) is None

    def put(self, spec: RunSpec, payload: dict[str, Any]) -> Path:
        """Write a run's result atomically."""
        payload = {k: v for k, v in payload.items() if not k.startswith("_")}
        path = self.path_for(spec)
        atomic_write_json(path, payload)
        return path

    @contextlib.contextmanager
    def claim(self, spec: RunSpec, wait: bool = True) -> Iterator[bool]:
        """Hold an exclusive lock on a run while computing it; yields False (without waiting) if another process
        holds it and ``wait`` is False. The OS drops the lock when its holder dies, so a killed worker never
        blocks a run."""
        lock_dir = ensure_writable(self.write_dir / ".locks", "result locks")
        with open(lock_dir / f"{spec.filename}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def device_label(provenance: dict[str, Any]) -> str:
    """The device a result was computed on, as captions print it (files written before 2026-11-23 say '1 threads')."""
    return str(provenance.get("device", "unknown device")).replace(" 1 threads)", " 1 thread)")


def describe_sources(results: list[dict[str, Any]]) -> str:
    """One sentence saying where a table's runs came from: shipped precomputed files or this machine's runs."""
    shipped = [r for r in results if str(SHIPPED_RESULTS) in r.get("_path", "")]
    local = len(results) - len(shipped)
    parts = []
    if shipped:
        commits = sorted({r["provenance"]["git_commit"][:7] for r in shipped})
        devices = sorted({device_label(r["provenance"]) for r in shipped})
        dates = sorted({r["provenance"]["created"][:10] for r in shipped})
        parts.append(
            f"{len(shipped)} precomputed and committed (data/results; commit {', '.join(commits)}; "
            f"{'; '.join(devices)}; {', '.join(dates)})"
        )
    if local:
        parts.append(f"{local} trained and evaluated on this machine by this book's code (cached in {cache_root()})")
    return f"{len(results)} runs: " + "; ".join(parts) + "."
