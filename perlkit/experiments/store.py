"""Result cache: one JSON file per run, keyed by a hash of everything that determines the run.

Two layers are searched, in this order: the committed, read-only ``data/results/<profile>/`` (a full sweep run
once with ``make results``) and the writable user cache ``$PERLKIT_CACHE/results/<profile>/`` (default
``~/.cache/perlkit``). Writes are atomic, so a killed sweep resumes at the first missing run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

import perlkit
from perlkit.engine import atomic_write_json, git_commit

RESULT_SCHEMA = "perlkit-result-v1"
PACKAGE_ROOT = Path(perlkit.__file__).resolve().parent
SHIPPED_RESULTS = PACKAGE_ROOT.parent / "data" / "results"


def cache_root() -> Path:
    """Where perlkit writes caches: ``$PERLKIT_CACHE`` or ``~/.cache/perlkit``."""
    return Path(os.environ.get("PERLKIT_CACHE") or Path.home() / ".cache" / "perlkit")


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


def provenance(profile: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Who computed a number, where and with what: versions, commit, device, time."""
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        cpu = platform.processor() or platform.machine()
        device_name = f"CPU ({cpu}, {threads} thread{'s' if threads > 1 else ''})"
    return {
        "perlkit_version": perlkit.__version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
        "device": device_name,
        "host_cpus": os.cpu_count(),
        "profile": profile,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class ResultStore:
    """Looks runs up in the shipped results, then the user cache; writes only to the user cache (or ``root``)."""

    def __init__(self, profile: str, root: str | os.PathLike | None = None, use_shipped: bool = True) -> None:
        self.profile = profile
        self.write_dir = Path(root) / profile if root else cache_root() / "results" / profile
        self.checkpoint_dir = Path(root) / "checkpoints" / profile if root else cache_root() / "checkpoints" / profile
        # shipped results first: the same spec then gives the same numbers on every machine (nbval stays stable)
        self.read_dirs = [self.write_dir]
        self.checkpoint_dirs = [self.checkpoint_dir]
        if use_shipped and not root:
            self.read_dirs.insert(0, SHIPPED_RESULTS / profile)
            self.checkpoint_dirs.insert(0, SHIPPED_RESULTS / "checkpoints" / profile)

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

    def get(self, spec: RunSpec) -> dict[str, Any] | None:
        """The stored result of a run, or None; a corrupt file is reported and treated as missing."""
        for folder in self.read_dirs:
            path = folder / spec.filename
            if path.is_file():
                try:
                    payload = json.loads(path.read_text())
                except json.JSONDecodeError:
                    import warnings

                    warnings.warn(f"ignoring unreadable result file {path}; the run will be recomputed", stacklevel=2)
                    continue
                if payload.get("schema") == RESULT_SCHEMA and payload.get("spec") == spec.to_dict():
                    payload["_path"] = str(path)
                    return payload
        return None

    def put(self, spec: RunSpec, payload: dict[str, Any]) -> Path:
        """Write a run's result atomically."""
        payload = {k: v for k, v in payload.items() if not k.startswith("_")}
        path = self.path_for(spec)
        atomic_write_json(path, payload)
        return path


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
