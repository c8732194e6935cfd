"""Seaborn helpers for the book's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from perlkit.data import DISPLAY_NAMES
from perlkit.experiments.ablations import ablation_order
from perlkit.experiments.store import device_label

# ================================================================================================================
# Chapters 07 (ablations), 09 (efficiency) and 10 (comparison); provenance_caption also serves chapter 04.
# ================================================================================================================

#: the three base-to-novel metrics, in the order and with the names the paper's figures use
B2N_METRICS: dict[str, str] = {"base": "Base", "novel": "Novel", "hm": "HM"}
#: readable names for the rows and columns of the comparison's tables: datasets, the averages, the metrics
TABLE_LABELS: dict[str, str] = {
    **DISPLAY_NAMES, "average": "average", "xd_average": "cross-dataset average", "dg_average": "DG average",
    **B2N_METRICS,
}


def metric_panels(
    panels: Sequence[tuple[str, pd.DataFrame]],
    x_label: str,
    kind: str = "line",
    order: Sequence[str] | None = None,
    height: float = 3.2,
) -> plt.Figure:
    """Base / novel / HM against one ablated value, one panel per source (never mixing mini and paper numbers).

    Each frame has a ``value`` column (plotted as categories, in ``order`` or first-seen order) and any of the
    columns ``base``, ``novel``, ``hm``. ``kind`` is ``"line"`` (Fig. 3 of the paper) or ``"bar"`` (Tables 3-4).
    Panels keep their own y axis: mini and paper accuracies live on different scales.
    """
    if not panels:
        raise ValueError("metric_panels needs at least one (title, frame) panel")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), height), squeeze=False)
    for ax, (title, frame) in zip(axes[0], panels, strict=True):
        long = _long_metrics(frame)
        values = list(order) if order is not None else list(dict.fromkeys(long["value"]))
        values = [v for v in values if v in set(long["value"])]
        if kind == "line":
            long["position"] = long["value"].map({v: i for i, v in enumerate(values)})
            sns.lineplot(data=long, x="position", y="accuracy", hue="metric", style="metric", markers=True,
                         dashes=False, ax=ax, errorbar=None)
            ax.set_xticks(range(len(values)), values)
        elif kind == "bar":
            sns.barplot(data=long, x="value", y="accuracy", hue="metric", order=values, ax=ax, errorbar=None)
            ax.set_ylim(0, 100)  # bars start at 0, so their heights are the accuracies
            ax.tick_params(axis="x", rotation=30)
        else:
            raise ValueError(f"kind must be 'line' or 'bar', got {kind!r}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy (%)" if kind == "bar" else "accuracy (%), axis not from 0")
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    # one legend above the panels, where it cannot cover a line or a bar
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(labels), frameon=False)
    fig.tight_layout()
    return fig


def ablation_figure(
    kind: str, panels: Sequence[tuple[str, pd.DataFrame]], x_label: str, style: str = "line"
) -> plt.Figure | None:
    """``metric_panels`` for one ablation, its values in the paper's order (``ablation_order``); with no source to
    show (no live values, no precomputed grid, nothing reported) it says so instead of failing."""
    if not panels:
        print("nothing to plot: no live values and no precomputed grid for this ablation")
        return None
    values = [v for _, frame in panels for v in frame["value"].astype(str)]
    return metric_panels(panels, x_label, kind=style, order=ablation_order(kind, values))


def _long_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in B2N_METRICS if c in frame.columns]
    long = frame.assign(value=frame["value"].astype(str)).melt(
        id_vars="value", value_vars=columns, var_name="metric", value_name="accuracy"
    )
    long["metric"] = long["metric"].map(B2N_METRICS)
    return long.dropna(subset=["accuracy"])


def parse_params_label(label: str | float | int) -> float:
    """'6K' -> 6000, '4.9M' -> 4.9e6, '500' -> 500: the paper's printed parameter labels as numbers."""
    text = str(label).strip().replace(",", "")
    scale = {"K": 1e3, "M": 1e6}.get(text[-1:].upper(), 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def params_scatter(
    panels: Sequence[tuple[str, pd.DataFrame]],
    y_label: str,
    zero_at: float | Sequence[float | None] | None = None,
    highlight: str | None = "PERL",
    height: float = 3.8,
) -> plt.Figure:
    """Accuracy against trainable parameters on a log x axis (the paper's Fig. 1), one panel per source.

    Each frame has ``method``, ``params`` and ``accuracy``. A method with 0 trainable parameters (zero-shot CLIP)
    cannot sit on a log axis; like the paper's Fig. 1 it is drawn at ``zero_at`` (one value, or one per panel;
    None: a decade below the panel's smallest positive count) and its label says so.
    """
    cols = min(2, len(panels))  # three panels in one row were too small to read in the book
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    zeros = list(zero_at) if isinstance(zero_at, Sequence) else [zero_at] * len(panels)
    for ax, (title, frame), zero in zip(list(axes.flat)[: len(panels)], panels, zeros, strict=True):
        positive = frame.loc[frame["params"] > 0, "params"]
        if zero is None:
            zero = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if len(positive) else 1.0
        zero_at = zero
        data = frame.assign(x=frame["params"].where(frame["params"] > 0, zero_at))
        colours = ["tab:red" if highlight and str(m).lower().startswith(highlight.lower()) else "tab:blue"
                   for m in data["method"]]
        ax.scatter(data["x"], data["accuracy"], c=colours, s=40, zorder=3)
        span = max(1e-9, data["accuracy"].max() - data["accuracy"].min())
        placed: list[tuple[float, float]] = []
        for _, row in data.sort_values("x").iterrows():
            name = f"{row['method']} (0, drawn at {zero_at:g})" if row["params"] <= 0 else str(row["method"])
            # a label near an already labelled point (x within 3x, y within 12% of the range) goes below its point
            crowded = any(abs(math.log10(row["x"] / x)) < 0.5 and abs(row["accuracy"] - y) < 0.12 * span
                          for x, y in placed)
            placed.append((row["x"], row["accuracy"]))
            ax.annotate(name, (row["x"], row["accuracy"]), textcoords="offset points",
                        xytext=(4, -11) if crowded else (4, 4), fontsize=8)
        ax.set_xscale("log")
        lo, hi = data["x"].min(), data["x"].max()
        ax.set_xlim(lo / 2, hi * 4)
        pad = max(1.0, 0.08 * (data["accuracy"].max() - data["accuracy"].min()))
        ax.set_ylim(data["accuracy"].min() - pad, data["accuracy"].max() + 2 * pad)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(y_label)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_bars(panels: Sequence[tuple[str, pd.DataFrame, str, str]], height: float = 3.2) -> plt.Figure:
    """One bar per method for a cost (ms per image, MB, ...), in the frame's row order; one panel per
    ``(title, frame, column, y label)``, side by side in one figure. Rows without a value are left out."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), height), squeeze=False)
    for ax, (title, frame, column, y_label) in zip(axes[0], panels, strict=True):
        data = frame.dropna(subset=[column])
        sns.barplot(data=data, x="method", y=column, order=list(data["method"]), ax=ax, color="tab:blue")
        ax.set_xlabel("")
        ax.set_ylabel(y_label)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=40)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def comparison_bars(frame: pd.DataFrame, metric: str = "hm", title: str = "", height: float = 3.4) -> plt.Figure:
    """Grouped bars of one metric per dataset (x) and method (colour), in the frame's row orders."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * frame["dataset"].nunique() + 3.0), height))
    sns.barplot(data=frame, x="dataset", y=metric, hue="method", order=list(dict.fromkeys(frame["dataset"])),
                hue_order=list(dict.fromkeys(frame["method"])), ax=ax, errorbar=None)
    ax.set_xlabel("")
    ax.set_ylabel(f"{B2N_METRICS.get(metric, metric)} (%)")
    ax.set_title(title, fontsize=10, pad=24)
    ax.legend(fontsize=8, title=None, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=frame["method"].nunique(),
              frameon=False)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def provenance_caption(payloads: Sequence[dict], what: str = "precomputed by `make results`") -> str:
    """One caption line for figures drawn from committed result files: how many runs, which commits, where, when,
    and whether their code-and-weights fingerprints agree (sessions only hand out results whose fingerprint is
    current, so the caption says so)."""
    if not payloads:
        return f"{what}: no result files"
    prov = [p.get("provenance", {}) for p in payloads]
    commits = sorted({str(p.get("git_commit", "unknown"))[:10] for p in prov})
    devices = sorted({device_label(p) for p in prov})
    dates = sorted(str(p.get("created", ""))[:10] for p in prov if p.get("created"))
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "date unknown"
    fingerprinted = sum(bool(p.get("fingerprint")) for p in prov)
    checked = ("fingerprint of code and weights current" if fingerprinted == len(prov)
               else f"{len(prov) - fingerprinted} without a code fingerprint")
    return (f"{what}: {len(payloads)} runs, perlkit commit {', '.join(commits)}, on {'; '.join(devices)}, "
            f"{when}; {checked}")


def text_table(frame: pd.DataFrame, ints: Sequence[object] = (), decimals: int = 2) -> pd.DataFrame:
    """A table's numbers as display text: '–' where a value is missing (never NaN or None), the columns in
    ``ints`` as integers with thousands separators, other numbers with ``decimals`` decimals."""
    import numbers

    def cell(value: object, integer: bool) -> object:
        if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
            return "–"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return value
        return f"{round(value):,}" if integer else f"{value:,.{decimals}f}"

    out = frame.copy().astype(object)
    for column in out.columns:
        out[column] = [cell(v, column in ints) for v in frame[column]]
    return out


def rst_to_markdown(text: str) -> str:
    """A module docstring's reStructuredText inline markup as Markdown, for rendering in the book.

    ``code`` becomes `code`; a ``*`` between two operands (``64*64``) is escaped so it is not read as emphasis;
    the lines of each paragraph or list item are joined (a wrapped line that starts with ``+`` would otherwise
    begin a Markdown list). *emphasis* and **strong** are the same in both.
    """
    import re

    def inline(line: str) -> str:
        parts = re.split(r"(``.+?``)", line)
        return "".join(f"`{p[2:-2]}`" if p.startswith("``") else re.sub(r"(?<=[\w)\]])\*(?=[\w(\[])", r"\*", p)
                       for p in parts)

    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        items: list[str] = []
        for line in block.splitlines():
            starts_item = re.match(r"\s*(\*|\d+\.)\s", line)
            if starts_item or not items:
                items.append(line.rstrip())
            else:
                items[-1] += " " + line.strip()
        blocks.append("\n".join(inline(item) for item in items))
    return "\n\n".join(blocks)


# ================================================================================================================
# Chapters 01-06, 08 and 11 (introduction, method, training, base-to-novel, cross-dataset, domain generalisation,
# dynamics, reproduce). Helpers in this section are used by those chapters; they rely on the imports above.
# ================================================================================================================
def display_name(name: str) -> str:
    """A dataset key ('oxford_flowers') as the paper prints it ('Flowers102'); 'average' and unknown keys pass."""
    from perlkit.data import DISPLAY_NAMES

    return DISPLAY_NAMES.get(name, name.capitalize() if name == "average" else name)


def image_grid(rows: Sequence[tuple[str, Sequence[tuple[object, str]]]], size: float = 1.25) -> plt.Figure:
    """Sample images, one row per benchmark: ``rows`` = [(row title, [(PIL image, class name), ...]), ...]."""
    n_cols = max(len(items) for _, items in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(size * n_cols + 1.2, size * len(rows) + 0.3),
                             squeeze=False)
    for r, (title, items) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(items):
                image, label = items[c]
                ax.imshow(image)
                ax.set_title(_wrap(label, 16), fontsize=6.5, pad=2)
        axes[r][0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    fig.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.2)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)[:2])


def zeroshot_chance_plot(frame: pd.DataFrame, title: str = "", height: float = 3.4) -> plt.Figure:
    """Zero-shot top-1 per benchmark (bars) against chance, 100 / #classes (black ticks).

    ``frame`` has ``benchmark``, ``accuracy`` and ``chance`` columns, in display order.
    """
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(frame) + 1.5), height))
    order = list(frame["benchmark"])
    sns.barplot(data=frame, x="benchmark", y="accuracy", order=order, color="tab:blue", ax=ax, label="zero-shot")
    ax.scatter(range(len(frame)), frame["chance"], marker="_", s=250, color="black", zorder=3, label="chance")
    ax.set_xlabel("")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=45)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def mask_heatmap(mask: pd.DataFrame, title: str = "", size: float = 4.2) -> plt.Figure:
    """A causal attention mask as a 0/1 heatmap (1 = the row token may attend to the column token)."""
    fig, ax = plt.subplots(figsize=(size + 0.6, size))
    sns.heatmap(mask, cmap=sns.color_palette(["#f2f2f2", "#3a6ea5"], as_cmap=True), cbar=False, square=True,
                linewidths=0.4, linecolor="white", xticklabels=True, yticklabels=True, vmin=0, vmax=1, ax=ax)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="both", labelsize=7)
    fig.tight_layout()
    return fig


def training_curves(steps: Sequence[dict], title: str = "", height: float = 3.0) -> plt.Figure:
    """Per-step training loss and its two terms (cross-entropy, anchor) from a result's ``train.steps`` log."""
    frame = pd.DataFrame(list(steps))
    terms = [c for c in ("loss", "ce", "anchor") if c in frame.columns]
    names = {"loss": "total loss", "ce": "cross-entropy", "anchor": "anchor 1 - cos(v0, vK)"}
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), height), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        sns.lineplot(data=frame, x="step", y=term, ax=ax, marker="o", markersize=3, linewidth=1)
        ax.set_title(names[term], fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def b2n_points(frame: pd.DataFrame, title: str = "", height: float = 3.4) -> plt.Figure:
    """Base, novel and HM per dataset (x) for each method (colour): one panel per metric.

    ``frame`` is a tidy table with ``method``, ``dataset`` (display names, in order) and ``base``/``novel``/``hm``.
    """
    long = frame.melt(id_vars=["method", "dataset"], value_vars=["base", "novel", "hm"], var_name="metric",
                      value_name="accuracy")
    long["metric"] = long["metric"].map(B2N_METRICS)
    order = list(dict.fromkeys(frame["dataset"]))
    grid = sns.catplot(data=long, x="dataset", y="accuracy", hue="method", col="metric", kind="point",
                       order=order, hue_order=list(dict.fromkeys(frame["method"])), linestyle="none",
                       dodge=0.3, markersize=5, height=height, aspect=1.15, errorbar=None)
    grid.set_axis_labels("", "accuracy (%)")
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=45)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    grid.figure.tight_layout()
    # legend (and title) above the panels, where they cannot hide a point
    sns.move_legend(grid, "lower center", bbox_to_anchor=(0.5, 0.99), ncol=frame["method"].nunique(), title=None,
                    frameon=False)
    if title:  # above the legend row
        grid.figure.suptitle(title, fontsize=10, y=1.1, va="bottom")
    return grid.figure


def accuracy_panels(panels: Sequence[tuple[str, pd.DataFrame]], height: float = 3.4) -> plt.Figure:
    """Grouped accuracy bars per dataset (x) and method (colour), one panel per source with its own y axis.

    Each frame is tidy (``method``, ``dataset``, ``accuracy``) and keeps its row order; mini and reported numbers
    go in different panels, never in the same one.
    """
    widths = [max(3.0, 0.55 * frame["dataset"].nunique() + 1.5) for _, frame in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), height), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    methods = list(dict.fromkeys(m for _, frame in panels for m in frame["method"]))
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))  # one colour per method
    for ax, (title, frame) in zip(axes[0], panels, strict=True):
        sns.barplot(data=frame, x="dataset", y="accuracy", hue="method", order=list(dict.fromkeys(frame["dataset"])),
                    hue_order=list(dict.fromkeys(frame["method"])), palette=palette, ax=ax, errorbar=None)
        ax.set_xlabel("")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=10, pad=24)
        # above the bars, under the title: a legend inside the axes hid the tallest bars
        ax.legend(fontsize=8, title=None, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(methods),
                  frameon=False)
        ax.tick_params(axis="x", rotation=40)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def transfer_panel(frame: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """One panel of ``accuracy_panels`` from tidy transfer rows (executed or reported): only ``datasets``, in their
    order, with the book's dataset and method names."""
    datasets = list(datasets)
    frame = frame[frame["dataset"].isin(datasets)].copy()
    frame["rank"] = frame["dataset"].map(datasets.index)
    frame = frame.sort_values("rank", kind="stable")
    return frame.assign(dataset=frame["dataset"].map(display_name), method=frame["method"].map(method_label))


def transfer_wide(frame: pd.DataFrame, datasets: Sequence[str], methods: Sequence[str] | None = None,
                  average: str | None = None) -> pd.DataFrame:
    """Accuracy per method (rows) and dataset (columns, display names), averaged over seeds, as the paper prints.

    ``frame`` is tidy (``method``, ``dataset``, ``accuracy``, optional ``seed``); ``average`` names the key of a
    precomputed average (e.g. ``xd_average``) shown last as 'Average'.
    """
    methods = list(methods or dict.fromkeys(frame["method"]))
    columns = [*datasets, *([average] if average else [])]
    mean = frame.groupby(["method", "dataset"], sort=False)["accuracy"].mean().unstack("dataset")
    wide = mean.reindex(index=methods, columns=columns)
    wide.columns = [("Average" if c == average else display_name(c)) for c in columns]
    wide.index = [METHOD_LABELS.get(m, m) for m in methods]
    return wide.round(2)


#: reasoning-dynamics metrics (columns of ``perlkit.experiments.reasoning_dynamics``) and their axis labels
DYNAMICS_METRICS: dict[str, str] = {
    "accuracy": "accuracy (%)",
    "confidence": "target confidence (%)",
    "brier": "Brier score",
    "kl_from_step0": "KL(p_k || p_0)",
}


def dynamics_lines(frame: pd.DataFrame, hue: str = "subset", style: str | None = "dataset",
                   height: float = 2.8, width: float = 3.3, palette: str | None = None) -> plt.Figure:
    """Metrics against reasoning step 0..K (paper Figs. 4-5): one panel per metric, lines per ``hue``/``style``."""
    metrics = [m for m in DYNAMICS_METRICS if m in frame.columns]
    cols = 2 if len(metrics) > 2 else len(metrics)  # four panels in one row were too small to read in the book
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for i, (ax, metric) in enumerate(zip(flat, metrics, strict=False)):
        sns.lineplot(data=frame, x="step", y=metric, hue=hue, style=style, markers=True, dashes=True, ax=ax,
                     errorbar=None, legend=i == cols - 1, palette=palette)
        ax.set_xticks(sorted(frame["step"].unique()))
        ax.set_xlabel("reasoning step k")
        ax.set_ylabel("")
        ax.set_title(DYNAMICS_METRICS[metric], fontsize=10)
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    legend = flat[cols - 1].get_legend()
    if legend is not None:
        sns.move_legend(flat[cols - 1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title=None,
                        frameon=False)
    fig.tight_layout()
    return fig


def step_probability_panels(probs: pd.DataFrame, true_class: str, height: float = 2.6) -> plt.Figure:
    """Small multiples of one image's class probabilities at every step (the static twin of the slider).

    ``probs`` has one row per (step, class) with ``step``, ``class`` and ``probability``; classes keep their order.
    """
    steps = sorted(probs["step"].unique())
    classes = list(dict.fromkeys(probs["class"]))
    fig, axes = plt.subplots(1, len(steps), figsize=(1.9 * len(steps) + 1.6, height), sharey=True, squeeze=False)
    colours = ["tab:green" if c == true_class else "tab:grey" for c in classes]
    for ax, step in zip(axes[0], steps, strict=True):
        part = probs[probs["step"] == step].set_index("class").reindex(classes)
        ax.barh(range(len(classes)), part["probability"], color=colours)
        ax.set_xlim(0, 1)
        ax.set_title("step 0 (zero-shot)" if step == 0 else f"step {step}", fontsize=9)
        ax.set_xlabel("p", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[0][0].set_yticks(range(len(classes)), [_wrap(c, 22) for c in classes], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return fig


def step_probability_bar(probs: pd.DataFrame, step: int, true_class: str, height: float = 2.6) -> plt.Figure:
    """One step of :func:`step_probability_panels`, for the interactive explorer."""
    classes = list(dict.fromkeys(probs["class"]))
    part = probs[probs["step"] == step].set_index("class").reindex(classes)
    fig, ax = plt.subplots(figsize=(4.8, height))
    ax.barh(range(len(classes)), part["probability"],
            color=["tab:green" if c == true_class else "tab:grey" for c in classes])
    ax.set_yticks(range(len(classes)), [_wrap(c, 26) for c in classes], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title("step 0 (zero-shot)" if step == 0 else f"step {step}", fontsize=9)
    fig.tight_layout()
    return fig


def note_box(text: str, title: str = "Profile") -> object:
    """A visible admonition-style box (rendered HTML) for the profile banner at the top of a chapter."""
    import html

    from IPython.display import HTML

    return HTML(f'<div class="admonition note"><p class="admonition-title">{html.escape(title)}</p>'
                f"<p>{html.escape(text)}</p></div>")


#: how the book names methods in tables and legends: perlkit's registry names and the reported tables' names
#: (``CLIP`` there is zero-shot CLIP; the rivals' reported names are already their labels)
METHOD_LABELS: dict[str, str] = {
    "zeroshot": "zero-shot CLIP", "perl": "PERL", "mmrl": "MMRL", "mmrlpp": "MMRL++", "mma": "MMA", "rmma": "R-MMA",
    "CLIP": "zero-shot CLIP", "PERL": "PERL",
}


def method_label(name: str) -> str:
    """A method's name in tables and legends (``METHOD_LABELS``), the name itself when it has no entry, so that
    executed (registry names) and reported (paper names) rows meet under one label."""
    return METHOD_LABELS.get(name, name)


def b2n_wide(frame: pd.DataFrame, methods: Sequence[str] | None = None, delta: str | None = None) -> pd.DataFrame:
    """Base / Novel / HM per dataset (rows, paper order, average last) with one column block per method.

    ``frame`` is tidy (``method``, ``dataset``, ``base``, ``novel``, ``hm``), e.g. ``b2n_summary`` output or the
    reported rows. ``delta`` names a baseline method: a last column gives each other method's HM minus its HM.
    """
    from perlkit.data import DATASET_NAMES

    methods = list(methods or dict.fromkeys(frame["method"]))
    rank = {name: i for i, name in enumerate((*DATASET_NAMES, "average"))}
    datasets = sorted(set(frame["dataset"]), key=lambda d: rank.get(d, len(rank)))
    blocks = {}
    for method in methods:
        part = frame[frame["method"] == method].set_index("dataset").reindex(datasets)[["base", "novel", "hm"]]
        blocks[METHOD_LABELS.get(method, method)] = part.rename(columns=B2N_METRICS)
    wide = pd.concat(blocks, axis=1)
    if delta is not None:
        for method in methods:
            if method != delta:
                label = f"Δ HM ({METHOD_LABELS.get(method, method)} − {METHOD_LABELS.get(delta, delta)})"
                wide[(label, "")] = blocks[METHOD_LABELS.get(method, method)]["HM"] - blocks[
                    METHOD_LABELS.get(delta, delta)]["HM"]
    wide.index = [display_name(d) for d in datasets]
    return wide.round(2)
