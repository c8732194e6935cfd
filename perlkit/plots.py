"""Seaborn helpers for the book's figures."""

from __future__ import annotations

# ================================================================================================================
# Chapters 07 (ablations), 09 (efficiency) and 10 (comparison).
# Helpers below this line are used by those three chapters only; add shared helpers above this section.
# ================================================================================================================
import math  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

#: the three base-to-novel metrics, in the order and with the names the paper's figures use
B2N_METRICS: dict[str, str] = {"base": "Base", "novel": "Novel", "hm": "HM"}


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
            lows = long["accuracy"].min()
            ax.set_ylim(max(0.0, math.floor(lows - 5)), None)
            ax.tick_params(axis="x", rotation=30)
        else:
            raise ValueError(f"kind must be 'line' or 'bar', got {kind!r}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy (%)")
        ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


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
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), height), squeeze=False)
    zeros = list(zero_at) if isinstance(zero_at, Sequence) else [zero_at] * len(panels)
    for ax, (title, frame), zero in zip(axes[0], panels, zeros, strict=True):
        positive = frame.loc[frame["params"] > 0, "params"]
        if zero is None:
            zero = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if len(positive) else 1.0
        zero_at = zero
        data = frame.assign(x=frame["params"].where(frame["params"] > 0, zero_at))
        colours = ["tab:red" if highlight and str(m).lower().startswith(highlight.lower()) else "tab:blue"
                   for m in data["method"]]
        ax.scatter(data["x"], data["accuracy"], c=colours, s=40, zorder=3)
        for _, row in data.iterrows():
            name = f"{row['method']} (0, drawn at {zero_at:g})" if row["params"] <= 0 else str(row["method"])
            ax.annotate(name, (row["x"], row["accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
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


def block_evaluations_plot(frame: pd.DataFrame, zero_shot: float | None = None, height: float = 3.2) -> plt.Figure:
    """Vision blocks run per image against the number of steps K: the cost model and every measured count.

    ``frame`` has ``K``, ``blocks`` and ``source`` (e.g. 'cost model J + (K+1)(L-J)', 'measured, live').
    """
    fig, ax = plt.subplots(figsize=(5.0, height))
    sns.lineplot(data=frame, x="K", y="blocks", hue="source", style="source", markers=True, dashes=False,
                 ax=ax, errorbar=None)
    if zero_shot is not None:
        ax.axhline(zero_shot, color="grey", linestyle=":", label="zero-shot CLIP (L)")
    ax.set_xticks(sorted(frame["K"].unique()))
    ax.set_xlabel("reasoning steps K")
    ax.set_ylabel("vision blocks per image")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def method_bars(
    frame: pd.DataFrame, y: str, y_label: str, title: str = "", log: bool = False, height: float = 3.2
) -> plt.Figure:
    """One bar per method for a cost (ms per image, images per second, MB), in the frame's row order."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(frame) + 1.5), height))
    sns.barplot(data=frame, x="method", y=y, order=list(frame["method"]), ax=ax, color="tab:blue")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("")
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def comparison_bars(frame: pd.DataFrame, metric: str = "hm", title: str = "", height: float = 3.4) -> plt.Figure:
    """Grouped bars of one metric per dataset (x) and method (colour), in the frame's row orders."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * frame["dataset"].nunique() + 3.0), height))
    sns.barplot(data=frame, x="dataset", y=metric, hue="method", order=list(dict.fromkeys(frame["dataset"])),
                hue_order=list(dict.fromkeys(frame["method"])), ax=ax, errorbar=None)
    ax.set_xlabel("")
    ax.set_ylabel(f"{B2N_METRICS.get(metric, metric)} (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=2)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig

def provenance_caption(payloads: Sequence[dict], what: str = "precomputed by `make results`") -> str:
    """One caption line for figures drawn from committed result files: how many runs, which commits, where, when."""
    if not payloads:
        return f"{what}: no result files"
    prov = [p.get("provenance", {}) for p in payloads]
    commits = sorted({str(p.get("git_commit", "unknown"))[:10] for p in prov})
    devices = sorted({str(p.get("device", "unknown device")) for p in prov})
    dates = sorted(str(p.get("created", ""))[:10] for p in prov if p.get("created"))
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "date unknown"
    return (f"{what}: {len(payloads)} runs, perlkit commit {', '.join(commits)}, on {'; '.join(devices)}, "
            f"{when}")

