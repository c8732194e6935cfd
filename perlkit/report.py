"""What the chapters show that is not a result itself: each method's recipe under both protocols, which committed
results of a grid are current, the labels that name a profile and its runs, and the tables and notes chapters build
from results and the reported numbers (so a chapter cell is a call, a table and a figure, and this code has tests).

The recipe tables are computed from the code that trains (``Method.recipe``, ``dataset_recipe``, ``own_template``,
``crop_scale``, ``perlkit.engine.recipe``), never restated, so they cannot drift from what the runs do; the sources
are the official configs each method cites in ``Method.recipe_sources``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from perlkit import plots
from perlkit.backbone import FrozenCLIP
from perlkit.data.registry import B2N_DATASETS, DG_TARGETS, SINGLE_TEMPLATE, XD_TARGETS
from perlkit.engine import TrainConfig, protocol_crop_scale, protocol_template, recipe
from perlkit.experiments import (
    RunSpec,
    Session,
    ZeroshotComparison,
    ablation_order,
    ablation_specs,
    ablation_summary,
    b2n_specs,
    b2n_summary,
    b2n_table,
)
from perlkit.experiments.ablations import HM_INTERVAL
from perlkit.methods import Method, build_method, get_method_class, list_methods
from perlkit.methods.perl import PERL_VARIANTS, PERLConfig
from perlkit.mini.weights import MINI_MODEL
from perlkit.profiles import Profile, get_profile
from perlkit.reported import load_reported, reported_b2n
from perlkit.stats import seed_half_widths

__all__ = [
    "MODEL_LABELS", "PROVENANCE_TITLE", "RECIPE_SETTINGS", "REPORTED_TABLES", "UNIFIED_SOURCE", "ShippedGrid",
    "StepExample", "ablation_average", "ablation_runs", "ablation_sources", "ablation_table", "adaptation_view",
    "component_cost_table", "default_config_note", "dynamics_ends", "execution_status", "fig3a_consistency",
    "first_test_images", "gap_comparison", "hm_by_dataset", "hm_consistency", "hm_params_points", "live_b2n_table",
    "live_label", "mma_adapter_note", "model_label", "official_param_counts", "paper_headline", "param_budget",
    "parameter_cell", "parameter_table", "perl_param_counts", "precomputed_ablations", "precomputed_note",
    "profile_label", "provenance_note", "recipe_sources", "recipe_table", "reported_ablation", "reported_b2n_average",
    "reported_hm_params_points", "reported_param_labels", "reported_transfer", "require_every_dataset_per_seed",
    "runs_provenance", "runs_with_average", "seed_label", "shipped_grid", "source_titles", "step_example",
    "stored_ablation_grids", "stored_adaptation", "trainable_params", "training_cost_table", "transfer_by_target",
    "unified_overrides", "unrepeated_rows", "variant_params", "variant_table",
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


# ================================================================================================================
# Labels: what a printed line, a table column or a figure title calls the profile, its model and the live runs
# ================================================================================================================
#: open_clip model names as the book prints them
MODEL_LABELS: dict[str, str] = {MINI_MODEL: "mini CLIP", "ViT-B-16": "ViT-B/16"}


def _profile(profile: Profile | str) -> Profile:
    return get_profile(profile) if isinstance(profile, str) else profile


def profile_label(profile: Profile | str) -> str:
    """'mini profile' or 'paper profile', read from the profile a chapter runs (its ``profile`` parameter), so a
    label never names the mini world on a paper execution."""
    return f"{_profile(profile).name} profile"


def model_label(profile: Profile | str) -> str:
    """The frozen CLIP a profile runs as tables and titles name it ('mini CLIP', 'ViT-B/16', else open_clip's name)."""
    model = _profile(profile).model
    return MODEL_LABELS.get(model, model)


def seed_label(seeds: Sequence[int]) -> str:
    """'seed 1' or 'seeds 1, 2, 3'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def live_label(datasets: Sequence[str], seeds: Sequence[int]) -> str:
    """Which live runs a panel or a column shows: 'dtd, eurosat; seeds 1, 2'."""
    return f"{', '.join(datasets)}; {seed_label(seeds)}"


def source_titles(profile: Profile | str, datasets: Sequence[str], seeds: Sequence[int]) -> tuple[str, str]:
    """Titles of the two executed sources shown beside the paper's numbers: this execution's live runs and the
    precomputed grid (every base-to-novel dataset, the same seeds), each named by its profile."""
    name = _profile(profile).name
    return (f"{name} ({live_label(datasets, seeds)})",
            f"{name}, {len(B2N_DATASETS)} datasets; {seed_label(seeds)} (precomputed)")


def execution_status(results_root: str | Path | None = None, bench_dir: str | Path | None = None) -> str:
    """What has been executed on which profile, read from the committed files (result files per profile, bench
    records with their device and weights), so that the landing page never calls a profile reproduced that has not
    run."""
    from perlkit.bench import BENCH_DIR, load_records
    from perlkit.bench.record import SMOKE_MARK
    from perlkit.experiments.store import SHIPPED_RESULTS

    root, records = Path(results_root or SHIPPED_RESULTS), load_records(bench_dir or BENCH_DIR).values()
    lines = []
    for name in ("mini", "paper"):
        runs = len(list((root / name).glob("*.json")))
        said = f"{runs:,} training and evaluation runs (data/results/{name})" if runs else \
            "no training or evaluation run"
        benches = sorted({f"{r.device_name} ({MODEL_LABELS.get(r.model, r.model)}, {r.weights} weights)"
                          for r in records if r.profile == name})
        line = f"**{name} profile**: {said}" + (f"; timing bench on {', '.join(benches)}" if benches else "")
        if name == "paper":
            smokes = sorted(Path(bench_dir or BENCH_DIR).glob(f"*{SMOKE_MARK}.json"))  # full runs, not -quick ones
            line += "".join(_smoke_status(path) for path in smokes)
        lines.append(line)
    return "; ".join(lines) + "."


def _smoke_status(path: Path) -> str:
    """One clause for a shipped ``perlkit smoke`` record: how many runs, on what, passed or which failed."""
    import json

    record = json.loads(path.read_text())
    runs = sum(len(by_dataset) for by_dataset in record.get("runs", {}).values())
    settings = record.get("settings", {})
    planned = len(settings.get("methods", [])) * len(settings.get("datasets", []))
    failed = record.get("failed") or []
    if failed:
        outcome = f"failed: {', '.join(failed)}"
    elif record.get("complete", True):
        outcome = "every one passed" if record.get("ok") else "failed: ?"
    else:  # a run stopped from outside keeps what it measured (``"complete": false``)
        outcome = f"stopped after {runs} of {planned} runs by its time limit, every finished run passed"
    chosen = settings.get("methods", [])
    methods = "every method" if set(list_methods()) <= set(chosen) else ", ".join(chosen)
    return (f"; end-to-end smoke on {record.get('device_name')} ({methods}, {runs} runs with "
            f"{record.get('weights')} weights on synthetic data in the CoOp layout; {path.name}): {outcome}")


def trainable_params(backbone: FrozenCLIP, method: str = "perl", **options: Any) -> int:
    """Trainable parameters of a method built on ``backbone``: counts need the architecture only (random weights)."""
    return build_method(method, backbone, **options).num_trainable()


# ================================================================================================================
# Chapters 01 (introduction), 02 (method), 08 (dynamics) and 11 (reproduce)
# ================================================================================================================
def paper_headline() -> pd.DataFrame:
    """Zero-shot CLIP and PERL as the paper reports them (Tables 1, 2 and 8, App. A): the claims the book checks."""
    b2n = reported_b2n("unified_1epoch").set_index(["method", "dataset"])
    xd = load_reported("cross_dataset").query("table == '2'").set_index(["method", "dataset"])["accuracy"]
    dg = load_reported("domain_generalization").query("table == '8'").set_index(["method", "dataset"])["accuracy"]
    params = load_reported("params").set_index("method")["trainable_params"]
    headline = pd.DataFrame(
        {
            "zero-shot CLIP": [b2n.loc[("CLIP", "average"), m] for m in ("base", "novel", "hm")]
            + [float("nan"), dg.loc[("CLIP", "average")], 0],
            "PERL": [b2n.loc[("PERL", "average"), m] for m in ("base", "novel", "hm")]
            + [xd.loc[("PERL", "average")], dg.loc[("PERL", "average")], params["PERL"]],
        },
        index=["base-to-novel: base (Table 1)", "base-to-novel: novel (Table 1)", "base-to-novel: HM (Table 1)",
               "cross-dataset: 10-target average (Table 2)", "domain generalisation: 4-variant average (Table 8)",
               "trainable parameters (App. A)"],
    )
    headline.columns = pd.MultiIndex.from_product([["reported (paper)"], headline.columns])
    return headline


def perl_param_counts(model: str, backbone: FrozenCLIP) -> dict[str, Any]:
    """PERL's projector sizes on a backbone, counted, beside the closed form 5(d_v + d_t) + 2 (one table row)."""
    method = build_method("perl", backbone)
    per = {m: sum(p.numel() for p in method.projectors[m].parameters()) for m in ("vision", "text")}
    dv, dt = backbone.width("vision"), backbone.width("text")
    return {"model": model, "d_v": dv, "d_t": dt, "vision projector": per["vision"], "text projector": per["text"],
            "total (counted)": method.num_trainable(), "5(d_v + d_t) + 2": 5 * (dv + dt) + 2}


def first_test_images(session: Session, names: Sequence[str], samples: int) -> list[tuple[str, list[tuple[Any, str]]]]:
    """The rows of ``plots.image_grid``: per dataset (its display name), the first test image of each of its first
    ``samples`` classes, with the class name; the same grid on every run."""
    from perlkit.data import DISPLAY_NAMES, open_image

    rows = []
    for name in names:
        firsts: dict[int, Any] = {}
        for item in session.dataset(name).test:
            firsts.setdefault(item.label, item)
        items = [firsts[label] for label in sorted(firsts)[:samples]]
        rows.append((DISPLAY_NAMES[name], [(open_image(item.impath), item.classname) for item in items]))
    return rows


def unrepeated_rows(table: pd.DataFrame | None, shown: pd.DataFrame,
                    keep: Sequence[str] = ("Average",)) -> tuple[pd.DataFrame | None, str]:
    """``table`` (a precomputed grid, one row per dataset) without the rows that ``shown`` (the live runs above it)
    already has with the same numbers, so that no row is printed twice, and a sentence saying what was left out.
    The rows in ``keep`` (the grid's average) stay; when every other row was shown, nothing is left (None): the live
    runs are the whole grid. No table (an incomplete grid): None and no sentence."""
    if table is None:
        return None, ""
    rows = [row for row in table.index if row not in keep]
    same = [row for row in rows if row in shown.index
            and table.loc[row].equals(shown.loc[row].reindex(table.columns))]
    if not same:
        return table, ""
    if len(same) == len(rows):
        return None, (f"The live runs above are the whole {len(rows)}-dataset grid, with the same numbers; it is not "
                      "shown twice.")
    return table.drop(index=same), (f"Left out, as the table above shows them with the same numbers: "
                                    f"{', '.join(same)}. The average is over all {len(rows)} datasets.")


def dynamics_ends(dynamics: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per-step metrics (``reasoning_dynamics``, averaged over seeds) at step 0 and step ``steps`` side by side:
    one row per dataset and test subset, one column per metric and step."""
    from perlkit.data import DISPLAY_NAMES

    ends = dynamics[dynamics["step"].isin([0, steps])].pivot_table(
        index=["dataset", "subset"], columns="step", values=["accuracy", "confidence", "brier"], sort=False)
    ends.columns = [f"{metric} (step {step})" for metric, step in ends.columns]
    ends.index = [f"{DISPLAY_NAMES[d]} {s}" for d, s in ends.index]
    return ends


@dataclass
class StepExample:
    """One test image followed through the reasoning steps (the paper's Fig. 6), and how many images flip."""

    index: int  # the image shown: the first that flips from wrong (step 0) to right (last step), else the first
    true_class: str
    classes: list[str]  # the classes shown, the most probable at the last step first
    table: pd.DataFrame  # one row per (step, class): step, class, probability
    images: int
    flips: int  # wrong at step 0, right at the last step
    losses: int  # right at step 0, wrong at the last step


def step_example(
    logits: Sequence[torch.Tensor], labels: torch.Tensor, classnames: Sequence[str], shown: int = 8
) -> StepExample:
    """The image to follow step by step, from per-step logits (``step_logits_on_test_set``): the first that flips
    from wrong to right, with the ``shown`` classes it finds most probable at any step."""
    probs = torch.stack([step.softmax(-1) for step in logits])  # [steps + 1, images, classes]
    first, last = probs[0].argmax(-1), probs[-1].argmax(-1)
    flips = ((first != labels) & (last == labels)).nonzero().flatten()
    losses = int(((first == labels) & (last != labels)).sum())
    index = int(flips[0]) if len(flips) else 0
    top = probs[:, index].topk(min(shown, probs.shape[-1]), dim=-1).indices.flatten().unique().tolist()
    top = sorted(top, key=lambda c: -float(probs[-1, index, c]))[:shown]
    names = [classnames[c] for c in top]
    table = pd.DataFrame([{"step": k, "class": names[i], "probability": float(probs[k, index, c])}
                          for k in range(probs.shape[0]) for i, c in enumerate(top)])
    return StepExample(index, classnames[int(labels[index])], names, table, len(labels), len(flips), losses)


def parameter_cell(source: str) -> dict[str, tuple[str, str]]:
    """Each parameter of a chapter's ``parameters`` cell: name -> (default, meaning). The default is the value as
    written (a list wrapped over lines joined back into one); the meaning is the comment after the value and the
    indented comment-only lines right below it, which continue it (a meaning wrapped to fit the book's code box;
    papermill reads the first line only). A comment line that starts at column 0 is no parameter's."""
    import ast
    import io
    import re
    import tokenize

    lines = source.splitlines()
    comments = {token.start[0]: token.string[1:].strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(
            node, "target", None)
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        default = re.sub(r"\s*\n\s*", " ", ast.get_source_segment(source, node.value) or "")
        meaning, row = [comments.get(node.end_lineno, "")], node.end_lineno + 1
        while row <= len(lines) and lines[row - 1].startswith(" ") and lines[row - 1].strip().startswith("#"):
            meaning.append(comments[row])
            row += 1
        out[target.id] = (default, " ".join(m for m in meaning if m))
    return out


def parameter_table(toc: str | Path) -> pd.DataFrame:
    """Every parameter of every chapter the book's ``_toc.yml`` lists, read from the chapters' parameters cells
    (``parameter_cell``; markdown pages and chapters not written yet have none): one row per parameter, default and
    meaning, naming the chapters (by number) that take it, so that ``profile`` or ``data_root`` is listed once, not
    once a chapter."""
    import json

    import yaml

    toc = Path(toc)
    chapters = [c["file"] for part in yaml.safe_load(toc.read_text())["parts"] for c in part["chapters"]]
    rows = []
    for chapter in chapters:
        path = toc.parent / f"{chapter}.ipynb"
        if not path.is_file():
            continue
        cells = json.loads(path.read_text())["cells"]
        source = next(("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", [])), "")
        for name, (default, meaning) in parameter_cell(source).items():
            rows.append({"chapter": path.stem.split("_")[0], "parameter": name, "default": default,
                         "meaning": meaning})
    frame = pd.DataFrame(rows, columns=["chapter", "parameter", "default", "meaning"])
    table = frame.groupby(["parameter", "default", "meaning"], sort=False)["chapter"].agg(", ".join)
    return table.rename("chapters").reset_index().set_index("parameter")[["chapters", "default", "meaning"]]


# ================================================================================================================
# Chapter 07 (ablations)
# ================================================================================================================
#: how each reported ablation table (``ablations.csv``) names its rows, as perlkit's ablation values
_REPORTED_VALUES: dict[str, Callable[[str], str]] = {
    "fig3a": lambda v: v.split("=")[1],  # 'J=7' -> '7'
    "fig3b": lambda v: v.split("=")[1],  # 'K=4' -> '4'
    "3": lambda v: v.split()[0].lower(),  # 'Both (PERL)' -> 'both'
    "4": lambda v: v.removeprefix("PERL-").lower(),  # 'PERL-LayerStep' -> 'layerstep'
}


def reported_ablation(table: str) -> pd.DataFrame:
    """One reported ablation (paper Fig. 3a/3b, Table 3 or 4) as value / base / novel / hm / params rows, its values
    named as perlkit's (``ABLATIONS``), so it lines up with the executed ones."""
    reported = load_reported("ablations")
    rows = reported[reported["table"] == table]
    return rows.assign(value=rows["variant"].map(_REPORTED_VALUES[table]))[
        ["value", "base", "novel", "hm", "params"]].reset_index(drop=True)


def ablation_average(summary: pd.DataFrame) -> pd.DataFrame:
    """The 'average' rows of an ablation summary (``run_ablation``), one per value: what tables and figures show."""
    return summary[summary["dataset"] == "average"].drop(columns="dataset").reset_index(drop=True)


def precomputed_ablations(
    session: Session, kinds: Iterable[str], seeds: Sequence[int] = (1,), **common: Any
) -> tuple[dict[str, pd.DataFrame | None], dict[str, ShippedGrid]]:
    """Each ablation's full grid (every value, all base-to-novel datasets, ``seeds``; ``common`` spec fields such as
    R-MMA's ``protocol``) summarised when every run of it is stored and current (``shipped_grid``), else None; and the
    stored grid of each complete one (for ``provenance_note``)."""
    grid: dict[str, pd.DataFrame | None] = {}
    complete = {}
    for kind in kinds:
        pairs, found = _stored_ablation_grid(session, kind, seeds, **common)
        grid[kind] = ablation_summary(pairs, found.results) if found.complete else None
        if found.complete:
            complete[kind] = found
    return grid, complete


def stored_ablation_grids(session: Session, kinds: Iterable[str], seeds: Sequence[int] = (1,),
                          **common: Any) -> dict[str, ShippedGrid]:
    """The stored full grid of each ablation in ``kinds`` that is complete and current, without summarising it
    (``precomputed_ablations`` without the summaries: what the ablation verdicts read)."""
    grids = {kind: _stored_ablation_grid(session, kind, seeds, **common)[1] for kind in kinds}
    return {kind: found for kind, found in grids.items() if found.complete}


def _stored_ablation_grid(session: Session, kind: str, seeds: Sequence[int],
                          **common: Any) -> tuple[list[tuple[Any, RunSpec]], ShippedGrid]:
    """One ablation's (value, spec) pairs over every base-to-novel dataset at ``seeds``, and what the stores hold
    of them."""
    pairs = ablation_specs(kind, None, B2N_DATASETS, list(seeds), session.profile.name, **common)
    return pairs, shipped_grid(session, [spec for _, spec in pairs])


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def precomputed_note(precomputed: Iterable[str], kinds: Sequence[str], profile: str, live: str) -> str:
    """Markdown saying which ablations the precomputed grid covers (``precomputed``: their kinds) and which show live
    runs only; where the runs come from is the chapter's ``provenance_note``."""
    live_only = f"the live runs only ({live})"
    covered = [kind for kind in kinds if kind in set(precomputed)]
    if not covered:
        count = _NUMBER_WORDS[len(kinds)] if len(kinds) < len(_NUMBER_WORDS) else len(kinds)
        return (f"**Precomputed grid: not in this checkout.** `data/results/{profile}/` holds the full grid "
                f"(every value on all {len(B2N_DATASETS)} datasets; `make results` computes it) of none of the "
                f"{count} ablations, so every table and figure below shows {live_only}, beside the paper's values.")
    note = (f"**Precomputed grid** (every value on all {len(B2N_DATASETS)} datasets) of: {', '.join(covered)}; "
            "where its runs come from is in the note at the end of the chapter.")
    absent = [kind for kind in kinds if kind not in covered]
    if absent:
        note += f"\n\nNot precomputed yet: {', '.join(absent)}; those sections show {live_only}."
    return note


def ablation_sources(
    live: pd.DataFrame | None, grid: pd.DataFrame | None, titles: tuple[str, str],
    reported: tuple[str, pd.DataFrame] | None = None,
) -> list[tuple[str, pd.DataFrame]]:
    """(title, averages) per source of one ablation: live runs, precomputed grid, reported values; executed and
    paper numbers never share a panel or a column. ``titles`` are ``source_titles``."""
    out = [(title, ablation_average(frame)) for title, frame in zip(titles, (live, grid), strict=True)
           if frame is not None]
    return out + ([reported] if reported is not None else [])


def ablation_table(
    kind: str, sources: Sequence[tuple[str, pd.DataFrame]], extra: Mapping[str, Callable[[str], object]] | None = None
) -> pd.DataFrame:
    """One column group per source (``ablation_sources``), rows in the paper's order, two decimals and '–' where a
    source has no value; ``extra`` adds 'parameters' columns computed from each value."""
    frames = {title: frame.set_index("value")[["base", "novel", "hm", *_interval_column(frame)]]
              for title, frame in sources}
    table = pd.concat(frames, axis=1) if frames else pd.DataFrame(index=pd.Index([], name="value"))
    table = table.reindex(ablation_order(kind, list(table.index)))
    for name, values in (extra or {}).items():
        table[("parameters", name)] = [values(v) for v in table.index]
    return plots.text_table(table)


def _interval_column(frame: pd.DataFrame) -> list[str]:
    """The seed interval column of an executed source that has one (several seeds), else nothing."""
    return [HM_INTERVAL] if plots.has_hm_interval(frame) else []


def hm_consistency(frame: pd.DataFrame, value: str = "J") -> pd.DataFrame:
    """The HM of each reported row's base and novel beside its printed HM. For one dataset the HM lies between base
    and novel, so a printed HM below both points at a misreading (an average of per-dataset HMs may sit a little
    below the HM of the averages, never far)."""
    hm_of_read = 2 * frame["base"] * frame["novel"] / (frame["base"] + frame["novel"])
    return pd.DataFrame({value: frame["value"], "base (read)": frame["base"], "novel (read)": frame["novel"],
                         "HM (read)": frame["hm"], "HM of the read base and novel": hm_of_read,
                         "difference": hm_of_read - frame["hm"],
                         "read HM below both": frame["hm"] < frame[["base", "novel"]].min(axis=1)})


def fig3a_consistency() -> tuple[pd.DataFrame, str]:
    """``hm_consistency`` of the pixel reading of Fig. 3a, and a verdict measured against the paper's own Table 1
    and the other reported ablations."""
    fig3a = hm_consistency(reported_ablation("fig3a"))
    others = pd.concat([hm_consistency(reported_ablation(t)) for t in ("fig3b", "3", "4")])
    b2n = load_reported("b2n")
    t1 = b2n[(b2n["table"] == "1/5") & (b2n["method"] == "PERL") & (b2n["dataset"] == "average")].iloc[0]
    t1_gap = 2 * t1["base"] * t1["novel"] / (t1["base"] + t1["novel"]) - t1["hm"]
    flagged = fig3a[fig3a["read HM below both"]]
    if not len(flagged):
        return fig3a, "Every read HM lies between the read base and novel accuracy."
    return fig3a, (
        f"In {len(flagged)} of the {len(fig3a)} rows (J = {', '.join(flagged['J'])}) the read HM is "
        f"below both the read base and the read novel accuracy, {flagged['difference'].min():.2f} to "
        f"{flagged['difference'].max():.2f} points under the HM of the two. For the paper's own PERL row of "
        f"Table 1 that difference is {t1_gap:.2f} points, and in the other reported rows of this chapter "
        f"(Fig. 3b, Tables 3 and 4) at most {others['difference'].abs().max():.2f}. The reading of Fig. 3a "
        "is therefore inconsistent (the figure itself, or its pixel reading); the table and the figure above "
        "show its values as read, and only the position of the peak is used.")


def variant_table() -> pd.DataFrame:
    """What each PERL loop variant (paper Table 4) changes, in words, and the options that build it."""
    rows = []
    for name, options in PERL_VARIANTS.items():
        split = options.get("split", PERLConfig.split)
        rows.append({"variant": name,
                     "thought tokens enter at J": ", ".join(map(str, split)) if isinstance(split, list) else split,
                     "one projector per depth": "yes" if options.get("layer_specific") else "no",
                     "one projector per step": "yes" if options.get("step_specific") else "no",
                     "perlkit options": ", ".join(f"{k}={v}" for k, v in options.items()) or "(the defaults)"})
    return pd.DataFrame(rows).set_index("variant")


def variant_params(backbone: FrozenCLIP) -> pd.DataFrame:
    """Each loop variant's exact parameter count on ``backbone`` in projector pairs, beside the pairs that Table 4's
    printed label implies (label / one pair's count) and the difference."""
    pair = trainable_params(backbone)
    table4 = reported_ablation("4")
    printed = dict(zip(table4["value"], table4["params"], strict=True))
    rows = []
    for name, options in PERL_VARIANTS.items():
        exact = trainable_params(backbone, **options)
        label = printed.get(name)
        implied = round(plots.parse_params_label(label) / pair) if label else None
        rows.append({"variant": name, "perlkit (exact)": f"{exact:,}", "paper Table 4 label": label,
                     "pairs (perlkit)": exact // pair, "pairs implied by the label": implied,
                     "difference": None if implied is None else implied - exact // pair})
    return pd.DataFrame(rows).set_index("variant")


def default_config_note(defaults: Sequence[tuple[str, str, pd.DataFrame | None]], live: str,
                        precomputed: Sequence[str]) -> str:
    """Whether the ablations that include the default configuration ((kind, value, live summary) in ``defaults``)
    show it with one accuracy, as one stored run must, and what the live runs can and cannot tell."""
    rows = {kind: ablation_average(frame).set_index("value").loc[value, ["base", "novel", "hm"]]
            for kind, value, frame in defaults if frame is not None and value in set(frame["value"])}
    first = next(iter(rows.values()), None)
    note = "The default configuration (K = 4, J = 7, r = 1, both encoders, shared loop) is a value of every ablation"
    if len(rows) < 2:
        note += "; in this execution fewer than two of the ablations include it."
    elif all(row.equals(first) for row in rows.values()):
        note += (f". It is one training run, read from the result store by each ablation, so the {len(rows)} "
                 f"ablations that include it show the same accuracy for it (HM {first['hm']:.2f} on {live}).")
    else:
        note += (". The ablations that include it show different accuracies for it (" + ", ".join(
            f"{k}: HM {r['hm']:.2f}" for k, r in rows.items()) + "), so their runs are not the same run.")
    note += (f" On the live runs alone ({live}), differences of a point or two between settings are within what "
             "another few-shot sample can change; ")
    return note + (f"the precomputed grid averages {len(B2N_DATASETS)} datasets for: {', '.join(precomputed)}."
                   if precomputed else
                   f"the {len(B2N_DATASETS)}-dataset grid that would average them out is not precomputed in this "
                   "checkout (`make results`).")


def gap_comparison(table: pd.DataFrame, column: str, method: str = "PERL", baseline: str = "zero-shot CLIP") -> str:
    """How ``method``'s value in ``column`` of a ``plots.transfer_wide`` table compares with ``baseline``'s: "wider
    than" / "narrower than", or "within the seed noise of" where the table has the difference's seed interval and
    the difference is inside it; with one seed (no interval) "wider than" / "no wider than" on the means."""
    difference = f"{method} − {baseline}"
    interval = f"{plots.SEED_INTERVAL} ({method})"
    if difference in table.index and interval in table.index:
        gap, half = table.loc[difference, column], table.loc[interval, column]
        if not pd.isna(half):
            return "within the seed noise of" if abs(gap) <= half else "wider than" if gap > 0 else "narrower than"
    return "wider than" if table.loc[method, column] > table.loc[baseline, column] else "no wider than"


# ================================================================================================================
# Chapter 10 (comparison)
# ================================================================================================================
#: per protocol, the PERL paper's matching numbers: (setting in the reported CSVs, base-to-novel table, cross-dataset
#: table); its domain-generalisation table is 8 under both
REPORTED_TABLES: dict[str, tuple[str, str, str]] = {
    "unified": ("unified_1epoch", "1", "2"), "default": ("default_recipe", "6", "7"),
}


def reported_param_labels() -> pd.Series:
    """The #Params label the PERL paper prints per method (R-MMA: its summary's), indexed by method label."""
    params = load_reported("params")
    printed = params[params["source"].isin(["perl2026_params_col", "perl2026_appA", "own_rmma_summary"])]
    return printed.drop_duplicates("method").set_index("method")["label"].rename(index=plots.method_label)


def official_param_counts() -> pd.Series:
    """Trainable parameters derived from each rival's official code (``params.csv``), indexed by method label."""
    params = load_reported("params")
    code = params[params["source"].str.endswith("_code")].drop_duplicates("method").set_index("method")
    return code["trainable_params"].astype(int).rename(index=plots.method_label)


def param_budget(methods: Sequence[str], vit_b16: Mapping[str, int], executed: Mapping[str, int],
                 executed_title: str) -> tuple[pd.DataFrame, str]:
    """Trainable parameters per method: counted on ViT-B/16 and on the executed backbone (``executed_title``), the
    paper's label and the official code's count; and the methods whose ViT-B/16 count equals the official one."""
    labels, code = reported_param_labels(), official_param_counts()
    names = [plots.method_label(m) for m in methods]
    table = pd.DataFrame({
        "method": names,
        "ViT-B/16 (perlkit)": [f"{vit_b16[m]:,}" for m in methods],
        executed_title: [f"{executed[m]:,}" for m in methods],
        "reported label": [labels.get(n, "–") for n in names],
        "official code": [f"{code[n]:,}" if n in code.index else "–" for n in names],
    }).set_index("method")
    agree = [n for m, n in zip(methods, names, strict=True) if n in code.index and vit_b16[m] == code[n]]
    differ = [n for n in names if n in code.index and n not in agree]
    return table, (", ".join(agree) or "none of the rivals") + (f" (but not {', '.join(differ)})" if differ else "")


def reported_b2n_average(setting: str, methods: Sequence[str]) -> pd.DataFrame:
    """The reported base-to-novel averages of ``methods`` (rows, by label) in one setting of the PERL paper, with
    R-MMA from its own summary; ``from`` says where each row is printed."""
    b2n = load_reported("b2n")
    average = b2n["dataset"] == "average"
    rows = pd.concat([b2n[(b2n["setting"] == setting) & average & (b2n["table"] != "5")],
                      b2n[(b2n["setting"] == "own_paper") & average & (b2n["method"] == "R-MMA")]])
    wanted = [plots.method_label(m) for m in methods]
    rows = rows.assign(method=rows["method"].map(plots.method_label))
    rows = rows[rows["method"].isin(wanted)].set_index("method").reindex(wanted)
    rows["from"] = [f"PERL paper, Table {t}" if s != "own_paper" else "R-MMA summary (its own recipe)"
                    for t, s in zip(rows["table"], rows["setting"], strict=True)]
    return rows


def reported_transfer(setting: str, xd_table: str, methods: Sequence[str]) -> pd.DataFrame:
    """Reported cross-dataset (one setting's table; R-MMA: its summary) and domain-generalisation (Table 8)
    accuracies of ``methods``: source, the two averages and every DG target, one row per method label."""
    wanted = [plots.method_label(m) for m in methods]

    def wide(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(method=frame["method"].map(plots.method_label))
        return frame[frame["method"].isin(wanted)].pivot(index="method", columns="dataset", values="accuracy")

    xd = load_reported("cross_dataset")
    xd = xd[((xd["setting"] == setting) & (xd["table"] == xd_table))
            | ((xd["setting"] == "own_paper") & (xd["method"] == "R-MMA"))]
    dg = load_reported("domain_generalization")
    return pd.concat([
        wide(xd)[["imagenet", "average"]].rename(columns={"imagenet": "ImageNet (source)",
                                                          "average": "cross-dataset avg"}),
        wide(dg[dg["table"] == "8"])[["average", *DG_TARGETS]].rename(columns={"average": "DG avg"}),
    ], axis=1).reindex(wanted)


def transfer_by_target(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """ImageNet-transfer results as one row per target (source ImageNet, the two averages, then every target) and
    one column per method label, averaged over seeds: transposed, so that the table fits the page. With several
    seeds each average is followed by its seed interval (``stats.seed_half_widths``)."""
    rows = [{"method": plots.method_label(r["spec"]["method"]), "seed": r["spec"].get("seed", 1), **r["metrics"]}
            for r in results]
    runs = pd.DataFrame(rows)
    frame = runs.drop(columns="seed").groupby("method", sort=False).mean()
    table = frame[["imagenet", "xd_average", "dg_average", *XD_TARGETS, *DG_TARGETS]].T
    if runs["seed"].nunique() > 1:
        parts = [table.loc[["imagenet"]]]
        for average in ("xd_average", "dg_average"):
            interval = seed_half_widths(runs, "method", average).rename(
                f"{plots.SEED_INTERVAL} ({plots.TABLE_LABELS.get(average, average)})")
            parts += [table.loc[[average]], interval.to_frame().T]
        table = pd.concat([*parts, table.loc[[*XD_TARGETS, *DG_TARGETS]]])
    return table.rename(index=plots.TABLE_LABELS)


def hm_by_dataset(results: Sequence[dict[str, Any]], methods: Sequence[str]) -> pd.DataFrame:
    """HM per base-to-novel dataset (rows, the paper's order, average last) and method (columns, by label), averaged
    over seeds; with several seeds the average is followed by its seed interval (``stats.seed_half_widths``)."""
    runs = b2n_table(results)
    runs["method"] = runs["method"].map(plots.method_label)
    summary = b2n_summary(runs)
    table = summary.pivot(index="dataset", columns="method", values="hm")
    datasets = [d for d in B2N_DATASETS if d in set(runs["dataset"])]
    table = table.reindex(index=[*datasets, "average"], columns=[plots.method_label(m) for m in methods])
    if runs["seed"].nunique() > 1:
        table.loc[f"{plots.SEED_INTERVAL} (average)"] = seed_half_widths(runs, "method", "hm")
    return table.rename(index=plots.TABLE_LABELS)


def live_b2n_table(runs: pd.DataFrame, methods: Sequence[str], datasets: Sequence[str]) -> pd.DataFrame:
    """Base / novel / HM per method (rows, by label) and dataset (column groups; the average last when there are
    several), means over seeds (``runs``: ``b2n_table``, every dataset at every seed); with several seeds each group
    ends with its HM's 95% seed interval (``hm ±``, ``stats.seed_half_widths``), so a one-dataset comparison shows
    its noise too."""
    require_every_dataset_per_seed(runs)
    runs = runs.assign(method=runs["method"].map(plots.method_label))
    summary = b2n_summary(runs)
    table = summary.pivot(index="method", columns="dataset", values=["base", "novel", "hm"]).swaplevel(axis=1)
    shown = [*datasets, "average"] if len(datasets) > 1 else list(datasets)
    several = runs["seed"].nunique() > 1
    blocks = {}
    for dataset in shown:
        block = table[dataset][["base", "novel", "hm"]]
        if several:
            rows = runs if dataset == "average" else runs[runs["dataset"] == dataset]
            block = block.assign(**{HM_INTERVAL: seed_half_widths(rows, "method", "hm")})
        blocks[plots.TABLE_LABELS.get(dataset, dataset)] = block
    wide = pd.concat(blocks, axis=1).rename(columns=plots.TABLE_LABELS)
    return wide.reindex([plots.method_label(m) for m in methods])


def require_every_dataset_per_seed(runs: pd.DataFrame) -> None:
    """Refuse ``b2n_table`` rows where a method lacks a dataset at some seed: a per-seed average over datasets (and
    its interval) would then mix seeds, and differ from the table's mean of per-dataset means."""
    have = runs.groupby(["method", "seed"])["dataset"].agg(frozenset)
    datasets = runs.groupby("method")["dataset"].agg(frozenset)
    missing = [(m, s, sorted(datasets[m] - got)) for (m, s), got in have.items() if got != datasets[m]]
    if missing:
        m, s, names = missing[0]
        raise ValueError(f"{m} has no run on {', '.join(names)} at seed {s} (and {len(missing) - 1} more such gaps): "
                         "a per-seed average needs every dataset at every seed; run the missing ones first")


def runs_with_average(runs: pd.DataFrame) -> pd.DataFrame:
    """``b2n_table`` rows plus, with several datasets, an 'average' row per method and seed (the mean over its
    datasets): what ``plots.comparison_bars`` draws, each bar a mean over seeds with its seed interval."""
    if runs["dataset"].nunique() < 2:
        return runs
    require_every_dataset_per_seed(runs)
    average = runs.groupby(["method", "seed"], sort=False)[["base", "novel", "hm"]].mean().reset_index()
    return pd.concat([runs, average.assign(dataset="average")], ignore_index=True)


def hm_params_points(summary: pd.DataFrame, params: Mapping[str, int]) -> pd.DataFrame:
    """The 'average' rows of a b2n summary (methods by label) with each method's trainable parameters (``params``
    by registry name) and its HM as ``accuracy``: one panel of ``plots.params_scatter``."""
    by_label = {plots.method_label(m): n for m, n in params.items()}
    average = summary[summary["dataset"] == "average"]
    return average.assign(params=average["method"].map(by_label), accuracy=average["hm"])


def reported_hm_params_points(reported: pd.DataFrame) -> pd.DataFrame:
    """``reported_b2n_average`` rows with the paper's parameter labels as numbers (zero-shot CLIP at 0) and HM as
    ``accuracy``; a row from its own paper's recipe says so in its name."""
    labels = reported_param_labels()
    zeroshot = plots.method_label("zeroshot")
    points = reported.reset_index().dropna(subset=["hm"])
    points = points.assign(params=points["method"].map(
        lambda n: plots.parse_params_label(labels[n]) if n != zeroshot else 0.0), accuracy=points["hm"])
    own = points["setting"] == "own_paper"  # R-MMA: its own recipe, whatever the protocol
    points.loc[own, "method"] = points.loc[own, "method"] + " (own recipe)"
    return points


def mma_adapter_note(comparison: ZeroshotComparison, grid: pd.DataFrame | None, profile: Profile | str) -> str:
    """How far MMA moves from zero-shot CLIP (``compare_with_zeroshot`` of an MMA run): its weights move, but its
    adapters' scaled outputs move the logits little. ``grid`` is the precomputed summary (methods by label); every
    comparison in the text is computed, so it stays true on other worlds and weights."""
    result, check = comparison.result, comparison.predictions
    dataset = result["spec"]["dataset"]
    differ = int(check["predictions that differ"].sum())
    text = (
        f"MMA does train: over the {len(result['train']['steps'])} SGD steps of the run its "
        f"{comparison.trained.num_trainable():,} adapter weights move by {comparison.weight_change:.2%} of their "
        f"initial norm. But each adapter's output is multiplied by {comparison.trained.config.adapter_scale:g} "
        "before it is added to its block (MMA's own setting; its gradient-scale trick gives the weights the gradient "
        f"of an unscaled adapter, not a larger output), so on {plots.display_name(dataset)} the logits move by at "
        f"most {check['largest logit change'].max():.3f} and {differ} of the {check['images'].sum()} test "
        f"predictions {'differs' if differ == 1 else 'differ'} from zero-shot CLIP's.")
    if grid is not None:
        mma, clip = (grid[grid["method"] == plots.method_label(m)].set_index("dataset")[["base", "novel"]]
                     for m in ("mma", "zeroshot"))
        same = int((mma.drop(index="average") == clip.drop(index="average")).all(axis=1).sum())
        hm = grid[grid["dataset"] == "average"].set_index("method")["hm"]
        text += (f" On the {len(B2N_DATASETS)}-dataset grid, MMA's base and novel accuracies equal zero-shot CLIP's "
                 f"on {same} of {len(B2N_DATASETS)} datasets, and its average HM is "
                 f"{hm[plots.method_label('mma')]:.2f} against zero-shot CLIP's "
                 f"{hm[plots.method_label('zeroshot')]:.2f}.")
    return text + (f" This is what perlkit's implementation of the published design does at this training budget on "
                   f"the {model_label(profile)}, not a measurement of MMA on the real benchmarks.")


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

    def caption(self, profile: str, hint: str = "") -> str:
        """What a chapter prints under a grid's heading: where the runs come from (``plots.provenance_caption``)
        when the grid is complete, else ``note`` and the chapter's ``hint`` (another way to fill it)."""
        if self.complete:
            return plots.provenance_caption(self.results)
        return self.note(profile) + (f"; {hint}" if hint else "")


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


def stored_adaptation(session: Session, seeds: Sequence[int]) -> tuple[dict[str, Any] | None, ShippedGrid]:
    """Issue 13's adaptation bar read from the store, nothing trained: zero-shot CLIP and each rival under its own
    default recipe on every base-to-novel dataset at ``seeds``. Base accuracies are averaged over the seeds per
    dataset, then ``adaptation_summary`` gives each rival's mean gain; ``seed_gains`` holds each seed's own mean
    gain, so a reader sees whether the verdict depends on the seed. None (and the grid, which says what is missing)
    when a run is not stored with a current fingerprint."""
    from perlkit.experiments.calibration import adaptation_summary
    from perlkit.experiments.sweeps import rival_methods

    profile, methods = session.profile.name, rival_methods()
    specs = [*b2n_specs(["zeroshot"], B2N_DATASETS, seeds, profile),
             *b2n_specs(methods, B2N_DATASETS, seeds, profile, protocol="default")]
    grid = shipped_grid(session, specs)
    if not grid.complete:
        return None, grid
    base: dict[str, dict[int, dict[str, float]]] = {}
    for result in grid.results:
        spec = result["spec"]
        base.setdefault(spec["method"], {}).setdefault(spec["seed"], {})[spec["dataset"]] = result["metrics"]["base"]

    def mean_over_seeds(by_seed: dict[int, dict[str, float]]) -> dict[str, float]:
        return {d: sum(by_seed[s][d] for s in seeds) / len(seeds) for d in B2N_DATASETS}

    zeroshot = base.pop("zeroshot")
    summary = adaptation_summary(mean_over_seeds(zeroshot), {m: mean_over_seeds(base[m]) for m in methods})
    per_seed = {s: adaptation_summary(zeroshot[s], {m: base[m][s] for m in methods})["methods"] for s in seeds}
    summary["seeds"] = list(seeds)
    summary["seed_gains"] = {m: {s: per_seed[s][m]["mean_gain"] for s in seeds} for m in methods}
    return summary, grid


def adaptation_view(summary: Mapping[str, Any]) -> pd.DataFrame:
    """``stored_adaptation``'s summary as a chapter shows it: base accuracy per dataset, the means, each rival's mean
    gain over zero-shot, then that gain at each seed; methods by their labels."""
    from perlkit.experiments.calibration import adaptation_table

    table = adaptation_table(dict(summary))
    for seed in summary["seeds"]:
        table.loc[f"gain, seed {seed}"] = pd.Series({m: g[seed] for m, g in summary["seed_gains"].items()})
    return table.rename(columns=lambda m: "zero-shot CLIP" if m == "zero-shot" else plots.method_label(m))


def ablation_runs(session: Session, values: Mapping[str, Sequence[Any]], datasets: Sequence[str],
                  seeds: Sequence[int], **common: Any) -> ShippedGrid:
    """The stored runs behind a chapter's live ablations (``values`` maps each kind to the values run live; the
    default configuration, which several ablations share, counts once): what ``provenance_note`` reports for them."""
    specs: dict[str, RunSpec] = {}
    for kind, chosen in values.items():
        if chosen:
            for _, spec in ablation_specs(kind, chosen, datasets, seeds, session.profile.name, **common):
                specs.setdefault(spec.filename, spec)
    return shipped_grid(session, list(specs.values()))


#: what a chapter's collapsible provenance note is titled
PROVENANCE_TITLE = "Where these numbers come from"


#: when this process imported the report module (a chapter's first cell): runs stored after it were trained by it
PROCESS_STARTED = datetime.datetime.now(datetime.UTC)


def _made_in_this_process(result: Mapping[str, Any]) -> bool:
    """Whether a stored run was written after this process started (its provenance's UTC ``created`` stamp)."""
    created = str(result.get("provenance", {}).get("created", ""))
    try:
        stamp = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)) >= PROCESS_STARTED.replace(
        microsecond=0)


def runs_provenance(results: Sequence[Mapping[str, Any]]) -> str:
    """One sentence on where a set of stored runs comes from: how many were committed (``data/results``), how many
    read from this machine's cache and how many trained in this execution, the newest perlkit commit and how many
    commits in all (never a list of them), the devices, the dates and whether every run's code-and-weights
    fingerprint is recorded."""
    from perlkit.experiments.store import SHIPPED_RESULTS

    if not results:
        return "no runs in this execution"
    shipped = sum(str(SHIPPED_RESULTS) in str(r.get("_path", "")) for r in results)
    now = sum(str(SHIPPED_RESULTS) not in str(r.get("_path", "")) and _made_in_this_process(r) for r in results)
    local = len(results) - shipped - now
    where = [f"{shipped} committed in data/results" if shipped else "",
             f"{local} from this machine's result cache" if local else "",
             f"{now} trained on this machine in this execution" if now else ""]
    parts = plots.provenance_parts(results)
    code = f"perlkit commit {parts['newest']}" + (
        f" (the newest of {parts['commits']})" if parts["commits"] > 1 else "")
    checked = (f"{parts['unfingerprinted']} without a code fingerprint" if parts["unfingerprinted"]
               else "code-and-weights fingerprint current")
    return (f"{len(results)} run{'s' if len(results) != 1 else ''} ({', '.join(w for w in where if w)}); {code}; "
            f"on {parts['devices']}; {parts['when']}; {checked}")


def provenance_note(sources: Mapping[str, ShippedGrid | Sequence[Mapping[str, Any]] | None],
                    profile: Profile | str) -> Any:
    """A chapter's one provenance note: a collapsed ``<details>`` block ('Where these numbers come from') with one
    line per source of executed numbers (``sources`` maps a label to the runs, or to a ``ShippedGrid``; None is left
    out): ``runs_provenance`` of the runs, or, for a grid not complete, what is missing and how to compute it. Its
    text holds dates and commits, so the cell that shows it is tagged ``remove-input`` and ``nbval-ignore-output``."""
    import html
    import re

    from IPython.display import HTML

    name = _profile(profile).name
    items = []
    for label, source in sources.items():
        if source is None:
            continue
        if isinstance(source, ShippedGrid):
            text = runs_provenance(source.results) if source.complete else source.note(name)
        else:
            text = runs_provenance(list(source))
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))
        items.append(f"<li><strong>{html.escape(label, quote=False)}</strong>: {text}</li>")
    body = "\n".join(items) or "<li>no executed numbers on this page</li>"
    return HTML(f'<details class="provenance">\n<summary>{PROVENANCE_TITLE}</summary>\n\n<p>{profile_label(name)}; '
                f"every run is read from the result store (data/results/{name}/ first, then the user's cache) or "
                f"trained and stored there.</p>\n<ul>\n{body}\n</ul>\n</details>")


def component_cost_table(records: Mapping[str, Any] | None = None, method: str = "rmma") -> pd.DataFrame:
    """Where a method's training time goes: in every bench record that also timed ``method:<option>`` variants
    (``perlkit bench --methods rmma rmma:attention=false ...``), the full method's ms per image, each variant's, and
    the difference, which is the cost of the part the option switches off (with its share of the full step)."""
    from perlkit.bench import load_records

    rows = []
    for name, record in sorted((records if records is not None else load_records()).items()):
        full = record.methods.get(method)
        if full is None or not full.train_ms_per_image:
            continue
        batch = max(full.train_ms_per_image, key=int)
        base, where = full.train_ms_per_image[batch], f"{record.device_name} ({record.model}, {name})"
        variants = {"nothing": base} | {label.split(":", 1)[1]: entry.train_ms_per_image[batch]
                                        for label, entry in record.methods.items()
                                        if label.startswith(f"{method}:") and batch in entry.train_ms_per_image}
        if len(variants) == 1:  # a record that timed no variant says nothing about the parts
            continue
        for off, ms in variants.items():
            rows.append({"record": where, "batch": int(batch), "switched off": off, "ms / image": ms,
                         "saved ms / image": base - ms, "share of the step (%)": 100 * (base - ms) / base})
    return pd.DataFrame(rows, columns=["record", "batch", "switched off", "ms / image", "saved ms / image",
                                       "share of the step (%)"])


def training_cost_table(methods: Sequence[str] = ("rmma", "mma", "perl", "mmrl")) -> pd.DataFrame:
    """Training cost per image of ``methods`` in every committed bench record (its device, model and batch: the
    largest batch it timed), beside the R-MMA summary's reported RTX 4090 timings (``efficiency.csv``)."""
    from perlkit.bench import load_records

    rows = []
    for name, record in sorted(load_records().items()):
        for method in methods:
            entry = record.methods.get(method)
            if entry is None or not entry.train_ms_per_image:
                continue
            batch = max(entry.train_ms_per_image, key=int)
            rows.append({"source": f"executed: {record.device_name} ({record.model}, {name})", "batch": batch,
                         "method": plots.method_label(method), "ms / image": entry.train_ms_per_image[batch]})
    reported = load_reported("efficiency")
    reported = reported[reported["metric"] == "training_cost_per_image"]
    for row in reported.itertuples():
        rows.append({"source": "reported: R-MMA summary (RTX 4090)", "batch": "not stated",
                     "method": plots.method_label(str(row.method).lower().replace("-", "")), "ms / image": row.value})
    table = pd.DataFrame(rows).pivot_table(index=["source", "batch"], columns="method", values="ms / image")
    return table.reset_index().rename_axis(columns=None)
