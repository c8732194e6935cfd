"""The method chapter's architecture diagram is drawn in code from J, K and L: it fits the book's column, reads at
9 pt and more, shows the numbers it is given, keeps every label clear of the others, of the boxes and of the arrows,
and tells frozen from trainable parts by colour."""

from __future__ import annotations

import io
import itertools
import struct

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from perlkit import plots  # noqa: E402

#: the column is ~690 CSS px, 7.2 in at 96 px an inch (as in test_plots)
COLUMN_INCHES = 7.2
#: (depth J, steps K, layers L, profile label): the paper's setting, the extremes of J, long labels, two digits
SETTINGS = [(7, 4, 12, None), (0, 10, 24, "mini profile (tiny CLIP, one seed)"), (11, 1, 12, None),
            (17, 12, 24, "full profile: OpenAI ViT-L/14 on all eleven datasets, three seeds, base-to-novel protocol, "
                         "every rival trained with its own default recipe")]


pytestmark = pytest.mark.usefixtures("book_style")  # conftest: the book's style, restored after each test


def texts(fig: plt.Figure) -> list[Text]:
    """Every piece of text drawn on the figure: labels, notes, the legend's entries."""
    fig.canvas.draw()
    found = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert found, "the diagram has no text"
    return found


def extent(artist: Text | FancyBboxPatch, fig: plt.Figure) -> Bbox:
    return artist.get_window_extent(fig.canvas.get_renderer())


def boxes(fig: plt.Figure) -> dict[str, FancyBboxPatch]:
    """The diagram's boxes by ``gid`` (``kind:name``)."""
    return {p.get_gid(): p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch) and p.get_gid()}


def flat(text: str) -> str:
    return " ".join(text.split())


def loop_label(fig: plt.Figure) -> list[str]:
    return [flat(t.get_text()) for t in texts(fig) if flat(t.get_text()).endswith("steps")]


def test_fits_the_column_and_is_saved_at_twice_its_size() -> None:
    fig = plots.method_diagram()
    width, height = fig.get_size_inches()
    assert width <= plots.BOOK_WIDTH and height <= 7.5
    buffer = io.BytesIO()  # as the notebook stores it: the tight box with its 0.1 in pad, at twice the dpi
    fig.savefig(buffer, format="png", dpi=2 * fig.dpi, bbox_inches="tight")
    png_width = struct.unpack(">I", buffer.getvalue()[16:20])[0]  # the PNG header's IHDR width
    assert png_width / (2 * fig.dpi) <= COLUMN_INCHES
    assert not fig.findobj(AxesImage)  # drawn with patches and text, not a picture


@pytest.mark.parametrize(("depth", "steps", "layers", "profile"), SETTINGS)
def test_no_text_is_smaller_than_the_minimum(depth: int, steps: int, layers: int, profile: str | None) -> None:
    fig = plots.method_diagram(depth, steps, layers, profile)
    assert min(t.get_fontsize() for t in texts(fig)) >= plots.MIN_FONT_SIZE


@pytest.mark.parametrize(("depth", "steps", "layers", "expected"), [
    (7, 4, 12, ["J = 7", "K = 4 steps", "L = 12 blocks", "blocks 0–6", "blocks 7–11", "L − J = 5",
                "run K + 1 = 5 times"]),
    (5, 3, 9, ["J = 5", "K = 3 steps", "L = 9 blocks", "blocks 0–4", "blocks 5–8", "L − J = 4",
               "run K + 1 = 4 times"]),
    (0, 2, 6, ["J = 0", "K = 2 steps", "L = 6 blocks", "embeddings only", "blocks 0–5", "L − J = 6"]),
    (11, 4, 12, ["J = 11", "blocks 0–10", "block 11 ", "L − J = 1"]),
])
def test_labels_show_the_given_split_steps_and_depth(depth: int, steps: int, layers: int,
                                                      expected: list[str]) -> None:
    """The base is the lower J blocks 0..J-1 and the re-run part blocks J..L-1, numbered as perlkit runs them."""
    fig = plots.method_diagram(depth=depth, steps=steps, layers=layers)
    shown = " | ".join(flat(t.get_text()) + " " for t in texts(fig))
    for label in expected:
        assert label in shown, f"{label!r} missing from the diagram: {shown}"
    for modality in ("image", "text"):  # both encoders carry their own labels
        base = boxes(fig)[f"frozen:{modality}_base"]
        label = next(t for t in fig.axes[0].texts if t.get_gid() == f"frozen:{modality}_base:label")
        assert f"J = {depth}" in label.get_text() and base.get_visible()


def test_changing_the_steps_changes_the_loop_label() -> None:
    assert loop_label(plots.method_diagram(steps=4)) == ["K = 4 steps"] * 2  # one loop per encoder
    assert loop_label(plots.method_diagram(steps=6)) == ["K = 6 steps"] * 2


@pytest.mark.parametrize(("depth", "steps", "layers", "profile"), SETTINGS)
def test_no_two_texts_overlap_and_all_stay_on_the_figure(depth: int, steps: int, layers: int,
                                                         profile: str | None) -> None:
    fig = plots.method_diagram(depth, steps, layers, profile)
    found = [(text.get_text(), extent(text, fig)) for text in texts(fig)]
    page = fig.bbox
    for text, box in found:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, text
    for (a, box_a), (b, box_b) in itertools.combinations(found, 2):
        assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"


@pytest.mark.parametrize(("depth", "steps", "layers", "profile"), SETTINGS)
def test_labels_sit_inside_their_box_and_clear_of_other_boxes_and_arrows(depth: int, steps: int, layers: int,
                                                                         profile: str | None) -> None:
    fig = plots.method_diagram(depth, steps, layers, profile)
    found = texts(fig)
    outlines = {name: extent(shape, fig) for name, shape in boxes(fig).items()}
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) >= 20
    lines = [Path(line) for arrow in arrows  # shafts and heads apart (a closed head's CLOSEPOLY vertex is a dummy)
             for line in arrow.get_transform().transform_path(arrow.get_path()).to_polygons(closed_only=False)]
    for text in found:
        box, gid = extent(text, fig), text.get_gid() or ""
        own = gid.removesuffix(":label") if gid.endswith(":label") else None
        if own is not None:
            outline = outlines[own]
            assert outline.x0 < box.x0 and box.x1 < outline.x1 and outline.y0 < box.y0 and box.y1 < outline.y1, gid
        for name, outline in outlines.items():
            if name != own:
                assert not box.overlaps(outline), f"{text.get_text()!r} runs into box {name}"
        crossed = any(line.intersects_bbox(box, filled=False) for line in lines)
        assert not crossed, f"an arrow crosses {text.get_text()!r}"


def test_trainable_and_frozen_parts_differ_in_colour() -> None:
    """Only the thought projectors (four layers an encoder) are trainable; CLIP's blocks, projections and scale are
    frozen; the legend names both colours."""
    fig = plots.method_diagram()
    shapes = boxes(fig)
    colours = {kind: {to_rgba(p.get_facecolor()) for gid, p in shapes.items() if gid.startswith(f"{kind}:")}
               for kind in ("trainable", "frozen")}
    assert len(colours["trainable"]) == 1 and len(colours["frozen"]) == 1
    assert colours["trainable"] != colours["frozen"]
    trainable = sorted(gid for gid in shapes if gid.startswith("trainable:"))
    assert trainable == [f"trainable:{m}_phi_{i}" for m in ("image", "text") for i in range(4)]
    phi = [flat(next(t.get_text() for t in fig.axes[0].texts if t.get_gid() == f"{gid}:label")) for gid in trainable]
    assert phi[:4] == ["LN", "Linear(dᵥ → 1)", "GELU", "Linear(1 → dᵥ)"]  # Eq. 1's order, LN first (P2)
    frozen = {gid.split(":")[1] for gid in shapes if gid.startswith("frozen:")}
    assert {"image_base", "image_upper", "text_base", "text_upper", "image_projection", "logits"} <= frozen
    legend = fig.axes[0].get_legend()
    entries = dict(zip((t.get_text() for t in legend.get_texts()), legend.get_patches(), strict=True))
    assert to_rgba(entries["trainable (PERL)"].get_facecolor()) in colours["trainable"]
    assert to_rgba(entries["frozen (CLIP)"].get_facecolor()) in colours["frozen"]


@pytest.mark.parametrize(("depth", "steps", "layers"), [(12, 4, 12), (-1, 4, 12), (7, 0, 12)])
def test_refuses_a_split_outside_the_encoder_or_no_steps(depth: int, steps: int, layers: int) -> None:
    with pytest.raises(ValueError):
        plots.method_diagram(depth=depth, steps=steps, layers=layers)
