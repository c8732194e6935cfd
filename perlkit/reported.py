"""Numbers reported by the PERL paper and its rivals, as tidy tables (see perlkit/assets/reported/README.md)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from perlkit.files import package_path

__all__ = [
    "DYNAMICS_PROTOCOLS", "PROMPT_LEARNING_RIVALS", "REPORTED_DIR", "available", "citation", "display_name",
    "efficiency_table", "fig4_accuracy_by_step", "fig4_start_end", "fig5_kl_split", "fig8_step0_accuracy",
    "load_reported", "prompt_learning_rivals", "reported_b2n", "reported_dir", "table5_b2n", "table6_b2n",
    "table7_cross_dataset",
]

#: the reported CSVs ship inside the package (package data), so an installed wheel has them too
REPORTED_DIR: Path = package_path("assets", "reported")

B2N_SETTINGS: tuple[str, ...] = ("unified_1epoch", "default_recipe", "own_paper")

# Keep text columns as text: "table" holds values like "1/5" and "6"; labels like "4.9M" must not be parsed.
_STRING_COLUMNS = {
    "table",
    "setting",
    "method",
    "dataset",
    "source",
    "note",
    "label",
    "params",
    "variant",
    "ablation",
    "id",
    "key",
    "citation",
    "url",
    "figure",
    "metric",
    "protocol",
    "unit",
    "claim",
    "where",
    "what",
    "values",
    "how_perlkit_handles",
    "params_label",
}


def reported_dir() -> Path:
    """Directory of the reported CSVs; PERLKIT_REPORTED_DIR overrides it so tests and installs can relocate data."""
    override = os.environ.get("PERLKIT_REPORTED_DIR")
    return Path(override).expanduser().resolve() if override else REPORTED_DIR


def available() -> list[str]:
    """Sorted table names (CSV stems) so callers and error messages can list what exists."""
    return sorted(p.stem for p in reported_dir().glob("*.csv"))


def load_reported(table: str) -> pd.DataFrame:
    """Load one reported table by file stem, with text columns kept as strings so labels survive intact."""
    names = available()
    if table not in names:
        raise ValueError(f"unknown reported table {table!r}; available: {', '.join(names)}")
    path = reported_dir() / f"{table}.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    dtypes = {c: "string" for c in header if c in _STRING_COLUMNS}
    numeric_na = {c: [""] for c in header if c not in _STRING_COLUMNS}
    # Empty text cells stay "" (not NA); empty numeric cells become NaN.
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=numeric_na)


def reported_b2n(setting: str = "unified_1epoch") -> pd.DataFrame:
    """Base-to-novel rows of one setting, because the paper's tables mix protocols that must not be compared.

    Note: in ``unified_1epoch`` MMRL++ has two ``average`` rows, Table 1's (correct) and Table 5's (a known
    duplicate of MMRL's, flagged in ``note``); filter on ``table`` to pick one.
    """
    if setting not in B2N_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; available: {', '.join(B2N_SETTINGS)}")
    df = load_reported("b2n")
    return df[df["setting"] == setting].reset_index(drop=True)


def citation(key: str) -> str:
    """Full citation text for a ``source`` key, so every reported number can be traced to its origin."""
    sources = load_reported("sources")
    hit = sources.loc[sources["key"] == key, "citation"]
    if hit.empty:
        raise KeyError(f"unknown source key {key!r}")
    return str(hit.iloc[0])


# ================================================================================================================
# Reported tables as the book shows them: one function a table, numbers as printed, each frame's citation in
# ``.attrs["source"]`` (and the printed cells the CSVs flag as doubtful in ``.attrs["notes"]``). Nothing here reads an
# executed result.
# ================================================================================================================

#: the prompt-learning methods the PERL paper compares with besides the rivals perlkit runs (paper order)
PROMPT_LEARNING_RIVALS: tuple[str, ...] = ("CoOp", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC", "TCP", "ProVP")
#: the reasoning-dynamics protocols of Figs. 4 and 7 (``dynamics.csv`` ``protocol``) as the book names them
DYNAMICS_PROTOCOLS: dict[str, str] = {
    "b2n_base": "base-to-novel: base", "b2n_novel": "base-to-novel: novel", "b2n": "base-to-novel",
    "cross_dataset": "cross-dataset (10 targets)", "domain_generalization": "domain generalisation (4 variants)",
}
_B2N_COLUMNS = {"base": "Base", "novel": "Novel", "hm": "HM"}
_START_END_QUANTITIES = {
    "target_confidence": "target confidence (%)", "brier": "Brier score",
    "input_jacobian_norm_target_logit": "input-Jacobian norm (target logit)",
}
_EFFICIENCY_QUANTITIES = {
    "encoder_cost_ratio_vs_zero_shot": "encoder cost vs zero-shot CLIP", "latency": "inference latency",
    "throughput": "inference throughput", "compute": "inference compute", "training_time": "training time",
    "training_cost_per_image": "training cost per image",
}
_SOURCE_SHORT = {"perl2026_limitations": "PERL paper, Limitations", "discovl_t6": "DiscoVL, Table 6",
                 "own_rmma_summary": "R-MMA summary"}
#: a note that points at a known inconsistency (``inconsistencies.csv`` ids) or calls a printed cell doubtful
_FLAG = re.compile(r"\((?:P|R|O|X)\d+\)|suspicious|KNOWN WRONG")


def _sources(keys: Iterable[str]) -> str:
    """One citation string for the ``source`` keys a table draws on (each once, in order of first use)."""
    return "; ".join(citation(key) for key in dict.fromkeys(keys))


def display_name(key: str) -> str:
    """A dataset key ('oxford_flowers') as the paper prints it ('Flowers102'); 'average' and unknown keys pass. (The
    registry is imported on first use: the data package is heavy and this module is not.)"""
    from perlkit.data.registry import DISPLAY_NAMES

    return DISPLAY_NAMES.get(key, key.capitalize() if key == "average" else key)


def _dataset_order(keys: Iterable[str]) -> list[str]:
    """Dataset keys in the paper's order, the average last."""
    from perlkit.data.registry import DATASET_NAMES

    rank = {name: i for i, name in enumerate((*DATASET_NAMES, "average"))}
    return sorted(dict.fromkeys(keys), key=lambda k: rank.get(k, len(rank)))


def _flags(rows: pd.DataFrame) -> list[str]:
    """'method, dataset: note' of every row whose note flags its printed value, so a table never hides a doubt."""
    return [f"{r.method}, {display_name(str(r.dataset))}: {r.note}" for r in rows.itertuples()
            if _FLAG.search(str(r.note))]


def _cells(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """``value`` of tidy rows as datasets (rows, paper order) by methods (columns, the CSV's order = the paper's)."""
    wide = rows.pivot(index="dataset", columns="method", values=value)
    wide = wide.reindex(index=_dataset_order(rows["dataset"]), columns=list(dict.fromkeys(rows["method"])))
    wide.index = [display_name(d) for d in wide.index]
    return wide.rename_axis(index="dataset", columns="method")


def _b2n_cells(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric of base-to-novel rows as datasets by methods, with the rows' citation and flagged cells."""
    if metric not in _B2N_COLUMNS:
        raise ValueError(f"unknown metric {metric!r}; available: {', '.join(_B2N_COLUMNS)}")
    table = _cells(rows, metric)
    table.attrs["source"] = _sources(rows["source"])
    table.attrs["notes"] = _flags(rows)
    table.attrs["metric"] = _B2N_COLUMNS[metric]
    return table


def table5_b2n(metric: str = "hm") -> pd.DataFrame:
    """One metric (base / novel / hm) of the paper's Table 5, every method of the unified one-epoch setting per
    dataset: the per-dataset cells behind Table 1's averages. MMRL++'s average is Table 1's, since Table 5 prints
    MMRL's there (P4; ``attrs["notes"]`` says so)."""
    rows = reported_b2n("unified_1epoch")
    table = _b2n_cells(rows[rows["table"] != "5"], metric)
    table.attrs["notes"] += _flags(rows[rows["table"] == "5"])
    return table


def table6_b2n(metric: str = "hm") -> pd.DataFrame:
    """One metric of the paper's Table 6 per dataset: each rival under its own default recipe (its own epochs and
    schedule) beside PERL's one-epoch cells, the comparison the paper makes in App. D."""
    return _b2n_cells(reported_b2n("default_recipe"), metric)


def table7_cross_dataset() -> pd.DataFrame:
    """The paper's Table 7 (cross-dataset, ImageNet source, each rival under its own default recipe): accuracy per
    dataset (rows: the ImageNet source, the 10 targets, their printed average) by method."""
    xd = load_reported("cross_dataset")
    rows = xd[(xd["setting"] == "default_recipe") & (xd["table"] == "7")]
    table = _cells(rows, "accuracy").rename(index={"ImageNet": "ImageNet (source)", "Average": "Average (targets)"})
    table.attrs["source"] = _sources(rows["source"])
    table.attrs["notes"] = _flags(rows)
    return table


def prompt_learning_rivals(methods: Iterable[str] = PROMPT_LEARNING_RIVALS) -> pd.DataFrame:
    """Everything the reported CSVs hold of ``methods`` (one row each), for the rivals perlkit does not run: the
    paper's #Params label, the official code's count, Fig. 1's novel label, the base-to-novel averages of Tables 5
    (one epoch) and 6 (own recipe), and the cross-dataset (Tables 2, 7) and DG (Table 8) averages. A missing cell
    (NaN) is one the sources do not print. Transpose it (``.T``) for a page."""
    methods = list(methods)
    params, fig1 = load_reported("params"), load_reported("fig1_novel_vs_params")
    b2n, xd, dg = load_reported("b2n"), load_reported("cross_dataset"), load_reported("domain_generalization")
    printed = params["source"].isin(["perl2026_params_col", "perl2026_appA"])  # PERL's '6K' is App. A's count
    label = params[printed].drop_duplicates("method").set_index("method")
    code = params[params["source"].str.endswith("_code")].drop_duplicates("method").set_index("method")
    fig1 = fig1.set_index("method")
    used: list[pd.DataFrame] = [label, code, fig1]
    columns: dict[str, pd.Series] = {
        "#Params (paper)": label["label"],
        "trainable params (official code)": code["trainable_params"],
        "novel (Fig. 1)": fig1["novel"],
    }
    average_b2n = b2n[(b2n["dataset"] == "average") & (b2n["table"] != "5")]
    for table, epoch in (("1/5", "1 epoch, Table 5"), ("6", "own recipe, Table 6")):
        part = average_b2n[average_b2n["table"] == table].set_index("method")
        used.append(part)
        for metric, name in _B2N_COLUMNS.items():
            columns[f"{name} ({epoch})"] = part[metric]
    for frame, table, name in ((xd, "2", "cross-dataset avg (1 epoch, Table 2)"),
                               (xd, "7", "cross-dataset avg (own recipe, Table 7)"),
                               (dg, "8", "DG avg (own recipe, Table 8)")):
        part = frame[(frame["table"] == table) & (frame["dataset"] == "average")].set_index("method")
        used.append(part)
        columns[name] = part["accuracy"]
    out = pd.DataFrame(columns).reindex(methods).rename_axis(index="method")
    out.attrs["source"] = _sources(key for frame in used for key in frame.loc[frame.index.isin(methods), "source"])
    return out


def _dynamics(figure: str, metric: str | None = None) -> pd.DataFrame:
    """Rows of one figure of ``dynamics.csv`` (one metric, if given), each reading's midpoint as ``value``."""
    rows = load_reported("dynamics")
    rows = rows[(rows["figure"] == figure) & ((rows["metric"] == metric) if metric else True)]
    return rows.assign(value=(rows["value_low"] + rows["value_high"]) / 2)


def _read_as(low: float, high: float) -> str:
    """A reading as the figure gives it: one value, or the range read off it."""
    return f"{low:g}" if low == high else f"{low:g}–{high:g}"


def fig4_accuracy_by_step() -> pd.DataFrame:
    """Accuracy (%) after each reasoning step, read off the paper's Figs. 4 and 7 (base-to-novel base and novel,
    cross-dataset, domain generalisation): rows are steps 0 (zero-shot) to 4, columns protocols. The figures average
    differently from the tables (base at step 4 reads 77.6, Table 5 prints 73.97): for shape, not level. For
    ``plots.dynamics_lines``: ``.reset_index().melt(id_vars="step", value_name="accuracy")``."""
    rows = _dynamics("fig4_fig7", "accuracy")
    table = rows.assign(step=rows["step"].astype(int)).pivot(index="step", columns="protocol", values="value")
    table = table[[p for p in DYNAMICS_PROTOCOLS if p in table.columns]].rename(columns=DYNAMICS_PROTOCOLS)
    table = table.rename_axis(columns="protocol")
    table.attrs["source"] = _sources(rows["source"])
    table.attrs["notes"] = list(dict.fromkeys(rows["note"]))
    return table


def fig4_start_end() -> pd.DataFrame:
    """Target confidence, Brier score and input-Jacobian norm at step 0 and step 4, per protocol, read off Figs. 4
    and 7, which give only a curve's two ends for these: the midpoint of each reading, the change, and ``read as``
    (the range where the figure gives one). Rows: (quantity, protocol), in the order of ``DYNAMICS_PROTOCOLS``."""
    rows = _dynamics("fig4_fig7")
    rows = rows[rows["metric"].isin(list(_START_END_QUANTITIES))].assign(step=lambda r: r["step"].astype(int))
    first, last = int(rows["step"].min()), int(rows["step"].max())
    records = []
    for metric in _START_END_QUANTITIES:
        for protocol in DYNAMICS_PROTOCOLS:
            by_step = rows[(rows["metric"] == metric) & (rows["protocol"] == protocol)].set_index("step")
            if by_step.empty:
                continue
            start, end = by_step.loc[first], by_step.loc[last]
            records.append({
                "quantity": _START_END_QUANTITIES[metric], "protocol": DYNAMICS_PROTOCOLS[protocol],
                f"step {first}": start["value"], f"step {last}": end["value"], "change": end["value"] - start["value"],
                "read as": f"{_read_as(start['value_low'], start['value_high'])} → "
                           f"{_read_as(end['value_low'], end['value_high'])}",
            })
    table = pd.DataFrame(records).set_index(["quantity", "protocol"])
    table.attrs["source"] = _sources(rows["source"])
    table.attrs["notes"] = list(dict.fromkeys(rows["note"]))
    return table


def fig5_kl_split() -> pd.DataFrame:
    """Fig. 5's split of test images by how their prediction moves over the steps (correct to correct, wrong to
    correct): the median KL divergence of each step's class distribution from step 0's, as read off the figure
    (an order of magnitude, or a range over the steps)."""
    rows = _dynamics("fig5", "kl_from_step0_median")
    table = pd.DataFrame({
        "prediction": rows["protocol"].str.replace("_to_", " → ").str.replace("_", " ").to_numpy(),
        "median KL(p_k || p_0), low": rows["value_low"].to_numpy(),
        "median KL(p_k || p_0), high": rows["value_high"].to_numpy(),
        "reading": rows["note"].str.replace("[F] ", "", regex=False).to_numpy(),
    }).set_index("prediction")
    table.attrs["source"] = _sources(rows["source"])
    return table


def fig8_step0_accuracy() -> pd.DataFrame:
    """Step-0 (zero-shot) accuracy per dataset read off the paper's Fig. 8 (±0.5), beside the zero-shot CLIP cells
    Table 5 prints for the same dataset: the two disagree by up to ~7 points (EuroSAT), so the figure's curves and
    the tables come from different evaluations."""
    rows = _dynamics("fig8", "accuracy")
    clip = reported_b2n("unified_1epoch").query("method == 'CLIP'").set_index("dataset")
    records = {}
    for dataset in _dataset_order(rows["dataset"]):
        part = rows[rows["dataset"] == dataset].set_index("protocol")
        record: dict[str, object] = {}
        for protocol, metric in (("b2n_base", "base"), ("b2n_novel", "novel")):
            hit = part.loc[protocol] if protocol in part.index else None
            name = _B2N_COLUMNS[metric]
            record[f"{name}, step 0 (Fig. 8)"] = hit["value"] if hit is not None else float("nan")
            record[f"{name}, zero-shot CLIP (Table 5)"] = clip.loc[dataset, metric] if hit is not None else float("nan")
        record["read as"] = "; ".join(f"{_B2N_COLUMNS[p.removeprefix('b2n_')]} {_read_as(r.value_low, r.value_high)}"
                                      for p, r in part.iterrows() if r.value_low != r.value_high)
        records[display_name(dataset)] = record
    table = pd.DataFrame.from_dict(records, orient="index").rename_axis(index="dataset")
    table.insert(2, "Base gap (Fig. 8 − Table 5)",
                 table["Base, step 0 (Fig. 8)"] - table["Base, zero-shot CLIP (Table 5)"])
    table.attrs["source"] = _sources([*rows["source"], *clip.loc[_dataset_order(rows["dataset"]), "source"]])
    return table


def efficiency_table(metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The cost numbers the sources report (``efficiency.csv``; only ``metrics``, if given, e.g.
    ``["training_cost_per_image"]`` for R-MMA 1.6 vs MMA 2.2 ms/image), each with who reported it and on what: to put
    beside perlkit's own bench, never into it (different hardware, batch and code)."""
    rows = load_reported("efficiency")
    if metrics is not None:
        unknown = sorted(set(metrics) - set(rows["metric"]))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; available: {', '.join(dict.fromkeys(rows['metric']))}")
        rows = rows[rows["metric"].isin(list(metrics))]
    table = pd.DataFrame({
        "method": rows["method"].to_numpy(),
        "quantity": rows["metric"].map(lambda m: _EFFICIENCY_QUANTITIES.get(m, m)).to_numpy(),
        "value": rows["value"].to_numpy(),
        "unit": rows["unit"].to_numpy(),
        "reported by": rows["source"].map(lambda k: _SOURCE_SHORT.get(k, k)).to_numpy(),
        "note": rows["note"].to_numpy(),
    })
    table.attrs["source"] = _sources(rows["source"])
    return table
