"""The full grid behind the book, run once with ``perlkit results`` and resumable.

The sweep fills the profile's result store (the user cache by default, which the chapters read; the repository's
``data/results/<profile>/`` with ``--ship``) with every cell, each file carrying its provenance.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perlkit.data import B2N_DATASETS
from perlkit.experiments.ablations import ABLATIONS, RMMA_ABLATION_PROTOCOL, RMMA_ABLATIONS, ablation_specs
from perlkit.experiments.protocols import Session, b2n_specs, transfer_specs
from perlkit.experiments.store import ResultStore, RunSpec, device_label, run_fingerprint
from perlkit.files import atomic_write_json
from perlkit.methods import list_methods
from perlkit.profiles import Profile

SWEEP_PARTS = ("b2n", "transfer", "ablations", "rivals_default", "rmma_ablations")
#: what ``perlkit results --status`` counts: current results, results of other code or weights, no result, and no
#: result but a failure record (a task's exception, see ``record_failure``)
RUN_STATES = ("done", "stale", "missing", "failed")


def rival_methods() -> list[str]:
    """Every registered method except zero-shot and PERL."""
    return [m for m in list_methods() if m not in ("zeroshot", "perl")]


def full_sweep_specs(
    profile: str = "mini", seeds: Sequence[int] = (1,), parts: Iterable[str] | None = None
) -> list[RunSpec]:
    """All runs of the book's tables: methods x protocols x datasets x seeds, PERL's ablations and R-MMA's."""
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
    if "rmma_ablations" in parts:  # under R-MMA's own recipe, as its summary ablates
        for kind in RMMA_ABLATIONS:
            specs += [spec for _, spec in ablation_specs(kind, None, B2N_DATASETS, seeds, profile,
                                                         protocol=RMMA_ABLATION_PROTOCOL)]
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


def grid_parts(
    profile: str = "mini", seeds: Sequence[int] = (1,), parts: Iterable[str] | None = None
) -> dict[str, list[RunSpec]]:
    """The grid part by part (a run shared by two parts, as the ablations' default PERL, is listed in both)."""
    return {part: full_sweep_specs(profile, seeds, [part]) for part in (parts or SWEEP_PARTS)}


def open_store_session(profile: Profile | str, out: str | Path | None = None) -> Session:
    """A session on the profile's store (the user cache) or on ``out``, with its backbone loaded up front."""
    session = Session(profile)
    if out is not None:
        session.store = ResultStore(session.profile.store_name, root=out)
    _ = session.backbone  # loaded before the first run, so its random draws never touch a run's seed
    return session


def run_full_sweep(
    profile: Profile | str = "mini", seeds: Sequence[int] = (1,), out: str | Path | None = None,
    parts: Iterable[str] | None = None, only_stored: bool = False,
) -> Path:
    """Run or resume the full sweep into the profile's store in the user cache (what the chapters read), or into
    ``out`` (``perlkit results --ship`` passes the repository's ``data/results``); missing and stale runs (made
    by other code or weights) are computed. ``only_stored`` refreshes the stale runs already in the store and adds
    nothing. Returns the results folder."""
    session = open_store_session(profile, out)
    specs = stored_specs(session.store) if only_stored else full_sweep_specs(session.profile.name, seeds, parts)
    return sweep_serially(session, specs, f"full sweep ({profile})")


def sweep_serially(session: Session, specs: Sequence[RunSpec], desc: str = "runs") -> Path:
    """The serial executor: every run in this process, one after another (stored ones are read, not rerun); then
    the failure records of runs that are now done are cleared. Returns the results folder."""
    session.store.ensure_writable()
    session.sweep(specs, desc=desc)
    for spec in specs:
        if read_failure(session.store, spec) is not None and session.stored(spec) is not None:
            clear_failure(session.store, spec)
    return session.store.write_dir


# ---------------------------------------------------------------------- failure records
def failure_path(store: ResultStore, spec: RunSpec) -> Path:
    """``<store>/failures/<run>.json``: the record of a run whose task raised, until the run succeeds."""
    return store.write_dir / "failures" / spec.filename


def record_failure(store: ResultStore, spec: RunSpec, error: BaseException, log: str | None) -> Path:
    """Keep, atomically, which run failed, how, and the log holding its traceback, so that ``--status`` can say."""
    record = {
        "spec": spec.to_dict(),
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exception(error)[-3:],
        "log": log,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return atomic_write_json(failure_path(store, spec), record)


def read_failure(store: ResultStore, spec: RunSpec) -> dict[str, Any] | None:
    """A run's failure record, or None (an unreadable record counts as none: the run is then just missing)."""
    path = failure_path(store, spec)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {**record, "_path": str(path)} if isinstance(record, dict) else None


def clear_failure(store: ResultStore, spec: RunSpec) -> None:
    """Forget a run's failure once it has succeeded."""
    failure_path(store, spec).unlink(missing_ok=True)


def current_result(
    store: ResultStore, spec: RunSpec, session: Session | None = None
) -> dict[str, Any] | None:
    """The run's result if it carries the current fingerprint: with a ``session``, exactly ``Session.stored`` (code,
    weights and data); without one (no model loaded), the weights and data are taken from the stored result and only
    the code is checked, which is enough to plan (a task still checks them before it skips a run)."""
    if session is not None:
        return store.get(spec, session.fingerprint(spec))
    stored = store.get(spec)
    if stored is None:
        return None
    recorded = stored.get("provenance", {}).get("fingerprint", {})
    return store.get(spec, run_fingerprint(spec.method, recorded.get("weights_sha256", ""), recorded.get("data", "")))


def run_state(store: ResultStore, spec: RunSpec, session: Session | None = None) -> str:
    """One of ``RUN_STATES`` for a run (see ``current_result`` for ``session``)."""
    if current_result(store, spec, session) is not None:
        return "done"
    if read_failure(store, spec) is not None:
        return "failed"
    return "stale" if store.get(spec) is not None else "missing"


UNKNOWN_DEVICE = "unknown device"
#: metrics computed from accuracies (HM, transfer averages): they move when an accuracy does
DERIVED_METRICS = frozenset({"hm", "xd_average", "dg_average"})


@dataclass
class Verification:
    """One stored result re-run from its spec: the stored and the recomputed metrics."""

    spec: RunSpec
    stored: dict[str, float]
    recomputed: dict[str, float]
    current: bool  # the stored result carries the current code-and-weights fingerprint
    stored_device: str = UNKNOWN_DEVICE  # as its provenance records it
    rerun_device: str = UNKNOWN_DEVICE
    test_images: dict[str, int] = field(default_factory=dict)  # test images behind each accuracy (per target)

    @property
    def identical(self) -> bool:
        """Bit-for-bit equality of every metric, which re-runs on the same CPU model give."""
        return self.stored == self.recomputed

    @property
    def one_image_across_cpus(self) -> bool:
        """Not identical, but made on another CPU model, and every accuracy that differs moved by exactly one test
        image (the averages built on them follow). That is the most float32 rounding between two CPU models' kernels
        can do to one borderline image; a real change to the code or data moves more, or moves on the same CPU."""
        if self.identical or self.stored_device == self.rerun_device or UNKNOWN_DEVICE in (
                self.stored_device, self.rerun_device):
            return False
        differing = {name for name in self.stored.keys() | self.recomputed.keys()
                     if self.stored.get(name) != self.recomputed.get(name)}
        moved = self.images_apart  # the differing accuracies with a test-image count
        return bool(moved) and differing <= moved.keys() | DERIVED_METRICS and set(moved.values()) == {1}

    @property
    def verdict(self) -> str:
        """What ``perlkit results --verify`` prints: identical, one image across CPUs, or DIFFERENT."""
        return "identical" if self.identical else "one-image" if self.one_image_across_cpus else "DIFFERENT"

    @property
    def images_apart(self) -> dict[str, int]:
        """How many test images each differing accuracy moved by (base-to-novel runs; {} where counts are unknown)."""
        return {name: round(abs(self.stored[name] - self.recomputed[name]) / 100 * count)
                for name, count in self.test_images.items()
                if name in self.stored and name in self.recomputed and self.stored[name] != self.recomputed[name]}

    def explanation(self) -> str:
        """Why a re-run may differ, in one clause: another CPU model's float32 kernels round differently, which can
        move a borderline test image (measured: 2 of 20 world-2 results made on an AMD EPYC moved by one image on an
        Intel Xeon); on the same CPU model any difference is a real change."""
        if self.identical:
            return ""
        moved = ", ".join(f"{name} by {n} test image{'s' if n != 1 else ''}" for name, n in self.images_apart.items())
        where = (f"made on {self.stored_device}, re-run on {self.rerun_device}: float32 kernels differ between CPU "
                 f"models" if self.stored_device != self.rerun_device else f"same device ({self.rerun_device})")
        return f"{where}{'; ' + moved if moved else ''}"


def verify_results(
    profile: Profile | str = "mini", count: int | None = None, seed: int = 0, specs: Sequence[RunSpec] | None = None,
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
            counts = stored.get("counts") or {}
            checks.append(Verification(
                spec, stored["metrics"], fresh["metrics"],
                stored["provenance"].get("fingerprint") == session.fingerprint(spec),
                device_label(stored["provenance"]), device_label(fresh["provenance"]),
                {name.removesuffix("_test"): n for name, n in counts.items() if name.endswith("_test")}))
    return checks


@dataclass
class SweepStatus:
    """Where a grid stands: per part, how many runs are in each of ``RUN_STATES``; and the failure records."""

    counts: dict[str, dict[str, int]]
    failures: list[dict[str, Any]] = field(default_factory=list)  # records of the runs still failed, with their log


def sweep_status(
    profile: Profile | str = "mini", seeds: Sequence[int] = (1,), parts: Iterable[str] | None = None,
    out: str | Path | None = None,
) -> SweepStatus:
    """Per part of the grid: how many runs are done (current), stale (made by other code or weights), missing, or
    failed (missing or stale, and a task recorded an exception for it: ``SweepStatus.failures`` says where)."""
    session = open_store_session(profile, out)
    name = profile if isinstance(profile, str) else profile.name
    status = SweepStatus({})
    failed: dict[str, dict[str, Any]] = {}
    for part, specs in grid_parts(name, seeds, parts).items():
        counts = dict.fromkeys(RUN_STATES, 0)
        for spec in specs:
            state = run_state(session.store, spec, session)
            counts[state] += 1
            if state == "failed":
                failed[spec.key] = read_failure(session.store, spec) or {}
        status.counts[part] = counts
    status.failures = list(failed.values())
    return status
