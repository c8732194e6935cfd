"""The full grid behind the book, run once with ``perlkit results`` and resumable.

The sweep fills the profile's result store (the user cache by default, which the chapters read; the repository's
``data/results/<profile>/`` with ``--ship``) with every cell, each file carrying its provenance.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from perlkit.data import B2N_DATASETS
from perlkit.experiments.ablations import ABLATIONS, ablation_specs
from perlkit.experiments.protocols import Session, b2n_specs, transfer_specs
from perlkit.experiments.store import ResultStore, RunSpec
from perlkit.methods import list_methods

SWEEP_PARTS = ("b2n", "transfer", "ablations", "rivals_default")


def rival_methods() -> list[str]:
    """Every registered method except zero-shot and PERL."""
    return [m for m in list_methods() if m not in ("zeroshot", "perl")]


def full_sweep_specs(
    profile: str = "mini", seeds: Sequence[int] = (1,), parts: Iterable[str] | None = None
) -> list[RunSpec]:
    """All runs of the book's tables: methods x protocols x datasets x seeds, and PERL's ablations."""
    parts = list(parts or SWEEP_PARTS)
    unknown = set(parts) - set(SWEEP_PARTS)
    if unknown:
        raise ValueError(f"unknown sweep part(s) {sorted(unknown)}; choose from {', '.join(SWEEP_PARTS)}")
    methods = ["zeroshot", "perl", *rival_methods()]
    specs: list[RunSpec] = []
    if "b2n" in parts:
        specs += b2n_specs(methods, B2N_DATASETS, seeds, profile)
    if "transfer" in parts:
        specs += transfer_specs(methods, seeds, profile)
    if "ablations" in parts:
        for kind in ABLATIONS:
            specs += [spec for _, spec in ablation_specs(kind, None, B2N_DATASETS, seeds, profile)]
    if "rivals_default" in parts:
        specs += b2n_specs(rival_methods(), B2N_DATASETS, seeds, profile, protocol="default")
        specs += transfer_specs(rival_methods(), seeds, profile, protocol="default")
    unique = {spec.key: spec for spec in specs}  # ablation defaults coincide with the b2n PERL runs
    return list(unique.values())


def stored_specs(store: ResultStore) -> list[RunSpec]:
    """The specs of every result file in a store's folders (shipped first), in a stable order."""
    specs: dict[str, RunSpec] = {}
    for folder in store.read_dirs:
        for path in sorted(folder.glob("*.json")):
            try:
                payload = json.loads(path.read_text())
                spec = RunSpec(**payload["spec"])
            except (OSError, ValueError, TypeError, KeyError):
                continue  # unreadable files are reported by ResultStore.get when their run is asked for
            specs.setdefault(spec.key, spec)
    return list(specs.values())


def open_store_session(profile: str, out: str | Path | None = None) -> Session:
    """A session on the profile's store (the user cache) or on ``out``, with its backbone loaded up front."""
    session = Session(profile)
    if out is not None:
        session.store = ResultStore(session.profile.store_name, root=out)
    _ = session.backbone  # loaded before the first run, so its random draws never touch a run's seed
    return session


def run_full_sweep(
    profile: str = "mini", seeds: Sequence[int] = (1,), out: str | Path | None = None,
    parts: Iterable[str] | None = None, only_stored: bool = False,
) -> Path:
    """Run or resume the full sweep into the profile's store in the user cache (what the chapters read), or into
    ``out`` (``perlkit results --ship`` passes the repository's ``data/results``); missing and stale runs (made
    by other code or weights) are computed. ``only_stored`` refreshes the stale runs already in the store and adds
    nothing. Returns the results folder."""
    session = open_store_session(profile, out)
    session.store.ensure_writable()
    specs = stored_specs(session.store) if only_stored else full_sweep_specs(profile, seeds, parts)
    session.sweep(specs, desc=f"full sweep ({profile})")
    return session.store.write_dir


@dataclass
class Verification:
    """One stored result re-run from its spec: the stored and the recomputed metrics."""

    spec: RunSpec
    stored: dict[str, float]
    recomputed: dict[str, float]
    current: bool  # the stored result carries the current code-and-weights fingerprint

    @property
    def identical(self) -> bool:
        """Bit-for-bit equality of every metric, which CPU runs give."""
        return self.stored == self.recomputed


def verify_results(
    profile: str = "mini", count: int | None = None, seed: int = 0, specs: Sequence[RunSpec] | None = None,
    out: str | Path | None = None, progress: bool = True,
) -> list[Verification]:
    """Re-run stored results from their specs in a scratch store and compare metrics exactly: ``count`` drawn at
    random (``seed``) from the store, or the given ``specs``. Proves that shipped numbers are what the code gives."""
    session = open_store_session(profile, out)
    pool = list(specs) if specs is not None else stored_specs(session.store)
    if specs is None and count is not None:
        pool = random.Random(seed).sample(pool, min(count, len(pool)))
    checks = []
    with tempfile.TemporaryDirectory(prefix="perlkit-verify-") as scratch:
        rerun = Session(session.profile, progress=progress, store=ResultStore(session.profile.store_name, scratch))
        rerun._backbone = session.backbone
        for spec in pool:
            stored = session.store.get(spec)
            if stored is None:
                raise ValueError(f"no stored result for {spec.filename} in {session.store.read_dirs}")
            fresh = rerun.run(spec, recompute=True)
            checks.append(Verification(spec, stored["metrics"], fresh["metrics"],
                                       stored["provenance"].get("fingerprint") == session.fingerprint(spec)))
    return checks


def sweep_status(
    profile: str = "mini", seeds: Sequence[int] = (1,), parts: Iterable[str] | None = None,
    out: str | Path | None = None,
) -> dict[str, dict[str, int]]:
    """Per part of the grid: how many runs are done (current), stale (made by other code or weights) or missing."""
    session = open_store_session(profile, out)
    status = {}
    for part in parts or SWEEP_PARTS:
        counts = {"done": 0, "stale": 0, "missing": 0}
        for spec in full_sweep_specs(profile, seeds, [part]):
            if session.stored(spec) is not None:
                counts["done"] += 1
            elif session.store.get(spec) is not None:
                counts["stale"] += 1
            else:
                counts["missing"] += 1
        status[part] = counts
    return status
