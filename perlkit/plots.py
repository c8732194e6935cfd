"""Seaborn helpers for the book's figures."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from perlkit.data import DISPLAY_NAMES
from perlkit.experiments.ablations import HM_INTERVAL, ablation_order
from perlkit.experiments.store import device_label
from perlkit.reported import display_name  # chapters call it as plots.display_name
from perlkit.stats import seed_half_width

if TYPE_CHECKING:
    import ipywidgets

# ================================================================================================================
# Every chapter: the book's figure style, panel layout, legends, titles and point labels.
# ================================================================================================================

#: the book's text column in inches (~690 CSS px at 96 px an inch): no figure is drawn wider, so none is shrunk
BOOK_WIDTH = 7.0
#: the smallest font size (pt) of any figure text: figures are shown at 1:1 in the column, so 9 pt reads as 12 px
MIN_FONT_SIZE = 9.0
#: matplotlib settings of every book figure (over seaborn's "notebook" theme): an inch is drawn as 96 CSS px, and no
#: font is smaller than MIN_FONT_SIZE
BOOK_RC: dict[str, Any] = {
    "figure.dpi": 96, "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "figure.titlesize": 11,
    "xtick.labelsize": MIN_FONT_SIZE, "ytick.labelsize": MIN_FONT_SIZE, "legend.fontsize": MIN_FONT_SIZE,
    "legend.title_fontsize": MIN_FONT_SIZE,
}


def book_style() -> None:
    """Apply the book's figure settings once per chapter (``perlkit.book.open_session`` does): seaborn's theme with
    ``BOOK_RC``, and, in a notebook, figures stored as PNG at twice the size they are shown at (sharp on dense screens;
    the output's width metadata keeps them at 1:1). Not SVG: nbval compares an SVG output byte for byte, and
    matplotlib writes a fresh date and random element ids into every one."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", rc=BOOK_RC)
    from IPython import get_ipython

    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")


def panel_grid(count: int, height: float, max_cols: int = 2, panel_width: float | None = None,
               **subplot_kw: Any) -> tuple[plt.Figure, list[plt.Axes]]:
    """``count`` panels in rows of at most ``max_cols``, the figure at most ``BOOK_WIDTH`` wide: one long row of panels
    was shrunk by the page until its text could not be read (at 2 a row each panel keeps ~3.5 in). Returns the figure
    and the ``count`` axes in reading order; the cells left over in the last row are removed."""
    if count < 1:
        raise ValueError("panel_grid needs at least one panel")
    cols = max(1, min(count, max_cols))
    rows = -(-count // cols)
    width = BOOK_WIDTH if panel_width is None else min(BOOK_WIDTH, panel_width * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **subplot_kw)
    flat = list(axes.flat)
    for ax in flat[count:]:
        fig.delaxes(ax)
    return fig, flat[:count]


def panel_title(ax: plt.Axes, title: str, size: float = 10, **title_kw: Any) -> None:
    """A panel's title, each line wrapped to the panel's width, so a long source name never widens the figure or runs
    into its neighbour's title."""
    cell_inches = ax.figure.get_figwidth() / ax.get_subplotspec().get_gridspec().ncols  # the panel's share of the row
    chars = max(12, int(0.8 * cell_inches * 72 / (0.55 * size)))
    lines = [part for line in str(title).splitlines()
             for part in textwrap.wrap(line, chars, break_on_hyphens=False) or [""]]
    ax.set_title("\n".join(lines), fontsize=size, **title_kw)


def slant_ticks(ax: plt.Axes, rotation: float = 40) -> None:
    """Slanted x tick labels, each ending under its tick (long dataset or method names, side by side, collide)."""
    ax.tick_params(axis="x", rotation=rotation)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")


def _legend_columns(labels: Sequence[str], width_in: float) -> int:
    """As many legend columns as fit ``width_in`` (entries estimated at the legend's font size, plus their marker)."""
    entry_pt = max((len(str(label)) for label in labels), default=1) * 0.55 * MIN_FONT_SIZE + 30
    return max(1, min(len(labels), int(width_in * 72 // entry_pt)))


def figure_legend(fig: plt.Figure, handles: Sequence[Any], labels: Sequence[str], title: str = "",
                  below: bool = False) -> None:
    """One legend for all panels, above them (or ``below``), where it cannot cover a point or a bar, in as many columns
    as the figure's width holds; ``title`` goes above everything, placed after the legend is measured so the two never
    overlap. Call after ``tight_layout``."""
    legend = fig.legend(handles, labels, loc="upper center" if below else "lower center",
                        bbox_to_anchor=(0.5, 0.0 if below else 1.0), ncol=_legend_columns(labels, fig.get_figwidth()),
                        frameon=False, title=None)
    if title:
        top = 1.0 if below else legend.get_window_extent(fig.canvas.get_renderer()).y1 / fig.bbox.height
        figure_title(fig, title, y=top, va="bottom")


def figure_title(fig: plt.Figure, title: str, **suptitle_kw: Any) -> None:
    """The figure's title (the profile or source it shows), wrapped to the figure's width; nothing when empty."""
    if title:
        chars = int(fig.get_figwidth() * 72 / (0.55 * BOOK_RC["figure.titlesize"]))
        fig.suptitle("\n".join(textwrap.wrap(str(title), chars)), **suptitle_kw)


def label_points(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], names: Sequence[str],
                 marker_size: float = 40, size: float = MIN_FONT_SIZE) -> list[Any]:
    """Name each point beside it so that no two names overlap, nor a name a point: each name takes the first free spot
    of a fixed ring of offsets (right, above, below, left, the diagonals), then of wider rings with a leader line. The
    order is fixed, so the figure is the same on every run. Call once the layout is final (after ``tight_layout``):
    spots are measured on the page."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72  # display pixels a point
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(list(zip(xs, ys, strict=True)))
    radius = (math.sqrt(marker_size) / 2 + 1) * px
    taken = [(x - radius, y - radius, x + radius, y + radius) for x, y in centres]  # points are obstacles too
    if ax.get_legend() is not None:  # and so is the panel's legend
        legend = ax.get_legend().get_window_extent(renderer)
        taken.append((legend.x0, legend.y0, legend.x1, legend.y1))
    # (dx, dy, horizontal alignment, vertical alignment): a unit direction and the text corner that sits on it
    ring = [(1, 0, "left", "center"), (0.7, 0.7, "left", "bottom"), (0.7, -0.7, "left", "top"),
            (0, 1, "center", "bottom"), (0, -1, "center", "top"), (-1, 0, "right", "center"),
            (-0.7, 0.7, "right", "bottom"), (-0.7, -0.7, "right", "top")]
    out = []
    for i, (data_x, data_y, (x, y), name) in enumerate(zip(xs, ys, centres, names, strict=True)):
        probe = fig.text(0, 0, str(name), fontsize=size)  # measured off the axes: (0, 0) has no place on a log axis
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        best, best_cost = None, math.inf
        for distance in (6, 16, 28, 42):
            for dx, dy, ha, va in ring:
                ax0 = x + dx * distance * px - {"left": 0, "center": w / 2, "right": w}[ha]
                ay0 = y + dy * distance * px - {"bottom": 0, "center": h / 2, "top": h}[va]
                box = (ax0, ay0, ax0 + w, ay0 + h)
                cost = _spot_cost(box, taken, (frame.x0, frame.y0, frame.x1, frame.y1), centres, i)
                if cost < best_cost:
                    best, best_cost = (distance, dx * distance, dy * distance, ha, va, box), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        distance, dx, dy, ha, va, box = best
        leader = {"arrowprops": {"arrowstyle": "-", "color": "0.5", "lw": 0.6}} if distance > 6 else {}  # wider rings
        out.append(ax.annotate(str(name), (data_x, data_y), xytext=(dx, dy),
                               textcoords="offset points", ha=ha, va=va, fontsize=size, **leader))
        taken.append(box)
    return out


def _spot_cost(box: tuple[float, float, float, float], taken: Sequence[tuple[float, float, float, float]],
               frame: tuple[float, float, float, float], centres: Any, own: int) -> float:
    """How bad a spot is for a name: the area it shares with names and points already there, heavily what falls
    outside the panel, and a little (less than any overlap) when another point is nearer than its own to the spot on
    the name's edge closest to its own point (where a reader looks for the point it names)."""
    outside = (max(0, frame[0] - box[0]) + max(0, box[2] - frame[2]) + max(0, frame[1] - box[1])
               + max(0, box[3] - frame[3]))
    x, y = centres[own]
    edge = (min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3]))
    reach = math.dist(edge, (x, y))
    nearer = any(math.dist(edge, tuple(c)) < reach for j, c in enumerate(centres) if j != own)
    return sum(_overlap(box, other) for other in taken) + 100 * outside + 0.5 * nearer


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area two (x0, y0, x1, y1) boxes share, with a pixel of clearance."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)


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


#: what the error bars of a figure drawn from several seeds' runs are (its legend says it)
SEED_BARS = "error bars: 95% interval over seeds"


def _seed_bar_kwargs(frame: pd.DataFrame, capsize: float) -> dict[str, Any]:
    """seaborn's error bar arguments for a frame of runs (``seed_errorbar``): the seed interval drawn thin with caps
    of ``capsize``, or no error bars at all."""
    errorbar = seed_errorbar(frame)
    return {"errorbar": errorbar, "err_kws": {"linewidth": 1.0}, "capsize": capsize if errorbar else 0}


def _bars_title(title: str, errorbar: Any) -> str:
    """A figure's title, saying what its error bars are when ``seed_errorbar`` drew some."""
    if errorbar is None:
        return title
    return f"{title} ({SEED_BARS})" if title else SEED_BARS


def seed_errorbar(frame: pd.DataFrame) -> Any:
    """seaborn's ``errorbar`` for a tidy frame of runs: the 95% t-interval over seeds of each plotted mean
    (``seed_half_width``) where some group has several seeds, else None (one seed, or reported numbers: no bars).
    seaborn's own "ci" bootstraps and "se" is one standard error, neither the interval the tables print."""
    if "seed" not in frame or frame["seed"].nunique() < 2:
        return None

    def interval(values: pd.Series) -> tuple[float, float]:  # seaborn passes a group of several values
        half, centre = seed_half_width(list(values)), float(values.mean())
        return centre - half, centre + half

    return interval


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
    fig, axes = panel_grid(len(panels), height, panel_width=BOOK_WIDTH / 2)
    interval_handle = None
    for ax, (title, frame) in zip(axes, panels, strict=True):
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
            slant_ticks(ax, 30)
        else:
            raise ValueError(f"kind must be 'line' or 'bar', got {kind!r}")
        handles, labels = ax.get_legend_handles_labels()
        interval_handle = _hm_interval_bars(ax, frame, values, kind, handles, labels) or interval_handle
        panel_title(ax, title)
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy (%)" if kind == "bar" else "accuracy (%), axis not from 0")
        ax.get_legend().remove()
    fig.tight_layout()
    if interval_handle is not None:
        handles, labels = [*handles, interval_handle], [*labels, f"HM {SEED_BARS}"]
    figure_legend(fig, handles, labels)
    return fig


def has_hm_interval(frame: pd.DataFrame) -> bool:
    """Whether an ablation source carries the seed interval of its HM (``hm ±``: executed, several seeds)."""
    return HM_INTERVAL in frame and bool(frame[HM_INTERVAL].notna().any())


def _hm_interval_bars(ax: plt.Axes, frame: pd.DataFrame, values: Sequence[str], kind: str,
                      handles: Sequence[Any], labels: Sequence[str]) -> Any:
    """Draw the seed interval of an executed source's HM (its ``hm ±`` column, several seeds) as error bars on the
    HM line or bars, in the HM colour; return the error bars' legend handle, or None where the source has none."""
    hm_label = B2N_METRICS["hm"]
    if not has_hm_interval(frame) or hm_label not in labels:
        return None
    by_value = frame.assign(value=frame["value"].astype(str)).set_index("value")
    half = by_value[HM_INTERVAL].reindex(values).to_numpy(dtype=float)
    heights = by_value["hm"].reindex(values).to_numpy(dtype=float)
    if kind == "bar":  # seaborn draws one container of bars per metric, in the legend's order
        bars = ax.containers[labels.index(hm_label)]
        positions = [bar.get_x() + bar.get_width() / 2 for bar in bars]
        colour = bars[0].get_facecolor()
    else:
        positions = list(range(len(values)))
        colour = handles[labels.index(hm_label)].get_color()
    return ax.errorbar(positions, heights, yerr=half, fmt="none", ecolor=colour, elinewidth=1.2, capsize=3,
                       zorder=4)


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
    height: float = 3.4,
) -> plt.Figure:
    """Accuracy against trainable parameters on a log x axis (the paper's Fig. 1), one panel per source.

    Each frame has ``method``, ``params`` and ``accuracy``. A method with 0 trainable parameters (zero-shot CLIP)
    cannot sit on a log axis; like the paper's Fig. 1 it is drawn at ``zero_at`` (one value, or one per panel;
    None: a decade below the panel's smallest positive count) and its label says so.
    """
    # one panel a row: the paper's dozen named points need the column's whole width to stay apart
    fig, axes = panel_grid(len(panels), height, max_cols=1)
    zeros = list(zero_at) if isinstance(zero_at, Sequence) else [zero_at] * len(panels)
    points = []
    for ax, (title, frame), zero in zip(axes, panels, zeros, strict=True):
        positive = frame.loc[frame["params"] > 0, "params"]
        if zero is None:
            zero = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if len(positive) else 1.0
        data = frame.assign(x=frame["params"].where(frame["params"] > 0, zero)).sort_values("x", kind="stable")
        colours = ["tab:red" if highlight and str(m).lower().startswith(highlight.lower()) else "tab:blue"
                   for m in data["method"]]
        ax.scatter(data["x"], data["accuracy"], c=colours, s=40, zorder=3)
        names = [f"{m} (0, drawn at {zero:g})" if p <= 0 else str(m) for m, p in zip(data["method"], data["params"],
                                                                                     strict=True)]
        points.append((ax, data, names))
        ax.set_xscale("log")
        lo, hi = data["x"].min(), data["x"].max()
        ax.set_xlim(lo / 3, hi * 6)  # room for a name on either side of the outermost points
        pad = max(1.0, 0.12 * (data["accuracy"].max() - data["accuracy"].min()))
        ax.set_ylim(data["accuracy"].min() - 1.5 * pad, data["accuracy"].max() + 1.5 * pad)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(y_label)
        panel_title(ax, title)
    fig.tight_layout()
    for ax, data, names in points:  # once the layout is final: names are placed on the page
        label_points(ax, list(data["x"]), list(data["accuracy"]), names)
    return fig


def method_bars(panels: Sequence[tuple[str, pd.DataFrame, str, str]], height: float = 3.2) -> plt.Figure:
    """One bar per method for a cost (ms per image, MB, ...), in the frame's row order; one panel per
    ``(title, frame, column, y label)``, two a row. Rows without a value are left out. Panels left with a single bar
    (a record that measured one method) are merged, per y label, into one last panel of grouped bars: x names the
    panel they came from, colour the method."""
    kept: list[tuple[str, pd.DataFrame, str, bool]] = []  # (title, bars, y label, merged)
    singles: dict[str, list[tuple[str, pd.DataFrame, str, bool]]] = {}
    for title, frame, column, y_label in panels:
        data = frame.dropna(subset=[column])
        bars = data.assign(where=title, value=data[column])[["where", "method", "value"]]
        (singles.setdefault(y_label, []) if len(bars) == 1 else kept).append((title, bars, y_label, False))
    for y_label, group in singles.items():
        if len(group) == 1:
            kept.append(group[0])
        else:
            merged = pd.concat([bars for _, bars, _, _ in group], ignore_index=True)
            if merged["where"].duplicated().any():  # two panels with one title: number them, never average them
                merged["where"] = [f"{w} ({i + 1})" for i, w in enumerate(merged["where"])]
            kept.append((", ".join(dict.fromkeys(merged["method"])), merged, y_label, True))
    fig, axes = panel_grid(len(kept), height, panel_width=BOOK_WIDTH / 2)
    for ax, (title, bars, y_label, grouped) in zip(axes, kept, strict=True):
        if grouped:
            chars = max(10, int(BOOK_WIDTH / 2 * 72 / (0.55 * MIN_FONT_SIZE) / bars["where"].nunique()) - 4)
            wrapped = bars.assign(where=["\n".join(textwrap.wrap(t, chars)) for t in bars["where"]])
            sns.barplot(data=wrapped, x="where", y="value", hue="method", order=list(dict.fromkeys(wrapped["where"])),
                        ax=ax, legend=bars["method"].nunique() > 1)
        else:
            sns.barplot(data=bars, x="method", y="value", order=list(bars["method"]), ax=ax, color="tab:blue")
            slant_ticks(ax, 40)
        ax.set_xlabel("")
        ax.set_ylabel(y_label)
        panel_title(ax, title)
    fig.tight_layout()
    return fig


def comparison_bars(frame: pd.DataFrame, metric: str = "hm", title: str = "", height: float = 3.4) -> plt.Figure:
    """Grouped bars of one metric per dataset (x) and method (colour), in the frame's row orders; a frame of runs
    with a ``seed`` column shows each mean over seeds with its 95% interval as an error bar."""
    fig, (ax,) = panel_grid(1, height, panel_width=max(5.0, 1.1 * frame["dataset"].nunique() + 3.0))
    bars = _seed_bar_kwargs(frame, capsize=0.2)
    sns.barplot(data=frame, x="dataset", y=metric, hue="method", order=list(dict.fromkeys(frame["dataset"])),
                hue_order=list(dict.fromkeys(frame["method"])), ax=ax, **bars)
    ax.set_xlabel("")
    ax.set_ylabel(f"{B2N_METRICS.get(metric, metric)} (%)")
    slant_ticks(ax, 30)
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    fig.tight_layout()
    figure_legend(fig, handles, labels, title=_bars_title(title, bars["errorbar"]))
    return fig


def provenance_parts(payloads: Sequence[dict]) -> dict[str, Any]:
    """What every provenance line says of a non-empty set of stored runs: the newest run's commit and how many
    commits in all (never the list: the fingerprint, not the commit, ties a result to its code), the devices, the
    dates, and how many runs carry no code-and-weights fingerprint."""
    prov = [p.get("provenance", {}) for p in payloads]
    newest = sorted(prov, key=lambda p: str(p.get("created", "")))[-1]
    dates = sorted(str(p.get("created", ""))[:10] for p in prov if p.get("created"))
    return {"newest": str(newest.get("git_commit", "unknown"))[:10],
            "commits": len({str(p.get("git_commit", "unknown"))[:10] for p in prov}),
            "devices": "; ".join(sorted({device_label(p) for p in prov})),
            "when": (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "date unknown",
            "unfingerprinted": sum(not p.get("fingerprint") for p in prov)}


def provenance_caption(payloads: Sequence[dict], what: str = "precomputed by `make results`") -> str:
    """One caption line for figures drawn from committed result files (``provenance_parts``): how many runs, the
    newest run's commit and how many others, where, when, and whether their code-and-weights fingerprints agree
    (sessions only hand out results whose fingerprint is current, so the caption says so)."""
    if not payloads:
        return f"{what}: no result files"
    parts = provenance_parts(payloads)
    code = f"perlkit commit {parts['newest']}" + (
        f" (and {parts['commits'] - 1} earlier)" if parts["commits"] > 1 else "")
    checked = (f"{parts['unfingerprinted']} without a code fingerprint" if parts["unfingerprinted"]
               else "fingerprint of code and weights current")
    return f"{what}: {len(payloads)} runs, {code}, on {parts['devices']}, {parts['when']}; {checked}"


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
def image_grid(rows: Sequence[tuple[str, Sequence[tuple[object, str]]]], size: float = 1.25,
               title: str = "") -> plt.Figure:
    """Sample images, one row per benchmark: ``rows`` = [(row title, [(PIL image, class name), ...]), ...]; the
    images shrink so the grid fits the book's column (``BOOK_WIDTH``), its row titles beside it."""
    n_cols = max(len(items) for _, items in rows)
    size = min(size, (BOOK_WIDTH - 1.4) / n_cols)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(size * n_cols + 1.4, (size + 0.3) * len(rows) + 0.3),
                             squeeze=False)
    for r, (row_title, items) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(items):
                image, label = items[c]
                ax.imshow(image)
                ax.set_title(_wrap(label, int(size * 72 / (0.55 * MIN_FONT_SIZE))), fontsize=MIN_FONT_SIZE, pad=2)
        axes[r][0].set_ylabel(_wrap(row_title, 14), fontsize=MIN_FONT_SIZE, rotation=0, ha="right", va="center",
                              labelpad=6)
    figure_title(fig, title)
    fig.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.2)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)[:2])


def zeroshot_chance_plot(frame: pd.DataFrame, title: str = "", height: float = 3.4) -> plt.Figure:
    """Zero-shot top-1 per benchmark (bars) against chance, 100 / #classes (black ticks).

    ``frame`` has ``benchmark``, ``accuracy`` and ``chance`` columns, in display order.
    """
    fig, (ax,) = panel_grid(1, height, panel_width=max(6.0, 0.55 * len(frame) + 1.5))
    order = list(frame["benchmark"])
    sns.barplot(data=frame, x="benchmark", y="accuracy", order=order, color="tab:blue", ax=ax, label="zero-shot")
    ax.scatter(range(len(frame)), frame["chance"], marker="_", s=250, color="black", zorder=3, label="chance")
    ax.set_xlabel("")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    panel_title(ax, title)
    slant_ticks(ax, 45)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def mask_heatmap(mask: pd.DataFrame, title: str = "", size: float = 4.2) -> plt.Figure:
    """A causal attention mask as a 0/1 heatmap (1 = the row token may attend to the column token)."""
    fig, (ax,) = panel_grid(1, size, panel_width=size + 0.6)
    sns.heatmap(mask, cmap=sns.color_palette(["#f2f2f2", "#3a6ea5"], as_cmap=True), cbar=False, square=True,
                linewidths=0.4, linecolor="white", xticklabels=True, yticklabels=True, vmin=0, vmax=1, ax=ax)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    panel_title(ax, title)
    fig.tight_layout()
    return fig


def training_curves(steps: Sequence[dict], title: str = "", height: float = 2.8) -> plt.Figure:
    """Per-step training loss and its two terms (cross-entropy, anchor) from a result's ``train.steps`` log."""
    frame = pd.DataFrame(list(steps))
    terms = [c for c in ("loss", "ce", "anchor") if c in frame.columns]
    names = {"loss": "total loss", "ce": "cross-entropy", "anchor": "anchor 1 - cos(v0, vK)"}
    fig, axes = panel_grid(len(terms), height, panel_width=BOOK_WIDTH / 2)
    for ax, term in zip(axes, terms, strict=True):
        sns.lineplot(data=frame, x="step", y=term, ax=ax, marker="o", markersize=3, linewidth=1)
        panel_title(ax, names[term])
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("")
    figure_title(fig, title)
    fig.tight_layout()
    return fig


def diagnosis_figure(diagnosis: Any, title: str = "") -> plt.Figure:
    """A training diagnosis (``perlkit.experiments.diagnosis``) in two panels: the loss terms (10-step mean) per
    optimiser step, and train and test accuracy at each checkpoint against zero-shot CLIP's test accuracy."""
    fig, (loss_ax, acc_ax) = panel_grid(2, 3.2)  # two panels at the column's width
    diagnosis.curve.set_index("step")[["ce", "anchor"]].rolling(10).mean().plot(ax=loss_ax,
                                                                              title="loss (10-step mean)")
    diagnosis.checkpoints.plot(x="step", y=["train_accuracy", "test_accuracy"], marker="o", ax=acc_ax)
    acc_ax.axhline(diagnosis.summary()["zeroshot_test"], color="k", ls="--", label="zero-shot")
    acc_ax.legend()
    figure_title(fig, title)
    fig.tight_layout()
    return fig


def prediction_grid(images: Sequence[Any], truths: Sequence[str], predictions: Sequence[Sequence[tuple[str, float]]],
                    title: str = "") -> plt.Figure:
    """One image a panel, three a row: its top predictions (label and probability) above it, green when the first
    is its true class (``truths``) and red when not, the true class below it."""
    fig, axes = panel_grid(len(images), 3.0, max_cols=3, layout="constrained")  # rows of three images
    for ax, image, truth, top in zip(axes, images, truths, predictions, strict=True):
        ax.imshow(image)
        panel_title(ax, "\n".join(f"{label} {100 * score:.0f} %" for label, score in top), size=9,
                    color="tab:green" if top[0][0] == truth else "tab:red")
        ax.set_xlabel(f"true: {truth}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure_title(fig, title)
    return fig


def b2n_points(frame: pd.DataFrame, title: str = "", height: float = 3.4) -> plt.Figure:
    """Base, novel and HM per dataset (x) for each method (colour): one panel per metric.

    ``frame`` is a tidy table with ``method``, ``dataset`` (display names, in order) and ``base``/``novel``/``hm``;
    with one row a run and a ``seed`` column, each point is the mean over seeds with its 95% interval as an error bar.
    """
    ids = ["method", "dataset", *(["seed"] if "seed" in frame else [])]
    long = frame[[*ids, *B2N_METRICS]].melt(id_vars=ids, var_name="metric", value_name="accuracy")
    bars = _seed_bar_kwargs(long, capsize=0.15)
    long["metric"] = long["metric"].map(B2N_METRICS)
    order = list(dict.fromkeys(frame["dataset"]))
    methods = list(dict.fromkeys(frame["method"]))  # seaborn 0.13 divides by zero dodging a single method
    fig, axes = panel_grid(len(B2N_METRICS), height, panel_width=BOOK_WIDTH / 2)
    for ax, metric in zip(axes, B2N_METRICS.values(), strict=True):
        sns.pointplot(data=long[long["metric"] == metric], x="dataset", y="accuracy", hue="method", order=order,
                      hue_order=methods, linestyle="none", dodge=0.3 if len(methods) > 1 else False, markersize=5,
                      ax=ax, **bars)
        panel_title(ax, metric)
        ax.set_xlabel("")
        ax.set_ylabel("accuracy (%)")
        slant_ticks(ax, 45)
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    fig.tight_layout()
    figure_legend(fig, handles, labels, title=_bars_title(title, bars["errorbar"]))
    return fig


def accuracy_panels(panels: Sequence[tuple[str, pd.DataFrame]], height: float = 3.4) -> plt.Figure:
    """Grouped accuracy bars per dataset (x) and method (colour), one panel per source with its own y axis.

    Each frame is tidy (``method``, ``dataset``, ``accuracy``) and keeps its row order; mini and reported numbers
    go in different panels, never in the same one. A frame of runs with a ``seed`` column shows the mean over seeds
    with its 95% interval as an error bar.
    """
    widest = max(frame["dataset"].nunique() for _, frame in panels)
    # more than six dataset groups need the column's whole width; fewer fit two panels a row
    fig, axes = panel_grid(len(panels), height, max_cols=1 if widest > 6 else 2,
                           panel_width=max(3.0, 0.55 * widest + 1.5))
    methods = list(dict.fromkeys(m for _, frame in panels for m in frame["method"]))
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))  # one colour per method
    with_bars = False
    for ax, (title, frame) in zip(axes, panels, strict=True):
        bars = _seed_bar_kwargs(frame, capsize=0.2)
        with_bars = with_bars or bars["errorbar"] is not None
        sns.barplot(data=frame, x="dataset", y="accuracy", hue="method", order=list(dict.fromkeys(frame["dataset"])),
                    hue_order=list(dict.fromkeys(frame["method"])), palette=palette, ax=ax, legend=False, **bars)
        ax.set_xlabel("")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        panel_title(ax, title)
        slant_ticks(ax, 40)
    fig.tight_layout()
    # one legend above the panels (a legend inside the axes hid the tallest bars)
    figure_legend(fig, [plt.Rectangle((0, 0), 1, 1, color=palette[m]) for m in methods], methods,
                  title=SEED_BARS if with_bars else "")
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
                  average: str | None = None, delta: str | None = None, gap: str | None = None) -> pd.DataFrame:
    """Accuracy per method (rows) and dataset (columns, display names), averaged over seeds, as the paper prints.

    ``frame`` is tidy (``method``, ``dataset``, ``accuracy``, optional ``seed``); ``average`` names the key of a
    precomputed average (e.g. ``xd_average``) shown last as 'Average'. With ``delta`` (a baseline method) and
    several seeds, each other method adds a row of its mean difference to the baseline and a row of that
    difference's 95% interval half width over seeds (``seed_half_width``): where the difference is smaller, it is
    inside the noise of the few-shot sample. ``gap`` names a last column: the first dataset (the source) minus
    ``average``, per seed, so its difference to the baseline gets an interval like the others.
    """
    methods = list(methods or dict.fromkeys(frame["method"]))
    columns = [*datasets, *([average] if average else [])]
    if gap is not None and average is not None:
        keys = ["method", "seed"] if "seed" in frame else ["method"]
        per_run = frame.pivot_table(index=keys, columns="dataset", values="accuracy")
        extra = (per_run[datasets[0]] - per_run[average]).rename("accuracy").reset_index().assign(dataset=gap)
        frame, columns = pd.concat([frame, extra], ignore_index=True), [*columns, gap]
    mean = frame.groupby(["method", "dataset"], sort=False)["accuracy"].mean().unstack("dataset")
    wide = mean.reindex(index=methods, columns=columns)
    labels = [METHOD_LABELS.get(m, m) for m in methods]
    if delta is not None and "seed" in frame and frame["seed"].nunique() > 1:
        per_seed = frame.pivot_table(index=["method", "seed"], columns="dataset", values="accuracy")
        present = set(per_seed.index.get_level_values("method"))
        for method, label in zip(methods, list(labels), strict=True):
            if method != delta and {method, delta} <= present:  # a method without runs gets no difference
                gaps = (per_seed.loc[method] - per_seed.loc[delta]).reindex(columns=columns)
                name = f"{label} − {METHOD_LABELS.get(delta, delta)}"
                wide.loc[name] = gaps.mean()
                wide.loc[f"{SEED_INTERVAL} ({label})"] = gaps.apply(lambda c: seed_half_width(list(c)))
                labels += [name, f"{SEED_INTERVAL} ({label})"]
    wide.columns = [("Average" if c == average else display_name(c)) for c in columns]
    wide.index = labels
    return wide.round(2)


#: the label of a column or row that holds half the 95% t-interval over seeds of the difference beside it
SEED_INTERVAL = "± 95%"


#: reasoning-dynamics metrics (columns of ``perlkit.experiments.reasoning_dynamics``) and their axis labels
DYNAMICS_METRICS: dict[str, str] = {
    "accuracy": "accuracy (%)",
    "confidence": "target confidence (%)",
    "brier": "Brier score",
    "kl_from_step0": "KL(p_k || p_0)",
}


def dynamics_lines(frame: pd.DataFrame, hue: str = "subset", style: str | None = "dataset",
                   height: float = 2.8, width: float = 3.5, palette: str | None = None, title: str = "") -> plt.Figure:
    """Metrics against reasoning step 0..K (paper Figs. 4-5): one panel per metric, two a row, lines per
    ``hue``/``style``; one legend under the panels (a figure title above them stays clear of it)."""
    metrics = [m for m in DYNAMICS_METRICS if m in frame.columns]
    fig, axes = panel_grid(len(metrics), height, panel_width=width)
    for i, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        sns.lineplot(data=frame, x="step", y=metric, hue=hue, style=style, markers=True, dashes=True, ax=ax,
                     errorbar=None, legend=i == 0, palette=palette)
        ax.set_xticks(sorted(frame["step"].unique()))
        ax.set_xlabel("reasoning step k")
        ax.set_ylabel("")
        panel_title(ax, DYNAMICS_METRICS[metric])
    handles, labels = axes[0].get_legend_handles_labels()
    if axes[0].get_legend() is not None:
        axes[0].get_legend().remove()
    figure_title(fig, title)
    fig.tight_layout()
    figure_legend(fig, handles, labels, below=True)
    return fig


def step_probability_panels(probs: pd.DataFrame, true_class: str, height: float = 2.6, title: str = "") -> plt.Figure:
    """Small multiples of one image's class probabilities at every step (the static twin of the slider), three a row
    (bars on a shared class axis, named once a row).

    ``probs`` has one row per (step, class) with ``step``, ``class`` and ``probability``; classes keep their order.
    """
    steps = sorted(probs["step"].unique())
    classes = list(dict.fromkeys(probs["class"]))
    fig, axes = panel_grid(len(steps), height, max_cols=3, sharey=True)
    colours = ["tab:green" if c == true_class else "tab:grey" for c in classes]
    for ax, step in zip(axes, steps, strict=True):
        part = probs[probs["step"] == step].set_index("class").reindex(classes)
        ax.barh(range(len(classes)), part["probability"], color=colours)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        panel_title(ax, "step 0 (zero-shot)" if step == 0 else f"step {step}")
        ax.set_xlabel("probability")
    axes[0].set_yticks(range(len(classes)), [_wrap(c, 18) for c in classes])
    axes[0].invert_yaxis()
    figure_title(fig, title)
    fig.tight_layout()
    return fig


def step_probability_bar(probs: pd.DataFrame, step: int, true_class: str, height: float = 2.6,
                         title: str = "") -> plt.Figure:
    """One step of :func:`step_probability_panels`, for the interactive explorer."""
    classes = list(dict.fromkeys(probs["class"]))
    part = probs[probs["step"] == step].set_index("class").reindex(classes)
    fig, (ax,) = panel_grid(1, height, panel_width=4.8)
    ax.barh(range(len(classes)), part["probability"],
            color=["tab:green" if c == true_class else "tab:grey" for c in classes])
    ax.set_yticks(range(len(classes)), [_wrap(c, 26) for c in classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    panel_title(ax, ("step 0 (zero-shot)" if step == 0 else f"step {step}") + (f"; {title}" if title else ""))
    fig.tight_layout()
    return fig


def step_explorer(probs: pd.DataFrame, true_class: str, steps: int | None = None, title: str = "",
                  height: float = 2.6) -> ipywidgets.VBox:
    """A step slider over :func:`step_probability_bar` that works in the static HTML book, with no kernel: every step
    is drawn once into a PNG ``Image`` of a ``Stack``, and ``jslink`` (a front-end link, kept in the embedded widget
    state) shows the slider's step (an ``interactive_output`` callback redraws only while a kernel runs). ``steps`` is
    the last step K (0..K are shown; None: the table's last step)."""
    import io

    import ipywidgets as widgets

    last = int(probs["step"].max()) if steps is None else int(steps)
    missing = sorted(set(range(last + 1)) - {int(s) for s in probs["step"].unique()})
    if last < 0 or missing:
        raise ValueError(f"step_explorer needs every step 0..{last} in the table; missing {missing}")
    images = []
    for step in range(last + 1):
        fig = step_probability_bar(probs, step, true_class, height=height, title=title)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=2 * fig.dpi)  # no tight box: every step the same size, no jump
        width = f"{round(fig.get_figwidth() * fig.dpi)}px"  # shown at 1:1, like the inline backend's retina PNGs
        plt.close(fig)
        images.append(widgets.Image(value=buffer.getvalue(), format="png", width=width))
    slider = widgets.IntSlider(value=0, min=0, max=last, step=1, description="step")
    stack = widgets.Stack(images, selected_index=0)
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])


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


def b2n_wide(frame: pd.DataFrame, methods: Sequence[str] | None = None, delta: str | None = None,
             runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Base / Novel / HM per dataset (rows, paper order, average last) with one column block per method.

    ``frame`` is tidy (``method``, ``dataset``, ``base``, ``novel``, ``hm``), e.g. ``b2n_summary`` output or the
    reported rows. ``delta`` names a baseline method: a last column gives each other method's HM minus its HM.
    ``runs``: the per-seed rows behind ``frame`` (``b2n_table``); with several seeds, each difference column is
    followed by the half width of its 95% interval over seeds (``seed_half_width``; the average row's is that of
    the per-seed mean over datasets).
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
                if runs is not None and runs["seed"].nunique() > 1 and {method, delta} <= set(runs["method"]):
                    wide[(label, SEED_INTERVAL)] = _hm_gap_half_widths(runs, method, delta, datasets)
    wide.index = [display_name(d) for d in datasets]
    return wide.round(2)


def _hm_gap_half_widths(runs: pd.DataFrame, method: str, baseline: str, rows: Sequence[str]) -> list[float]:
    """Per row of ``b2n_wide`` (a dataset, or 'average': the mean over the others), the seed interval half width
    of ``method``'s HM minus ``baseline``'s."""
    hm = runs.pivot_table(index=["method", "seed"], columns="dataset", values="hm")
    gaps = hm.loc[method] - hm.loc[baseline]
    datasets = [d for d in rows if d != "average"]
    gaps = gaps.reindex(columns=datasets)  # a dataset one side lacks: NaN, so its seed's average is NaN too
    return [seed_half_width(list(gaps.mean(axis=1, skipna=False) if d == "average" else gaps[d])) for d in rows]


# ================================================================================================================
# Chapter 02 (method): PERL's architecture, drawn in code.
# ================================================================================================================

#: face and edge colours of the method diagram's boxes: CLIP's frozen parts, PERL's trainable thought projectors,
#: and data (inputs, pooled states), which are neither
DIAGRAM_COLOURS: dict[str, tuple[str, str]] = {
    "frozen": ("#cfe2f3", "#3d6e99"), "trainable": ("#f9cb9c", "#b45f06"), "data": ("white", "0.35"),
}


def _block_range(first: int, last: int) -> str:
    return f"block {first}" if first == last else f"blocks {first}–{last}"


def method_diagram(depth: int = 7, steps: int = 4, layers: int = 12, profile_label: str | None = None) -> plt.Figure:
    """PERL's architecture (the paper's Fig. 2) for both encoders, drawn from the J, K, L of a run, so that the picture
    always shows the numbers the chapter uses. Blocks are numbered 0..L-1 as ``FrozenCLIP.base``/``refine`` run them:
    the base is the lower J blocks, as the method text and the 2.67x cost say (Fig. 2 draws J-1, P1); the projector is
    LN -> Linear -> GELU -> Linear, as Eq. 1 says (Fig. 2 puts LN second, P2). Boxes carry ``gid`` ``kind:name`` and
    their labels ``kind:name:label``, so tests can find them."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
    from matplotlib.path import Path

    if not 0 <= depth < layers:
        raise ValueError(f"the split J = {depth} must be a block of the encoder: 0 <= J < L = {layers}")
    if steps < 1:
        raise ValueError(f"PERL needs at least one refinement step, got K = {steps}")
    size, title_size, label_size = MIN_FONT_SIZE, BOOK_RC["axes.titlesize"], BOOK_RC["figure.titlesize"]
    content = 6.3  # inches of drawing; a profile label adds a strip above it, one line a row of the figure's width
    label_lines = textwrap.wrap(str(profile_label or ""), int(BOOK_WIDTH * 72 / (0.55 * label_size)))
    height = content + (0.15 + 0.22 * len(label_lines) if label_lines else 0.0)
    fig = plt.figure(figsize=(BOOK_WIDTH, height))
    ax = fig.add_axes((0, 0, 1, 1))  # one data unit is one inch
    ax.set_xlim(0, BOOK_WIDTH)
    ax.set_ylim(0, height)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, text: str, kind: str, name: str) -> None:
        face, edge = DIAGRAM_COLOURS[kind]
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.05", facecolor=face,
                                    edgecolor=edge, linewidth=1.0, gid=f"{kind}:{name}"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, linespacing=1.3,
                gid=f"{kind}:{name}:label")

    def arrow(*points: tuple[float, float]) -> None:
        ax.add_patch(FancyArrowPatch(path=Path(points), arrowstyle="-|>", mutation_scale=10, color="0.25",
                                     linewidth=1.0, shrinkA=0, shrinkB=0))

    def note(x: float, y: float, text: str, **text_kw: Any) -> None:
        ax.text(x, y, text, fontsize=text_kw.pop("fontsize", size), **text_kw)

    main_w, gap, phi_w = 1.6, 0.6, 1.2  # inches: CLIP's blocks, the room for the loop label, the projector
    # (encoder, readout token, input, final LayerNorm, output, subscript, left edge, side: 1 projector right of the
    # blocks, -1 left of them, so the two projectors meet in the middle and the outputs meet at the logits)
    columns = [
        ("image encoder", "CLS", "image\n(CLS + patch tokens)", "ln_post", "v(K)", "ᵥ", 0.05, 1),
        ("text encoder", "EOS", "class prompts\n(SOT, words, EOS)", "ln_final", "T(K)", "ₜ", BOOK_WIDTH - 3.45, -1),
    ]
    logits_x, logits_w = 2.25, BOOK_WIDTH - 4.5
    for encoder, pool, source, final_ln, output, sub, left, side in columns:
        main_x = left if side > 0 else left + gap + phi_w
        phi_x = left + main_w + gap if side > 0 else left
        mid, phi_mid = main_x + main_w / 2, phi_x + phi_w / 2
        key = encoder.split()[0]
        note(left + (main_w + gap + phi_w) / 2, content - 0.15, f"{encoder} (L = {layers} blocks)", ha="center",
             va="center", fontsize=title_size, fontweight="bold")
        box(main_x, 5.3, main_w, 0.55, source, "data", f"{key}_input")
        base = (f"embeddings +\n{_block_range(0, depth - 1)} (J = {depth})\nrun once" if depth
                else "embeddings only\n(J = 0), run once")
        box(main_x, 4.3, main_w, 0.7, base, "frozen", f"{key}_base")
        box(main_x, 2.8, main_w, 0.7, f"{_block_range(depth, layers - 1)}\n(L − J = {layers - depth})\n"
            f"run K + 1 = {steps + 1} times", "frozen", f"{key}_upper")
        box(main_x, 2.1, main_w, 0.4, f"pooled {pool} h(k)", "data", f"{key}_pooled")
        box(main_x, 1.05, main_w, 0.55, f"{final_ln} + π{sub}\n→ joint space", "frozen", f"{key}_projection")
        arrow((mid, 5.3), (mid, 5.0))
        join = 3.95  # where the thought tokens enter the sequence, before block J
        arrow((mid, 4.3), (mid, 3.5))
        note(mid - side * 0.06, (4.3 + join) / 2, "S, cached", ha="right" if side > 0 else "left", va="center")
        arrow((mid, 2.8), (mid, 2.5))
        arrow((mid, 2.1), (mid, 1.6))
        note(mid + 0.06, 1.85, "k = K", ha="left", va="center")
        # the thought projector, bottom to top, fed by the pooled state of the previous pass
        layers_phi = ["LN", f"Linear(d{sub} → 1)", "GELU", f"Linear(1 → d{sub})"]
        rows = [2.1 + i * 0.5 for i in range(len(layers_phi))]  # box bottoms: LN level with the pooled state
        for i, (part, bottom) in enumerate(zip(layers_phi, rows, strict=True)):
            box(phi_x, bottom, phi_w, 0.32 if i else 0.4, part, "trainable", f"{key}_phi_{i}")
            if i:
                arrow((phi_mid, rows[i - 1] + (0.32 if i > 1 else 0.4)), (phi_mid, bottom))
        near, far = (main_x + main_w, phi_x) if side > 0 else (main_x, phi_x + phi_w)
        arrow((near, 2.3), (far, 2.3))
        note((near + far) / 2, 2.36, "k < K", ha="center", va="bottom")
        note(phi_mid, 2.0, f"thought\nprojector φ{sub}", ha="center", va="top")
        arrow((phi_mid, rows[-1] + 0.32), (phi_mid, join), (mid + side * 0.04, join))  # its head meets the dot
        ax.plot([mid], [join], marker="o", markersize=4, color="0.25")  # the sequence before block J
        note((mid + phi_mid) / 2 + side * 0.25, join + 0.05, "z(k+1), prepended", ha="center", va="bottom")
        note((near + far) / 2, 3.15, f"K = {steps}\nsteps", ha="center", va="center", fontsize=title_size,
             fontweight="bold")
        # into CLIP's joint space and the logits
        edge = logits_x if side > 0 else logits_x + logits_w
        arrow((mid, 1.05), (mid, 0.75), (edge, 0.75))
        note((mid + edge) / 2 + side * 0.2, 0.8, output, ha="center", va="bottom")
    box(logits_x, 0.45, logits_w, 0.6, "logits = τ · cos(v(K), T(K))\n(CLIP's frozen scale τ)", "frozen", "logits")
    handles = [Patch(facecolor=DIAGRAM_COLOURS[k][0], edgecolor=DIAGRAM_COLOURS[k][1], label=label)
               for k, label in (("frozen", "frozen (CLIP)"), ("trainable", "trainable (PERL)"))]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False,
              fontsize=size, borderaxespad=0.2)
    if label_lines:
        note(BOOK_WIDTH / 2, (content + height) / 2, "\n".join(label_lines), ha="center", va="center",
             fontsize=label_size)
    return fig


def start_end_panels(table: pd.DataFrame, height: float = 2.6, title: str = "") -> plt.Figure:
    """Readings the paper gives only at a curve's two ends (``perlkit.reported.fig4_start_end``: rows (quantity,
    protocol), columns ``step 0`` and ``step K``): one panel per quantity, three a row, one dotted line per protocol
    between its two readings (nothing is drawn as read in between); one legend under the panels."""
    steps = {int(str(c).split()[1]): c for c in table.columns if str(c).startswith("step ")}
    protocols = list(dict.fromkeys(table.index.get_level_values(1)))
    colours = dict(zip(protocols, sns.color_palette("colorblind", len(protocols)), strict=True))
    quantities = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, axes = panel_grid(len(quantities), height, max_cols=3)
    handles: dict[str, Any] = {}
    for ax, quantity in zip(axes, quantities, strict=True):
        for protocol, row in table.loc[quantity].iterrows():
            (line,) = ax.plot(list(steps), [row[c] for c in steps.values()], marker="o", linestyle=":",
                              color=colours[protocol])
            handles.setdefault(str(protocol), line)
        ax.set_xticks(list(steps))
        ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
        ax.set_xlabel("reasoning step k")
        panel_title(ax, str(quantity))
    figure_title(fig, title)
    fig.tight_layout()
    figure_legend(fig, list(handles.values()), list(handles), below=True)
    return fig
