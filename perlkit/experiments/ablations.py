"""Ablations: PERL's (paper Fig. 3, Tables 3-4: steps K, split layer J, bottleneck r, modality, loop variants) and
R-MMA's own (its summary: each component removed, weight sharing, and the d / alpha / lambda sweep).

Every cell is an ordinary base-to-novel run of the method with different options, so it shares the cache and resume
logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from perlkit.data import B2N_DATASETS
from perlkit.experiments.protocols import Session, b2n_summary
from perlkit.experiments.store import RunSpec
from perlkit.methods import get_method_class
from perlkit.methods.perl import PERL_VARIANTS
from perlkit.stats import seed_half_widths

#: ablation name -> (PERL option it changes, the values the paper sweeps)
ABLATIONS: dict[str, tuple[str | None, list[Any]]] = {
    "steps": ("steps", [1, 2, 3, 4, 5]),
    "layer": ("split", [6, 7, 8, 9, 10, 11]),
    "dim": ("rank", [1, 2, 4, 8, 16, 64]),
    "modality": ("modalities", ["vision", "text", "both"]),
    "variant": (None, list(PERL_VARIANTS)),
}

#: R-MMA's component ablation, named as its summary's table (``data/reported/ablations.csv``), and the non-recurrent
#: baseline (one adapter per block) behind its weight-sharing claim
RMMA_COMPONENTS: dict[str, dict[str, Any]] = {
    "full R-MMA": {}, "w/o MAR": {"mar": False}, "w/o attention": {"attention": False},
    "w/o fusion": {"fusion": False}, "w/o L_sep": {"sep_weight": 0.0}, "unshared": {"shared": False},
}
#: R-MMA's ablations: name -> (R-MMA option it changes, values), around the summary's best d = 64, alpha = 0.1,
#: lambda = 0.6
RMMA_ABLATIONS: dict[str, tuple[str | None, list[Any]]] = {
    "rmma_component": (None, list(RMMA_COMPONENTS)),
    "rmma_dim": ("dim", [32, 64, 128]),
    "rmma_alpha": ("alpha", [0.05, 0.1, 0.2]),
    "rmma_sep_weight": ("sep_weight", [0.3, 0.6, 1.0]),
}
#: the protocol R-MMA's summary ablates under: its own recipe
RMMA_ABLATION_PROTOCOL = "default"
_NAMED = {"variant": PERL_VARIANTS, "rmma_component": RMMA_COMPONENTS}
_MISSING = object()


def ablation_method(kind: str) -> str:
    """The method an ablation varies."""
    if kind in ABLATIONS:
        return "perl"
    if kind in RMMA_ABLATIONS:
        return "rmma"
    raise ValueError(f"unknown ablation {kind!r}; choose one of {', '.join([*ABLATIONS, *RMMA_ABLATIONS])}")


def _ablation(kind: str) -> tuple[str | None, list[Any]]:
    return ABLATIONS[kind] if ablation_method(kind) == "perl" else RMMA_ABLATIONS[kind]


def ablation_options(kind: str, value: Any) -> dict[str, Any]:
    """Constructor options of the ablated method (``ablation_method``) for one ablation cell; options equal to the
    method's defaults are left out, so the cell that is the published method is the very run of the base-to-novel
    grid (one run, one result), not a copy of it under another key."""
    option, _ = _ablation(kind)
    if option is None:
        named = _NAMED[kind]
        if value not in named:
            raise ValueError(f"unknown {kind} value {value!r}; choose one of {', '.join(named)}")
        options = dict(named[value])
    else:
        options = {option: value}
    defaults = get_method_class(ablation_method(kind)).Config()
    return {name: v for name, v in options.items() if getattr(defaults, name, _MISSING) != v}


def ablation_specs(
    kind: str,
    values: Sequence[Any] | None = None,
    datasets: Iterable[str] = B2N_DATASETS,
    seeds: Iterable[int] = (1,),
    profile: str = "mini",
    **common: Any,
) -> list[tuple[Any, RunSpec]]:
    """(value, spec) pairs for an ablation grid over values x datasets x seeds."""
    values = _ablation(kind)[1] if values is None else list(values)
    datasets, seeds, method = list(datasets), list(seeds), ablation_method(kind)
    return [
        (v, RunSpec("b2n", method, d, seed=s, options=ablation_options(kind, v), profile=profile, **common))
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
    summary[HM_INTERVAL] = summary["value"].map(seed_half_widths(table, "value", "hm")).where(
        summary["dataset"] == "average")
    return summary


#: the column of an ablation summary's average rows holding the half width of the 95% t-interval of the mean HM
#: over seeds (missing with one seed, where seed-to-seed variation is unknown)
HM_INTERVAL = "hm ±"


def ablation_order(kind: str, values: Iterable[Any]) -> list[str]:
    """Values of an ablation as text, in the paper's order (``ABLATIONS``) first, then any others as given: tables
    and figures list the values the same way whichever source (live, precomputed, reported) has them."""
    values = [str(v) for v in values]
    canonical = [str(v) for v in _ablation(kind)[1]]
    return [v for v in canonical if v in values] + [v for v in dict.fromkeys(values) if v not in canonical]
