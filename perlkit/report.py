"""What the chapters show that is not a result itself: each method's recipe under both protocols, and which committed
results of a grid are current.

The tables are computed from the code that trains (``Method.recipe``, ``dataset_recipe``, ``own_template``,
``crop_scale``, ``perlkit.engine.recipe``), never restated, so they cannot drift from what the runs do; the sources
are the official configs each method cites in ``Method.recipe_sources``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perlkit.data.registry import B2N_DATASETS, SINGLE_TEMPLATE
from perlkit.engine import TrainConfig, protocol_crop_scale, protocol_template, recipe
from perlkit.experiments import RunSpec, Session
from perlkit.methods import Method, get_method_class

__all__ = [
    "RECIPE_SETTINGS", "UNIFIED_SOURCE", "ShippedGrid", "recipe_sources", "recipe_table", "shipped_grid",
    "unified_overrides",
]

#: the settings a rival's official scripts distinguish: label -> (key in ``recipe_sources``, dataset, task)
RECIPE_SETTINGS: dict[str, tuple[str, str, str]] = {
    "base-to-novel": ("b2n", "dtd", "b2n"),
    "base-to-novel, ImageNet": ("b2n_imagenet", "imagenet", "b2n"),
    "cross-dataset (ImageNet)": ("cross", "imagenet", "cross"),
    "few-shot": ("few_shot", "dtd", "few_shot"),
    "few-shot, ImageNet": ("few_shot_imagenet", "imagenet", "few_shot"),
}
UNIFIED_SOURCE = ("PERL paper App. D (unified protocol: one epoch, 16 shots, no warm-up); perlkit: the method's own "
                  "optimiser, lr and batch, lr changing every step, CoOp prompts, crop (0.5, 1)")
#: the recipe columns of ``recipe_table`` that ``unified_overrides`` compares
RECIPE_COLUMNS = ("epochs", "lr", "batch", "optimizer", "schedule", "warm-up", "template", "crop scale")


def _template_label(kind: str) -> str:
    return f'"{SINGLE_TEMPLATE}"' if kind == "single" else "CoOp per dataset"


def _schedule_label(cfg: TrainConfig) -> str:
    return "constant" if cfg.scheduler == "constant" else f"{cfg.scheduler}, per {cfg.schedule_unit}"


def _warmup_label(cfg: TrainConfig) -> str:
    level = cfg.warmup_lr if cfg.warmup_lr is not None else cfg.lr * cfg.warmup_factor
    if cfg.warmup_steps:
        return f"{cfg.warmup_steps} steps at {level:g}"
    if cfg.warmup_steps is None and cfg.warmup_epochs:
        return f"{cfg.warmup_epochs} epoch{'s' if cfg.warmup_epochs > 1 else ''} at {level:g}"
    return "none"


def _row(cls: type[Method], protocol: str, setting: str, cfg: TrainConfig, source: str) -> dict[str, object]:
    low, high = protocol_crop_scale(cls, protocol)
    return {
        "method": cls.name, "protocol": protocol, "setting": setting, "epochs": cfg.epochs, "lr": f"{cfg.lr:g}",
        "batch": cfg.batch_size, "optimizer": f"{cfg.optimizer} (wd {cfg.weight_decay:g})",
        "schedule": _schedule_label(cfg), "warm-up": _warmup_label(cfg),
        "template": _template_label(protocol_template(cls, protocol)), "crop scale": f"({low:g}, {high:g})",
        "source": source,
    }


def recipe_table(methods: Iterable[str]) -> pd.DataFrame:
    """One row per method, protocol and setting: the recipe perlkit trains with and where it comes from.

    'unified' has one row per method (every setting alike); 'default' one per setting the method's official code
    distinguishes (those with an entry in ``recipe_sources``), or one 'all' row for a method with one recipe
    everywhere. Methods with nothing to train (zero-shot CLIP) are left out.
    """
    rows = []
    for name in methods:
        cls = get_method_class(name)
        if not cls.recipe and not cls.recipe_sources:
            continue  # nothing is trained
        rows.append(_row(cls, "unified", "all", recipe(cls, "unified"), UNIFIED_SOURCE))
        settings = [(label, key, data, task) for label, (key, data, task) in RECIPE_SETTINGS.items()
                    if key in cls.recipe_sources]
        for label, key, dataset, task in settings or [("all", "all", "dtd", "b2n")]:
            cfg = recipe(cls, "default", dataset, task)
            rows.append(_row(cls, "default", label, cfg, cls.recipe_sources.get(key, "")))
    return pd.DataFrame(rows)


#: what else a method's ``recipe_sources`` may cite, beyond the settings, in the order ``recipe_sources`` lists them
SOURCE_TOPICS = {"all": "recipe", "template": "prompts", "crop": "crop scale", "schedule": "lr schedule",
                 "target_beta": "test-time beta per target"}


def recipe_sources(methods: Iterable[str], names: dict[str, str] | None = None) -> str:
    """Markdown bullets: for each method, where every part of its default recipe comes from (``recipe_sources``)."""
    names = names or {}
    labels = {key: label for label, (key, _, _) in RECIPE_SETTINGS.items()} | SOURCE_TOPICS
    lines = [f"* every method, unified protocol: {UNIFIED_SOURCE}"]
    for name in methods:
        sources = get_method_class(name).recipe_sources
        parts = [f"  * {labels[key]}: {sources[key]}" for key in labels if key in sources]
        if parts:
            lines += [f"* **{names.get(name, name)}**, default protocol:", *parts]
    return "\n".join(lines)


def unified_overrides(methods: Iterable[str]) -> dict[str, str]:
    """Where the unified protocol departs from a method's own recipe (``recipe_table``), one sentence per method:
    each differing column with the official value (and its settings, where they differ) -> the unified one, then
    the official per-dataset options and test-time options, which the unified protocol does not apply."""
    table = recipe_table(methods)
    notes = {}
    for name, rows in table.groupby("method", sort=False):
        unified, own = rows[rows["protocol"] == "unified"].iloc[0], rows[rows["protocol"] == "default"]
        changes = []
        for column in RECIPE_COLUMNS:
            differing = own[own[column] != unified[column]]
            if differing.empty:
                continue
            by_value = differing.groupby(column, sort=False)["setting"].agg(list)
            everywhere = len(by_value) == 1 and len(differing) == len(own)
            values = [f"{value}" if everywhere else f"{value} ({'; '.join(settings)})"
                      for value, settings in by_value.items()]
            changes.append(f"{column} {', '.join(values)} -> {unified[column]}")
        cls = get_method_class(str(name))
        per_dataset = sorted({key for dataset in B2N_DATASETS for task in ("b2n", "cross")
                              for key in cls.dataset_options(dataset, task)})
        if per_dataset:
            defaults = cls.Config()
            changes.append(f"per-dataset {', '.join(per_dataset)} -> "
                           + ", ".join(f"{key} {getattr(defaults, key):g}" for key in per_dataset) + " everywhere")
        transfer = cls.target_options("eurosat", "transfer")
        if transfer:
            changes.append(f"test-time {', '.join(transfer)} set per cross-dataset target -> the trained value")
        if changes:
            notes[str(name)] = "; ".join(changes)
    return notes


@dataclass
class ShippedGrid:
    """The committed results of a grid of runs that are current (made by this code on these weights)."""

    results: list[dict[str, Any]]  # current results, in spec order
    total: int
    stale: int  # committed but made by other code or weights: not shown

    @property
    def complete(self) -> bool:
        """Whether every run of the grid is committed and current, so the chapter can show the full table."""
        return len(self.results) == self.total

    def note(self, profile: str) -> str:
        """One sentence for a chapter when the grid is incomplete: what is there, what is stale, what to run."""
        stale = f", {self.stale} stale (made by other code or weights, not shown)" if self.stale else ""
        return (f"full grid not precomputed for this code yet: {len(self.results)} of {self.total} runs current in "
                f"data/results/{profile}/ or your cache{stale}; `perlkit results` computes them")


def shipped_grid(session: Session, specs: Sequence[RunSpec]) -> ShippedGrid:
    """The stored results of ``specs`` with a current fingerprint, read as the session reads them (the committed
    ``data/results`` first, then the user's cache, where ``perlkit results`` writes): chapters never show stale
    numbers, and show a sweep the user ran once."""
    current, stale = [], 0
    for spec in specs:
        hit = session.store.get(spec, session.fingerprint(spec))
        if hit is not None:
            current.append(hit)
        elif session.store.get(spec) is not None:
            stale += 1
    return ShippedGrid(current, len(specs), stale)
