"""Protocols (base-to-novel, cross-dataset, domain generalisation), ablations and the result cache."""

from perlkit.experiments.ablations import ABLATIONS, ablation_options, ablation_specs, run_ablation
from perlkit.experiments.protocols import (
    Session,
    b2n_specs,
    b2n_summary,
    b2n_table,
    confidence_interval,
    harmonic_mean,
    reasoning_dynamics,
    step_metrics,
    transfer_specs,
    transfer_table,
)
from perlkit.experiments.store import RESULT_SCHEMA, ResultStore, RunSpec, cache_root, describe_sources, provenance

__all__ = [
    "ABLATIONS",
    "RESULT_SCHEMA",
    "ResultStore",
    "RunSpec",
    "Session",
    "ablation_options",
    "ablation_specs",
    "b2n_specs",
    "b2n_summary",
    "b2n_table",
    "cache_root",
    "confidence_interval",
    "describe_sources",
    "harmonic_mean",
    "provenance",
    "reasoning_dynamics",
    "run_ablation",
    "step_metrics",
    "transfer_specs",
    "transfer_table",
]
