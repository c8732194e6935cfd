"""The paper's reported tables as the book shows them (perlkit.reported): each holds the printed CSV cells (checked
against cells picked by hand), carries its citation, and reads only the reported CSVs, never an executed result."""

from __future__ import annotations

import io
import math
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from perlkit import plots, reported  # noqa: E402
from perlkit.files import REPO_DATA, cache_root  # noqa: E402
from perlkit.reported import citation  # noqa: E402

DATASET_ROWS = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft",
                "SUN397", "DTD", "EuroSAT", "UCF101", "Average"]
PAPER_METHODS = ["CLIP", "MMRL", "MMRL++", "MaPLe", "MMA", "TCP", "ProVP", "CoCoOp", "PromptSRC", "KgCoOp", "CoOp",
                 "PERL"]

#: every table function of this item, called as a chapter would
TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "table5_b2n": lambda: reported.table5_b2n("hm"),
    "table6_b2n": lambda: reported.table6_b2n("base"),
    "table7_cross_dataset": reported.table7_cross_dataset,
    "prompt_learning_rivals": reported.prompt_learning_rivals,
    "fig4_accuracy_by_step": reported.fig4_accuracy_by_step,
    "fig4_start_end": reported.fig4_start_end,
    "fig5_kl_split": reported.fig5_kl_split,
    "fig8_step0_accuracy": reported.fig8_step0_accuracy,
    "efficiency_table": reported.efficiency_table,
}


def _cite(*keys: str) -> str:
    return "; ".join(citation(k) for k in keys)


# ---------------------------------------------------------------------------------------------- (a) Table 5
def test_table5_holds_every_method_and_dataset_with_the_printed_cells() -> None:
    hm, base, novel = (reported.table5_b2n(m) for m in ("hm", "base", "novel"))
    for table in (hm, base, novel):
        assert list(table.index) == DATASET_ROWS and list(table.columns) == PAPER_METHODS
        assert table.notna().all().all()
    assert hm.loc["EuroSAT", "PERL"] == 69.62 and hm.loc["Average", "PERL"] == 74.79
    assert base.loc["ImageNet", "KgCoOp"] == 50.20 and novel.loc["DTD", "MMA"] == 64.30
    assert hm.loc["FGVCAircraft", "MaPLe"] == 14.19 and base.loc["Average", "PromptSRC"] == 77.45
    # MMRL++'s average is Table 1's; Table 5 prints MMRL's (72.45) there, and the notes say so
    assert hm.loc["Average", "MMRL++"] == 73.07 and hm.loc["Average", "MMRL"] == 72.45
    assert any("MMRL++, Average" in n and "P4" in n for n in hm.attrs["notes"])
    assert any("KgCoOp, ImageNet" in n and "P5" in n for n in hm.attrs["notes"])
    assert hm.attrs["source"] == _cite("perl2026_t1_t5", "perl2026_t1") and hm.attrs["metric"] == "HM"


def test_table5_agrees_with_every_unified_csv_cell() -> None:
    rows = reported.reported_b2n("unified_1epoch")
    rows = rows[rows["table"] != "5"]
    hm = reported.table5_b2n("hm")
    labels = dict(zip(["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                       "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "average"], DATASET_ROWS, strict=True))
    assert len(rows) == hm.size
    for row in rows.itertuples():
        assert hm.loc[labels[row.dataset], row.method] == row.hm


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="base, novel, hm"):
        reported.table5_b2n("accuracy")


# ---------------------------------------------------------------------------------------------- (b) Tables 6, 7
def test_table6_is_each_method_under_its_own_recipe() -> None:
    base, novel, hm = (reported.table6_b2n(m) for m in ("base", "novel", "hm"))
    assert list(hm.index) == DATASET_ROWS and list(hm.columns) == PAPER_METHODS
    assert novel.loc["EuroSAT", "CoOp"] == 54.74 and hm.loc["Average", "MMRL"] == 81.20
    assert novel.loc["Average", "CLIP"] == 74.22  # Table 6's CLIP average differs from Table 5's 74.35 (P7)
    assert base.loc["OxfordPets", "PERL"] == 94.76  # Table 5 prints 94.77 (P9)
    assert reported.table5_b2n("base").loc["OxfordPets", "PERL"] == 94.77
    assert hm.attrs["source"] == _cite("perl2026_t6")


def test_table7_is_the_cross_dataset_table_under_own_recipes() -> None:
    xd = reported.table7_cross_dataset()
    assert list(xd.index) == ["ImageNet (source)", *DATASET_ROWS[1:-1], "Average (targets)"]
    assert "ProVP" not in xd.columns and "CLIP" not in xd.columns and len(xd.columns) == 10
    assert xd.loc["Average (targets)", "KgCoOp"] == 65.96 and xd.loc["EuroSAT", "PERL"] == 40.01
    assert xd.loc["ImageNet (source)", "MMRL"] == 72.03
    assert any("KgCoOp" in n and "P8" in n for n in xd.attrs["notes"])
    assert xd.attrs["source"] == _cite("perl2026_t7")


# ---------------------------------------------------------------------------------------------- (c) other rivals
def test_prompt_learning_rivals_collect_what_the_csvs_hold() -> None:
    rivals = reported.prompt_learning_rivals()
    assert list(rivals.index) == list(reported.PROMPT_LEARNING_RIVALS)
    assert rivals.loc["CoOp", "#Params (paper)"] == "2K" and rivals.loc["MaPLe", "#Params (paper)"] == "3.5M"
    assert rivals.loc["CoOp", "trainable params (official code)"] == 2048
    assert math.isnan(rivals.loc["TCP", "trainable params (official code)"])  # no official count in params.csv
    assert rivals.loc["TCP", "novel (Fig. 1)"] == 69.04
    assert rivals.loc["PromptSRC", "HM (1 epoch, Table 5)"] == 75.66
    assert rivals.loc["PromptSRC", "HM (own recipe, Table 6)"] == 79.97
    assert rivals.loc["CoCoOp", "cross-dataset avg (1 epoch, Table 2)"] == 65.50
    assert rivals.loc["MaPLe", "DG avg (own recipe, Table 8)"] == 60.28
    assert math.isnan(rivals.loc["ProVP", "cross-dataset avg (own recipe, Table 7)"])  # ProVP is not in Table 7
    assert math.isnan(rivals.loc["TCP", "DG avg (own recipe, Table 8)"])  # nor TCP in Table 8
    for key in ("perl2026_params_col", "perl2026_fig1", "perl2026_t1_t5", "perl2026_t6", "perl2026_t2",
                "perl2026_t7", "perl2026_t8", "coop_code", "maple_code"):
        assert citation(key) in rivals.attrs["source"], key
    assert citation("perl2026_t5") not in rivals.attrs["source"]  # Table 5's wrong MMRL++ row is never used


def test_prompt_learning_rivals_take_any_method() -> None:
    picked = reported.prompt_learning_rivals(["PERL", "MMRL"])
    assert picked.loc["PERL", "#Params (paper)"] == "6K" and picked.loc["MMRL", "#Params (paper)"] == "4.9M"
    assert math.isnan(picked.loc["PERL", "trainable params (official code)"])  # no rival's code count for PERL
    assert picked.loc["PERL", "novel (Fig. 1)"] == 75.74 and picked.loc["PERL", "HM (1 epoch, Table 5)"] == 74.79
    assert citation("perl2026_appA") in picked.attrs["source"]


# ---------------------------------------------------------------------------------------------- (d) dynamics
def test_fig4_accuracy_by_step_has_every_protocol_and_step() -> None:
    curves = reported.fig4_accuracy_by_step()
    assert list(curves.index) == [0, 1, 2, 3, 4]
    assert list(curves.columns) == ["base-to-novel: base", "base-to-novel: novel", "cross-dataset (10 targets)",
                                    "domain generalisation (4 variants)"]
    assert curves.loc[0, "cross-dataset (10 targets)"] == 68.6 and curves.loc[4, "cross-dataset (10 targets)"] == 71.1
    assert curves.loc[1, "domain generalisation (4 variants)"] == 61.5
    assert curves.attrs["source"] == _cite("perl2026_fig4_fig7")
    long = curves.reset_index().melt(id_vars="step", value_name="accuracy")  # the form plots.dynamics_lines takes
    assert list(long.columns) == ["step", "protocol", "accuracy"] and len(long) == 20


def test_fig4_start_end_keeps_ranges_and_changes() -> None:
    ends = reported.fig4_start_end()
    assert list(ends.columns) == ["step 0", "step 4", "change", "read as"] and len(ends) == 8
    confidence = ends.loc[("target confidence (%)", "base-to-novel")]
    assert confidence["step 0"] == pytest.approx(64.9) and confidence["step 4"] == 70.0
    assert confidence["read as"] == "64.5–65.3 → 70"
    brier = ends.loc[("Brier score", "domain generalisation (4 variants)")]
    assert (brier["step 0"], brier["step 4"]) == (0.53, 0.50) and brier["change"] == pytest.approx(-0.03)
    assert ends.loc[("input-Jacobian norm (target logit)", "cross-dataset (10 targets)"), "step 4"] == 14.2
    assert ("target confidence (%)", "domain generalisation (4 variants)") not in ends.index  # not in the figure
    assert ends.attrs["source"] == _cite("perl2026_fig4_fig7")


def test_fig5_split_and_fig8_step0() -> None:
    kl = reported.fig5_kl_split()
    assert list(kl.index) == ["correct → correct", "wrong → correct"]
    assert kl.loc["wrong → correct", "median KL(p_k || p_0), low"] == 0.1
    assert kl.loc["wrong → correct", "median KL(p_k || p_0), high"] == 0.3
    assert kl.attrs["source"] == _cite("perl2026_fig5")
    fig8 = reported.fig8_step0_accuracy()
    assert list(fig8.index) == ["ImageNet", "OxfordPets", "Flowers102", "EuroSAT", "UCF101", "Average"]
    eurosat = fig8.loc["EuroSAT"]
    assert eurosat["Base, step 0 (Fig. 8)"] == 49.5 and eurosat["read as"] == "Base 49–50"
    assert eurosat["Base, zero-shot CLIP (Table 5)"] == 56.48
    assert eurosat["Base gap (Fig. 8 − Table 5)"] == pytest.approx(-6.98)
    assert fig8.loc["ImageNet", "Novel, step 0 (Fig. 8)"] == 68.3
    assert fig8.loc["ImageNet", "Novel, zero-shot CLIP (Table 5)"] == 68.14
    assert math.isnan(fig8.loc["UCF101", "Novel, step 0 (Fig. 8)"])  # Fig. 8 gives novel for ImageNet only
    assert fig8.attrs["source"] == _cite("perl2026_fig8", "perl2026_t1_t5")


# ---------------------------------------------------------------------------------------------- (e) timings
def test_efficiency_table_has_the_reported_timings() -> None:
    costs = reported.efficiency_table()
    assert len(costs) == 7 and list(costs.columns) == ["method", "quantity", "value", "unit", "reported by", "note"]
    per_image = reported.efficiency_table(["training_cost_per_image"]).set_index("method")
    assert per_image.loc["R-MMA", "value"] == 1.6 and per_image.loc["MMA", "value"] == 2.2
    assert set(per_image["unit"]) == {"ms/image"} and set(per_image["reported by"]) == {"R-MMA summary"}
    assert per_image.attrs["source"] == _cite("own_rmma_summary")
    latency = costs[(costs["method"] == "MMRL") & (costs["quantity"] == "inference latency")]
    assert latency["value"].tolist() == [6.31] and latency["reported by"].tolist() == ["DiscoVL, Table 6"]
    with pytest.raises(ValueError, match="unknown metric"):
        reported.efficiency_table(["inference_fps"])


# ---------------------------------------------------------------------------------------------- all tables
@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_is_cited_and_reads_only_the_reported_csvs(name: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    TABLES[name]()  # warm: lazy imports open source files, which are not data
    opened: list[str] = []
    _AUDIT.append(opened)
    try:
        table = TABLES[name]()
    finally:
        _AUDIT.remove(opened)
    assert table.attrs["source"].startswith(("Carnemolla", "Fahim")), "every reported table carries its citation"
    assert not table.empty
    data = [Path(p).resolve() for p in opened if Path(p).suffix in {".csv", ".json", ".pt", ".npz", ".parquet"}]
    assert data, "the table was read from the reported CSVs"
    for path in data:
        assert path.parent == reported.reported_dir(), path
        assert not path.is_relative_to(REPO_DATA.resolve()) and not path.is_relative_to(cache_root().resolve())


def test_tables_follow_a_relocated_reported_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables read through load_reported (which honours PERLKIT_REPORTED_DIR), not a path of their own."""
    for csv in reported.reported_dir().glob("*.csv"):
        shutil.copy(csv, tmp_path / csv.name)
    b2n = (tmp_path / "b2n.csv").read_text(encoding="utf-8")
    cell = "1/5,unified_1epoch,PERL,eurosat,67.25,72.25,69.62,"
    assert b2n.count(cell) == 1
    (tmp_path / "b2n.csv").write_text(b2n.replace(cell, "1/5,unified_1epoch,PERL,eurosat,67.25,72.25,12.34,"),
                                      encoding="utf-8")
    monkeypatch.setenv("PERLKIT_REPORTED_DIR", str(tmp_path))
    assert reported.table5_b2n("hm").loc["EuroSAT", "PERL"] == 12.34


# ---------------------------------------------------------------------------------------------- figure
def test_start_end_panels_fit_the_column_with_readable_text() -> None:
    with matplotlib.rc_context():
        plots.book_style()
        ends = reported.fig4_start_end()
        fig = plots.start_end_panels(ends, title="reported (paper, Figs. 4 and 7)")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=2 * fig.dpi, bbox_inches="tight")
        shown = struct.unpack(">I", buffer.getvalue()[16:20])[0] / (2 * fig.dpi)
        assert shown <= 7.2, f"shown {shown:.2f} in wide"
        fig.canvas.draw()
        assert min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()) >= 9
        axes = fig.get_axes()
        assert len(axes) == 3
        confidence = axes[0]
        assert [list(line.get_ydata()) for line in confidence.get_lines()] == [[64.9, 70.0], [57.6, 59.8]]
        assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 3
    plt.close("all")


_AUDIT: list[list[str]] = []  # the lists that collect opened paths while a test records them


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _AUDIT and isinstance(args[0], str | Path):
        _AUDIT[-1].append(str(args[0]))


sys.addaudithook(_audit)  # a hook cannot be removed; it records only while a test has put a list in _AUDIT
