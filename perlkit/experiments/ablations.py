"""PERL's ablations (paper Fig. 3, Tables 3-4): steps K, split layer J, bottleneck r, modality, loop variants.

Every cell is an ordinary base-to-novel run with different PERL options, so it shares the cache and resume logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from perlkit.data import B2N_DATASETS
from perlkit.experiments.protocols import Session, b2n_summary
from perlkit.experiments.store import RunSpec
from perlkit.methods.perl import PERL_VARIANTS

#: ablation name -> (PERL option it changes, the values the paper sweeps)
ABLATIONS: dict[str, tuple[str | None, list[Any]]] = {
    "steps": ("steps", [1, 2, 3, 4, 5]),
    "layer": ("split", [6, 7, 8, 9, 10, 11]),
    "dim": ("rank", [1, 2, 4, 8, 16, 64]),
    "modality": ("modalities", ["vision", "text", "both"]),
    "variant": (None, list(PERL_VARIANTS)),
}


def ablation_options(kind: str, value: Any) -> dict[str, Any]:
    """PERL constructor options for one ablation cell."""
    if kind not in ABLATIONS:
        raise ValueError(f"unknown ablation {kind!r}; choose one of {', '.join(ABLATIONS)}")
    option, _ = ABLATIONS[kind]
    if option is None:
        if value not in PERL_VARIANTS:
            raise ValueError(f"unknown PERL variant {value!r}; choose one of {', '.join(PERL_VARIANTS)}")
        return dict(PERL_VARIANTS[value])
    return {option: value}


def ablation_specs(
    kind: str,
    values: Sequence[Any] | None = None,
    datasets: Iterable[str] = B2N_DATASETS,
    seeds: Iterable[int] = (1,),
    profile: str = "mini",
    **common: Any,
) -> list[tuple[Any, RunSpec]]:
    """(value, spec) pairs for an ablation grid over values x datasets x seeds."""
    values = ABLATIONS[kind][1] if values is None else list(values)
    datasets, seeds = list(datasets), list(seeds)
    return [
        (v, RunSpec("b2n", "perl", d, seed=s, options=ablation_options(kind, v), profile=profile, **common))
        for v in values for s in seeds for d in datasets
    ]


def run_ablation(
    session: Session,
    kind: str,
    values: Sequence[Any] | None = None,
    datasets: Iterable[str] = B2N_DATASETS,
    seeds: Iterable[int] = (1,),
    **common: Any,
) -> pd.DataFrame:
    """Run (or load) an ablation grid; returns per-dataset and average base/novel/HM per value."""
    pairs = ablation_specs(kind, values, datasets, seeds, session.profile.name, **common)
    return ablation_summary(pairs, session.sweep([spec for _, spec in pairs], desc=f"ablation {kind}"))


def ablation_summary(pairs: Sequence[tuple[Any, RunSpec]], results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-dataset and average base/novel/HM per value from an ablation's results (in ``pairs`` order), so a grid
    read from the store is summarised exactly as ``run_ablation`` summarises the runs it makes."""
    rows = [
        {"value": str(v), "dataset": r["spec"]["dataset"], "seed": r["spec"]["seed"], **r["metrics"],
         "params": r["trainable_params"]}
        for (v, _), r in zip(pairs, results, strict=True)
    ]
    table = pd.DataFrame(rows)
    summary = b2n_summary(table, by="value")
    params = table.groupby("value", sort=False)["params"].first()
    summary["params"] = summary["value"].map(params)
    return summary


def ablation_order(kind: str, values: Iterable[Any]) -> list[str]:
    """Values of an ablation as text, in the paper's order (``ABLATIONS``) first, then any others as given: tables
    and figures list the values the same way whichever source (live, precomputed, reported) has them."""
    values = [str(v) for v in values]
    canonical = [str(v) for v in ABLATIONS[kind][1]]
    return [v for v in canonical if v in values] + [v for v in dict.fromkeys(values) if v not in canonical]
