"""The book's figures stay readable: every plot function, fed small synthetic frames, draws a figure at most the text
column wide (as the notebook shows it: cropped to its tight box), with no text under 9 pt, panels wrapped two (or, for
small multiples, three) a row, named points that never overlap, and single-bar panels merged into one grouped panel."""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402

from perlkit import plots  # noqa: E402
from perlkit.experiments.calibration import calibration_plot  # noqa: E402

#: the column is ~690 CSS px, 7.2 in at 96 px an inch
COLUMN_INCHES = 7.2
DATASETS = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft", "SUN397",
            "DTD", "EuroSAT", "UCF101"]
METHODS = ["zero-shot CLIP", "PERL", "MMRL", "MMRL++", "MMA", "R-MMA"]
#: a dozen methods packed into one decade of parameters and one point of accuracy: names must still not overlap
CROWDED = pd.DataFrame({"method": ["zero-shot CLIP", "CoOp", "KgCoOp", "CoCoOp", "PromptSRC", "ProVP", "TCP", "MMA",
                                   "MMRL++", "MaPLe", "MMRL", "PERL", "R-MMA", "MMRL-long-name"],
                        "params": [0, *(2000 * 1.25 ** i for i in range(13))],
                        "accuracy": [70 + 0.06 * ((3 * i) % 7) for i in range(14)]})


pytestmark = pytest.mark.usefixtures("book_style")  # conftest: the book's style, restored after each test


def shown_inches(fig: plt.Figure) -> float:
    """The width a notebook shows the figure at: the inline backend's PNG (tight box, twice the dpi) over 2x dpi."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=2 * fig.dpi, bbox_inches="tight")
    width = struct.unpack(">I", buffer.getvalue()[16:20])[0]  # the PNG header's IHDR width
    return width / (2 * fig.dpi)


def smallest_font(fig: plt.Figure) -> float:
    fig.canvas.draw()
    return min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())


def panels_per_row(fig: plt.Figure) -> int:
    rows: dict[float, int] = {}
    for ax in fig.axes:
        if ax.get_visible():
            top = round(ax.get_position().y1, 2)
            rows[top] = rows.get(top, 0) + 1
    return max(rows.values())


def label_boxes(fig: plt.Figure) -> list:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(a, renderer) for a in fig.findobj(Annotation) if a.get_text()]  # text, no leader


def _metric_frame(values: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"value": values, "base": rng.uniform(70, 90, len(values)),
                         "novel": rng.uniform(60, 80, len(values)), "hm": rng.uniform(65, 85, len(values))})


def _bench_panels() -> list[tuple[str, pd.DataFrame, str, str]]:
    many = pd.DataFrame({"method": ["zeroshot", "perl", "mma", "mmrl", "mmrlpp", "rmma"],
                         "eval ms/image": [1.0, 2, 3, 4, 5, 6], "train ms/image": [np.nan, 20, 30, 40, 50, 60]})
    one = pd.DataFrame({"method": ["perl (K=4)"], "eval ms/image": [1200.0], "train ms/image": [2400.0]})
    panels = []
    for device, frame in (("CPU, mini-clip", many), ("CPU, ViT-B-16", one), ("H100, ViT-B-16", many)):
        panels += [(f"evaluation ({device})", frame, "eval ms/image", "ms per image"),
                   ("training, batch 4", frame, "train ms/image", "ms per image")]
    return panels


def _calibration_report() -> dict:
    real = [72.4, 96.8, 91.2, 63.4, 72.1, 90.1, 27.2, 69.4, 53.2, 56.5, 70.5]
    names = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
             "sun397", "dtd", "eurosat", "ucf101"]
    rows = {n: {"zeroshot_all": v, "zeroshot_base": v - 3, "probe_base": min(99.0, v + 15), "headroom": 15.0,
                "real_zeroshot_base": v, "steps_one_epoch": 10, "real_steps_one_epoch": 20}
            for n, v in zip(names, real, strict=True)}
    return {"profile": "mini", "benchmarks": rows}


def _diagnosis() -> object:
    """What ``diagnose_perl`` returns, as far as ``plots.diagnosis_figure`` reads it."""
    from types import SimpleNamespace

    curve = pd.DataFrame({"step": range(1, 101), "ce": np.linspace(1.4, 1.3, 100), "anchor": np.linspace(0, 1e-3, 100)})
    checkpoints = pd.DataFrame({"step": [0, 50, 100], "train_accuracy": [67.5, 67.8, 68.0],
                                "test_accuracy": [66.0, 66.2, 66.5]})
    return SimpleNamespace(curve=curve, checkpoints=checkpoints, summary=lambda: {"zeroshot_test": 69.25})


def test_prediction_grid_colours_each_title_by_its_top_prediction() -> None:
    image = np.zeros((8, 8, 3))
    fig = plots.prediction_grid([image] * 2, ["cat", "dog"], [[("cat", 0.6), ("dog", 0.4)], [("cat", 0.7)]])
    titles = [ax.title for ax in fig.axes]
    assert [t.get_text() for t in titles] == ["cat 60 %\ndog 40 %", "cat 70 %"]
    assert [t.get_color() for t in titles] == ["tab:green", "tab:red"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["true: cat", "true: dog"]


def test_diagnosis_figure_draws_the_loss_and_the_accuracy_against_zero_shot() -> None:
    fig = plots.diagnosis_figure(_diagnosis(), "title")
    loss, accuracy = fig.axes
    assert loss.get_title() == "loss (10-step mean)" and len(loss.get_lines()) == 2
    assert 69.25 in [line.get_ydata()[0] for line in accuracy.get_lines()]  # the zero-shot line


def _figures() -> dict[str, Callable[[], plt.Figure]]:
    """Every plot function of the book on a synthetic frame as large as a chapter's (or larger)."""
    rng = np.random.default_rng(0)
    tidy = pd.DataFrame([{"method": m, "dataset": d, "base": 80.0, "novel": 70.0, "hm": 75.0}
                         for m in METHODS[:2] for d in DATASETS])
    transfer = tidy[["method", "dataset"]].assign(accuracy=60.0)
    dg = transfer[transfer["dataset"].isin(DATASETS[:5])]
    bars = pd.DataFrame([{"dataset": d, "method": m, "hm": rng.uniform(40, 80)} for d in [*DATASETS, "average"]
                         for m in METHODS])
    dynamics = pd.DataFrame([{"step": k, "subset": s, "dataset": d, "accuracy": 50.0 + k, "confidence": 30.0 + k,
                              "brier": 0.5, "kl_from_step0": 0.1 * k}
                             for k in range(5) for s in ("base", "novel") for d in ("DTD", "OxfordPets")])
    protocols = pd.DataFrame([{"step": k, "protocol": p, "accuracy": 60.0 + k}
                              for k in range(5) for p in ("base-to-novel: base", "domain generalisation (4 variants)")])
    classes = [f"class with a long name {i}" for i in range(10)]
    probs = pd.DataFrame([{"step": k, "class": c, "probability": 0.1} for k in range(9) for c in classes])
    tokens = [f"t{i}" for i in range(16)]
    image = np.zeros((8, 8, 3))
    return {
        "metric_panels": lambda: plots.metric_panels([(f"source {i}", _metric_frame(["1", "2"])) for i in range(5)],
                                                     "reasoning steps K"),
        "metric_panels_bar": lambda: plots.metric_panels([("mini", _metric_frame(["vision", "text", "both"]))] * 2,
                                                         "encoders", kind="bar"),
        "params_scatter": lambda: plots.params_scatter([("reported (paper Fig. 1)", CROWDED), ("mini", CROWDED),
                                                        ("mini, 11 datasets (precomputed)", CROWDED)], "novel (%)"),
        "method_bars": lambda: plots.method_bars(_bench_panels()),
        "comparison_bars": lambda: plots.comparison_bars(bars, "hm", "mini, executed (dtd; seed 1), protocol unified"),
        "zeroshot_chance_plot": lambda: plots.zeroshot_chance_plot(
            pd.DataFrame({"benchmark": DATASETS * 2, "accuracy": 50.0, "chance": 1.0}), "mini CLIP, zero-shot"),
        "mask_heatmap": lambda: plots.mask_heatmap(pd.DataFrame(np.tril(np.ones((16, 16), int)), tokens, tokens),
                                                   "causal mask at step 4"),
        "training_curves": lambda: plots.training_curves([{"step": i, "loss": 1.0, "ce": 0.9, "anchor": 0.1}
                                                          for i in range(30)], "PERL on DTD (mini profile)"),
        "b2n_points": lambda: plots.b2n_points(tidy, "mini profile"),
        "accuracy_panels": lambda: plots.accuracy_panels([("mini profile", transfer),
                                                          ("reported (paper, Table 2)", transfer)]),
        "accuracy_panels_dg": lambda: plots.accuracy_panels([("mini profile", dg), ("reported (paper, Table 8)", dg)]),
        "dynamics_lines": lambda: plots.dynamics_lines(dynamics, title="mini profile"),
        "dynamics_lines_reported": lambda: plots.dynamics_lines(protocols, hue="protocol", style=None, height=3.2,
                                                                width=5.0, palette="tab10"),
        "step_probability_panels": lambda: plots.step_probability_panels(probs, classes[0], title="mini profile"),
        "step_probability_bar": lambda: plots.step_probability_bar(probs, 2, classes[0]),
        "image_grid": lambda: plots.image_grid([(d, [(image, "a class with a long name")] * 8) for d in DATASETS[:3]]),
        "calibration_plot": lambda: calibration_plot(_calibration_report()),
        "diagnosis_figure": lambda: plots.diagnosis_figure(_diagnosis(), "PERL on Caltech101 (mini profile, paper "
                                                                         "default (App. A))"),
        "prediction_grid": lambda: plots.prediction_grid(
            [image] * 4, classes[:4], [[(classes[i], 0.5), (classes[9], 0.3), (classes[8], 0.2)] for i in (0, 5, 2, 3)],
            "perl top-3 on held-out images (mini profile)"),
    }


@pytest.mark.parametrize("name", list(_figures()))
def test_every_figure_fits_the_column_with_readable_text(name: str) -> None:
    fig = _figures()[name]()
    assert shown_inches(fig) <= COLUMN_INCHES, f"{name} is shown {shown_inches(fig):.2f} in wide"
    assert smallest_font(fig) >= plots.MIN_FONT_SIZE, f"{name} has text at {smallest_font(fig)} pt"
    if name != "image_grid":  # a gallery of thumbnails, not plots
        assert panels_per_row(fig) <= 3, f"{name} puts {panels_per_row(fig)} panels in a row"


def test_panel_grid_wraps_rows_within_the_column() -> None:
    fig, axes = plots.panel_grid(5, 2.0)
    assert len(axes) == 5 and len(fig.axes) == 5  # the sixth cell is removed, not left blank
    assert fig.get_figwidth() == plots.BOOK_WIDTH and fig.get_figheight() == 6.0 and panels_per_row(fig) == 2
    fig, (ax,) = plots.panel_grid(1, 3.0, panel_width=4.0)
    assert fig.get_figwidth() == 4.0
    fig, axes = plots.panel_grid(3, 3.0, panel_width=5.0)
    assert fig.get_figwidth() == plots.BOOK_WIDTH  # two 5 in panels a row are capped at the column's width
    with pytest.raises(ValueError, match="at least one"):
        plots.panel_grid(0, 3.0)


def test_book_style_sets_readable_fonts_outside_a_notebook() -> None:
    assert matplotlib.rcParams["figure.dpi"] == 96
    for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                "legend.fontsize"):
        assert matplotlib.rcParams[key] >= plots.MIN_FONT_SIZE, key


def test_names_in_a_crowded_scatter_never_overlap_and_stay_inside_their_panel() -> None:
    fig = plots.params_scatter([("crowded", CROWDED)], "novel accuracy (%)")
    boxes = label_boxes(fig)
    assert len(boxes) == len(CROWDED)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    frame = fig.axes[0].get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    texts = {a.get_text() for a in fig.findobj(Annotation)}
    assert "zero-shot CLIP (0, drawn at 100)" in texts  # a decade below the smallest positive count


def test_the_old_fixed_offsets_did_overlap_on_the_same_points() -> None:
    """The crowded example is crowded: labels at one fixed offset (what the scatter did before) collide."""
    fig, ax = plt.subplots(figsize=(plots.BOOK_WIDTH, 3.4))
    x = CROWDED["params"].where(CROWDED["params"] > 0, 100)
    ax.scatter(x, CROWDED["accuracy"])
    ax.set_xscale("log")
    ax.set_xlim(x.min() / 2, x.max() * 4)  # the old scatter's limits
    ax.set_ylim(CROWDED["accuracy"].min() - 1, CROWDED["accuracy"].max() + 2)
    for name, px, py in zip(CROWDED["method"], x, CROWDED["accuracy"], strict=True):
        ax.annotate(name, (px, py), xytext=(4, 4), textcoords="offset points", fontsize=9)
    assert any(a.overlaps(b) for a, b in itertools.combinations(label_boxes(fig), 2))


def test_point_labels_are_placed_the_same_way_every_time() -> None:
    def positions() -> list[tuple]:
        fig = plots.params_scatter([("crowded", CROWDED)], "novel accuracy (%)")
        return [(a.get_text(), a.xyann, a.get_ha(), a.get_va()) for a in fig.findobj(Annotation)]

    assert positions() == positions()


def test_calibration_scatter_names_do_not_overlap() -> None:
    fig = calibration_plot(_calibration_report())
    assert panels_per_row(fig) == 1  # stacked, each at the column's width
    boxes = label_boxes(fig)
    assert len(boxes) == 11
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_single_bar_panels_merge_into_one_grouped_panel() -> None:
    fig = plots.method_bars(_bench_panels())
    assert len(fig.axes) == 5  # 6 panels: the two single-bar ones (CPU ViT-B-16) become one
    merged = fig.axes[-1]
    assert len(merged.patches) == 2 and merged.get_title() == "perl (K=4)"
    ticks = [t.get_text().replace("\n", " ") for t in merged.get_xticklabels()]
    assert ticks == ["evaluation (CPU, ViT-B-16)", "training, batch 4"]
    assert sorted(p.get_height() for p in merged.patches) == [1200.0, 2400.0]
    assert all(len(ax.patches) > 1 for ax in fig.axes)


def test_single_bar_panels_with_one_title_are_numbered_not_averaged() -> None:
    one = pd.DataFrame({"method": ["perl"], "ms": [1.0]})
    two = pd.DataFrame({"method": ["perl"], "ms": [3.0]})
    fig = plots.method_bars([("training", one, "ms", "ms per image"), ("training", two, "ms", "ms per image")])
    (ax,) = fig.axes
    assert sorted(p.get_height() for p in ax.patches) == [1.0, 3.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["training (1)", "training (2)"]


def test_a_lone_single_bar_panel_is_kept() -> None:
    fig = plots.method_bars([("only", pd.DataFrame({"method": ["perl"], "ms": [1.0]}), "ms", "ms per image")])
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 1


def test_figure_titles_name_the_profile_above_the_legend() -> None:
    tidy = pd.DataFrame([{"method": m, "dataset": d, "base": 80.0, "novel": 70.0, "hm": 75.0}
                         for m in METHODS[:2] for d in DATASETS[:3]])
    fig = plots.b2n_points(tidy, title="paper profile")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title, legend = fig.get_suptitle(), fig.legends[0]
    assert title == "paper profile"
    assert fig._suptitle.get_window_extent(renderer).y0 >= legend.get_window_extent(renderer).y1 - 1
    probs = pd.DataFrame({"step": [0, 1], "class": ["a", "a"], "probability": [0.5, 0.6]})
    assert plots.step_probability_panels(probs, "a", title="mini profile").get_suptitle() == "mini profile"
    grid = plots.image_grid([("DTD", [(np.zeros((4, 4, 3)), "banded")])], title="mini profile")
    assert grid.get_suptitle() == "mini profile"


def test_provenance_caption_names_the_newest_commit_and_counts_the_rest() -> None:
    runs = [{"provenance": {"git_commit": c, "created": t, "device": "cpu (AMD, 1 thread)", "fingerprint": {"c": 1}}}
            for c, t in (("aaaaaaaaaa11", "2026-11-26T10:00"), ("bbbbbbbbbb22", "2026-11-26T12:00"),
                         ("cccccccccc33", "2026-11-26T11:00"))]
    caption = plots.provenance_caption(runs)
    assert "3 runs, perlkit commit bbbbbbbbbb (and 2 earlier)" in caption
    assert "aaaaaaaaaa" not in caption


def test_step_explorer_works_without_a_kernel() -> None:
    """The explorer is a Stack of one PNG per step, shown by a front-end link from the slider (no Python callback,
    which a static page cannot run), each image drawn as the book's figures are (at most the column wide, 2x PNG)."""
    import ipywidgets as widgets
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import DirectionalLink, Link

    classes = [f"class with a long name {i}" for i in range(10)]
    probs = pd.DataFrame([{"step": k, "class": c, "probability": 0.1 * (k + i) % 1}
                          for k in range(5) for i, c in enumerate(classes)])
    box = plots.step_explorer(probs, classes[0], title="mini profile")
    slider, stack = box.children
    assert isinstance(stack, widgets.Stack) and len(stack.children) == 5 and stack.selected_index == 0
    assert (slider.min, slider.max, slider.value) == (0, 4, 0)
    links = [w for w in _instances.values() if isinstance(w, Link) and w.target == (stack, "selected_index")]
    assert [link.source for link in links] == [(slider, "value")]
    assert not isinstance(links[0], DirectionalLink)  # two-way: both ends stay in step
    frames = [bytes(image.value) for image in stack.children]  # the Image trait holds a memoryview
    assert all(frame.startswith(b"\x89PNG\r\n\x1a\n") for frame in frames)
    assert len(set(frames)) == 5  # each step draws its own bars
    for image, frame in zip(stack.children, frames, strict=True):
        width = struct.unpack(">I", frame[16:20])[0]
        assert abs(width - 2 * int(image.width.removesuffix("px"))) <= 1  # shown at 1:1, within a rounded pixel
        assert width / 2 / 96 <= COLUMN_INCHES
    assert not plt.get_fignums()  # every frame's figure is closed, none is shown twice in the notebook
    assert len(plots.step_explorer(probs, classes[0], steps=2).children[1].children) == 3
    with pytest.raises(ValueError, match="missing"):
        plots.step_explorer(probs[probs["step"] != 2], classes[0])


def test_seed_errorbar_is_the_tables_t_interval_and_absent_for_one_seed() -> None:
    runs = pd.DataFrame({"seed": [1, 2, 3], "accuracy": [50.0, 52.0, 57.0]})
    lo, hi = plots.seed_errorbar(runs)(runs["accuracy"])
    half = plots.seed_half_width([50.0, 52.0, 57.0])
    assert (lo, hi) == pytest.approx((53.0 - half, 53.0 + half)) and half == pytest.approx(4.303 * 3.6056 / 3 ** 0.5,
                                                                                           rel=1e-4)
    assert plots.seed_errorbar(runs.assign(seed=1)) is None
    assert plots.seed_errorbar(runs.drop(columns="seed")) is None  # reported numbers


def test_accuracy_and_b2n_figures_show_the_seed_interval_of_runs_and_none_for_reported_numbers(
        error_segments: Callable) -> None:
    runs = pd.DataFrame({"method": ["PERL"] * 3, "dataset": ["DTD"] * 3, "seed": [1, 2, 3],
                         "accuracy": [50.0, 52.0, 57.0], "base": [50.0, 52.0, 57.0], "novel": [40.0] * 3,
                         "hm": [45.0] * 3})
    half = plots.seed_half_width([50.0, 52.0, 57.0])
    fig = plots.accuracy_panels([("runs", runs), ("reported", runs.drop(columns="seed").iloc[:1])])
    assert error_segments(fig.axes[0]) == [(round(53.0 - half, 4), round(53.0 + half, 4))]
    assert error_segments(fig.axes[1]) == []
    assert plots.SEED_BARS in fig.texts[0].get_text()
    fig = plots.b2n_points(runs, title="mini")
    assert error_segments(fig.axes[0]) == [(round(53.0 - half, 4), round(53.0 + half, 4))]  # base
    assert plots.SEED_BARS in fig.texts[0].get_text()
    plain = plots.b2n_points(runs.drop(columns="seed").iloc[:1], title="reported")
    assert not any(error_segments(ax) for ax in plain.axes) and plots.SEED_BARS not in plain.texts[0].get_text()
