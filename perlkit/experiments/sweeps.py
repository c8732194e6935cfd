"""The full grid behind the book, run once with ``perlkit results`` and resumable.

The sweep fills the profile's result store (the user cache by default, which the chapters read; the repository's
``data/results/<profile>/`` with ``--ship``) with every cell, each file carrying its provenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def run_full_sweep(
    profile: str = "mini", seeds: Sequence[int] = (1,), out: str | Path | None = None,
    parts: Iterable[str] | None = None,
) -> Path:
    """Run or resume the full sweep into the profile's store in the user cache (what the chapters read), or into
    ``out`` (``perlkit results --ship`` passes the repository's ``data/results``); returns the results folder."""
    session = Session(profile)
    if out is not None:
        session.store = ResultStore(session.profile.store_name, root=out)
    session.store.ensure_writable()
    _ = session.backbone  # loaded before the first run, so its random draws never touch a run's seed
    session.sweep(full_sweep_specs(profile, seeds, parts), desc=f"full sweep ({profile})")
    return session.store.write_dir
