"""What the chapters show, moved out of the chapters: labels, ablation and comparison tables, the one-image example,
the parameter table, the grid caption, and the trained-model checks they are computed from.

Everything here runs on synthetic frames, the reported CSVs shipped in the package, or a tiny random CLIP on a
fabricated CoOp tree with a result store in a temporary folder; nothing reads data/results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import nbformat
import pandas as pd
import pytest
import torch
from test_data_world import make_world

from perlkit import plots, report
from perlkit.data import B2N_DATASETS, DG_TARGETS, XD_TARGETS, sample_fewshot, subsample_classes
from perlkit.experiments import (
    RESULT_SCHEMA,
    ResultStore,
    RunSpec,
    Session,
    ZeroshotComparison,
    ablation_order,
    ablation_specs,
    ablation_summary,
    compare_with_zeroshot,
    logits_on_test_set,
    step_logits_on_test_set,
    trained_method,
)
from perlkit.methods import build_method
from perlkit.methods.perl import PERL_VARIANTS
from perlkit.profiles import Profile, get_profile
from perlkit.report import ShippedGrid

matplotlib.use("Agg")

METRICS = ["base", "novel", "hm"]


# ---------------------------------------------------------------------------------------------- a tiny session
@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The tiny random CLIP on a fabricated CoOp tree; results and checkpoints go to a temporary store."""
    root = tmp_path_factory.mktemp("report")
    make_world(root / "data", ["eurosat", "dtd"])
    profile = Profile("mini", "tiny-clip", None, None, str(root / "data"), "cpu", 64, 0, "test profile", 1)
    return Session(profile, progress=False, store=ResultStore("mini", root / "results"))


def test_trained_method_trains_once_then_loads_the_checkpoint(session: Session) -> None:
    spec = RunSpec("b2n", "perl", "eurosat", options={"steps": 2})
    assert session.store.find_checkpoint(spec) is None
    first = trained_method(session, spec)  # no checkpoint: the run is trained (and stored) first
    assert session.store.find_checkpoint(spec) is not None and session.stored(spec) is not None
    again = trained_method(session, spec)
    assert not first.training and not again.training
    for (_, a), (_, b) in zip(first.trainable_parameters(), again.trainable_parameters(), strict=True):
        assert torch.equal(a, b)
    untrained = session.build(spec)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in
               zip(first.trainable_parameters(), untrained.trainable_parameters(), strict=True))


def test_test_set_logits_give_the_stored_accuracies(session: Session) -> None:
    """The logits the chapters look inside are the ones the run was scored with (``evaluate``)."""
    spec = RunSpec("b2n", "perl", "eurosat", options={"steps": 2})
    method, result = trained_method(session, spec), session.run(spec)
    few = sample_fewshot(session.dataset(spec.dataset), spec.shots, spec.seed)
    zero_shot = build_method("zeroshot", session.backbone)
    for target in ("base", "novel"):
        split = subsample_classes(few, target)
        steps, labels = step_logits_on_test_set(session, method, split, spec.template)
        assert len(steps) == 3 and all(s.shape == (len(split.test), len(split.classnames)) for s in steps)
        assert labels.tolist() == [d.label for d in split.test]
        accuracy = 100.0 * float((steps[-1].argmax(-1) == labels).float().mean())
        assert accuracy == pytest.approx(result["metrics"][target])
        final = logits_on_test_set(session, method, split, target, spec.template)
        torch.testing.assert_close(final, steps[-1], rtol=1e-4, atol=1e-4)
        # step 0 is zero-shot CLIP: no thought token yet
        torch.testing.assert_close(steps[0], logits_on_test_set(session, zero_shot, split, target), rtol=1e-4,
                                   atol=1e-4)


def test_compare_with_zeroshot_measures_weights_and_predictions(session: Session) -> None:
    spec = RunSpec("b2n", "mma", "dtd")
    comparison = compare_with_zeroshot(session, spec)
    assert comparison.result["spec"] == spec.to_dict() and comparison.result == session.stored(spec)
    assert comparison.weight_change > 0  # one epoch moves the adapters
    table = comparison.predictions
    assert list(table.index) == ["base", "novel"]
    assert table["images"].tolist() == [comparison.result["counts"]["base_test"],
                                        comparison.result["counts"]["novel_test"]]
    assert (table["predictions that differ"] <= table["images"]).all()
    assert (table["largest logit change"] >= 0).all() and (table["largest zero-shot logit"] > 0).all()


def test_zeroshot_against_itself_moves_nothing(session: Session) -> None:
    """A method that is zero-shot CLIP (PERL with K = 0) differs from it in no prediction and no logit."""
    spec = RunSpec("b2n", "perl", "dtd", options={"steps": 0})
    table = compare_with_zeroshot(session, spec).predictions
    assert table["predictions that differ"].sum() == 0
    assert table["largest logit change"].max() < 1e-4


# ---------------------------------------------------------------------------------------------- labels
def test_labels_come_from_the_profile() -> None:
    assert report.profile_label("mini") == "mini profile"
    assert report.profile_label(get_profile("paper")) == "paper profile"
    assert report.model_label("mini") == "mini CLIP" and report.model_label("paper") == "ViT-B/16"
    assert report.model_label(get_profile("paper", model="ViT-B-16-quickgelu")) == "ViT-B-16-quickgelu"
    assert report.live_label(["dtd"], [1]) == "dtd; seed 1"
    assert report.live_label(["dtd", "eurosat"], [1, 2]) == "dtd, eurosat; seeds 1, 2"
    assert report.source_titles("paper", ["dtd"], [3]) == ("paper (dtd; seed 3)",
                                                                 "paper, 11 datasets; seed 3 (precomputed)")


def test_method_labels_join_registry_and_reported_names() -> None:
    assert [plots.method_label(m) for m in ("zeroshot", "perl", "mmrl", "mmrlpp", "mma", "rmma")] == [
        "zero-shot CLIP", "PERL", "MMRL", "MMRL++", "MMA", "R-MMA"]
    assert plots.method_label("CLIP") == "zero-shot CLIP" and plots.method_label("MaPLe") == "MaPLe"
    assert plots.TABLE_LABELS["oxford_flowers"] == "Flowers102" and plots.TABLE_LABELS["hm"] == "HM"
    assert plots.TABLE_LABELS["xd_average"] == "cross-dataset average"


def test_grid_caption_is_provenance_or_what_is_missing() -> None:
    payload = {"provenance": {"git_commit": "abcdef1234567", "device": "cpu (1 thread)", "fingerprint": {"a": 1},
                              "created": "2026-11-20T10:00:00"}}
    complete = ShippedGrid([payload, payload], 2, 0)
    assert complete.caption("mini") == plots.provenance_caption([payload, payload])
    assert "2 runs, perlkit commit abcdef1234" in complete.caption("mini", hint="ignored when complete")
    partial = ShippedGrid([payload], 3, 1)
    assert partial.caption("mini") == partial.note("mini")
    assert "1 of 3 runs current in data/results/mini/" in partial.caption("mini") and "1 stale" in partial.note("mini")
    assert partial.caption("mini", hint="train one here").endswith("; train one here")


def test_trainable_and_projector_counts(tiny_backbone) -> None:
    dv, dt = tiny_backbone.width("vision"), tiny_backbone.width("text")
    assert report.trainable_params(tiny_backbone) == 5 * (dv + dt) + 2
    assert report.trainable_params(tiny_backbone, modalities="vision") == 5 * dv + 1
    assert report.trainable_params(tiny_backbone, "zeroshot") == 0
    row = report.perl_param_counts("tiny", tiny_backbone)
    assert row["model"] == "tiny" and (row["d_v"], row["d_t"]) == (dv, dt)
    assert row["vision projector"] + row["text projector"] == row["total (counted)"] == row["5(d_v + d_t) + 2"]


# ---------------------------------------------------------------------------------------------- chapters 01, 08, 11
def test_paper_headline_reads_the_reported_tables() -> None:
    headline = report.paper_headline()["reported (paper)"]
    assert headline.loc["base-to-novel: HM (Table 1)", "PERL"] == pytest.approx(74.79)
    assert headline.loc["base-to-novel: HM (Table 1)", "zero-shot CLIP"] == pytest.approx(71.64)
    assert pd.isna(headline.loc["cross-dataset: 10-target average (Table 2)", "zero-shot CLIP"])
    assert headline.loc["trainable parameters (App. A)"].tolist() == [0, 6402]


def test_step_example_follows_the_first_flip() -> None:
    labels = torch.tensor([0, 1, 2, 0])
    step0 = torch.tensor([[5.0, 0, 0, 0], [5.0, 0, 0, 0], [0, 0, 5.0, 0], [0, 5.0, 0, 0]])  # right: 0 and 2
    step1 = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 1, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])  # right: 0 and 1
    example = report.step_example([step0, step1], labels, ["a", "b", "c", "d"], shown=3)
    assert (example.index, example.true_class, example.images) == (1, "b", 4)
    assert (example.flips, example.losses) == (1, 1)  # image 1 wrong -> right; image 2 right -> wrong
    assert example.classes == ["b", "c", "a"]  # the most probable at the last step first
    assert len(example.table) == 2 * 3 and set(example.table["step"]) == {0, 1}
    probs = example.table.set_index(["step", "class"])["probability"]
    assert probs[(1, "b")] == pytest.approx(float(step1[1].softmax(-1)[1]))
    none = report.step_example([step0, step0], labels, ["a", "b", "c", "d"])
    assert (none.index, none.flips, none.losses, len(none.classes)) == (0, 0, 0, 4)


def test_parameter_table_lists_a_shared_parameter_once(tmp_path: Path) -> None:
    (tmp_path / "book").mkdir()
    for name, source in (("01_a", 'profile = "mini"  # which profile\nseeds = [1]  # the seeds'),
                         ("02_b", 'profile = "mini"  # which profile\nsteps = 4  # K\nseeds = [1, 2]  # the seeds')):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                               "display_name": "Python 3"}})
        nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})]
        nbformat.write(nb, tmp_path / "book" / f"{name}.ipynb")
    toc = {"parts": [{"chapters": [{"file": "book/01_a"}, {"file": "book/intro"}, {"file": "book/02_b"}]}]}
    (tmp_path / "_toc.yml").write_text(json.dumps(toc))  # JSON is YAML
    table = report.parameter_table(tmp_path / "_toc.yml")
    # a parameter shared with the same default and meaning is one row naming its chapters; another default, another row
    assert list(table.index) == ["profile", "seeds", "steps", "seeds"]
    assert list(table["chapters"]) == ["01, 02", "01", "02", "02"]
    assert list(table["default"]) == ['"mini"', "[1]", "4", "[1, 2]"] and table.loc["steps", "meaning"] == "K"


# ---------------------------------------------------------------------------------------------- chapter 07
def _summary(values: list[str], hm: list[float]) -> pd.DataFrame:
    """An ablation summary as ``run_ablation`` returns it: a per-dataset row (zeros) and an average row per value."""
    rows = [{"value": v, "dataset": "dtd", "base": 0.0, "novel": 0.0, "hm": 0.0} for v in values]
    return pd.DataFrame(rows + [{"value": v, "dataset": "average", "base": h + 1, "novel": h - 1, "hm": h}
                                for v, h in zip(values, hm, strict=True)])


def test_ablation_order_is_the_papers_then_the_rest() -> None:
    assert ablation_order("steps", ["3", "1", "9", "2"]) == ["1", "2", "3", "9"]
    assert ablation_order("variant", ["step", "early"]) == ["early", "step"]
    assert ablation_order("layer", [11, "x", 6, "x"]) == ["6", "11", "x"]


def test_ablation_summary_averages_per_value() -> None:
    pairs = ablation_specs("steps", [1, 2], ["dtd", "eurosat"])
    hms = {("1", "dtd"): 10.0, ("1", "eurosat"): 20.0, ("2", "dtd"): 30.0, ("2", "eurosat"): 50.0}
    results = [{"spec": spec.to_dict(), "metrics": {"base": 1.0, "novel": 2.0, "hm": hms[(str(v), spec.dataset)]},
                "trainable_params": 7 * v} for v, spec in pairs]
    summary = ablation_summary(pairs, results)
    average = summary[summary["dataset"] == "average"].set_index("value")
    assert average["hm"].to_dict() == {"1": 15.0, "2": 40.0} and average["params"].to_dict() == {"1": 7, "2": 14}
    assert average["hm ±"].isna().all()  # one seed: no seed interval
    assert "hm ±" not in report.ablation_table("steps", [("one seed", report.ablation_average(summary))]).columns


def test_ablation_summary_gives_the_seed_interval_of_the_mean_hm() -> None:
    """With seeds, an average row carries the half width of the 95% t-interval over seeds of the mean HM over
    datasets (seed 1: 15, seed 2: 17 -> mean 16, stdev sqrt(2), t(1) = 12.706), and the table shows it."""
    pairs = ablation_specs("steps", [1], ["dtd", "eurosat"], seeds=[1, 2])
    hms = {(1, "dtd"): 10.0, (1, "eurosat"): 20.0, (2, "dtd"): 14.0, (2, "eurosat"): 20.0}
    results = [{"spec": spec.to_dict(), "metrics": {"base": 1.0, "novel": 2.0, "hm": hms[(spec.seed, spec.dataset)]},
                "trainable_params": 7} for _, spec in pairs]
    summary = ablation_summary(pairs, results)
    average = summary[summary["dataset"] == "average"].set_index("value")
    assert average.loc["1", "hm"] == 16.0
    assert average.loc["1", "hm ±"] == pytest.approx(12.706 * 2**0.5 / 2**0.5)
    assert summary[summary["dataset"] != "average"]["hm ±"].isna().all()
    table = report.ablation_table("steps", [("two seeds", report.ablation_average(summary))])
    assert table.loc["1", ("two seeds", "hm ±")] == "12.71"


def test_reported_ablations_use_perlkits_values() -> None:
    assert report.reported_ablation("fig3b")["value"].tolist() == ["1", "2", "3", "4", "5"]
    assert report.reported_ablation("fig3a")["value"].tolist() == ["6", "7", "8", "9", "10", "11"]
    assert report.reported_ablation("3")["value"].tolist() == ["vision", "text", "both"]
    table4 = report.reported_ablation("4")
    assert set(table4["value"]) == set(PERL_VARIANTS) and list(table4.columns) == ["value", *METRICS, "params"]
    assert table4.set_index("value").loc["layerstep", "params"] == "83K"


def test_ablation_sources_and_table() -> None:
    live, grid = _summary(["2", "1", "7"], [20.0, 10.0, 70.0]), _summary(["1", "2", "3"], [11.0, 21.0, 31.0])
    reported = ("paper", pd.DataFrame({"value": ["1", "3"], "base": [1.0, 3.0], "novel": [1.0, 3.0],
                                       "hm": [1.0, 3.0]}))
    sources = report.ablation_sources(live, grid, ("live", "grid"), reported)
    assert [title for title, _ in sources] == ["live", "grid", "paper"]
    assert set(sources[0][1]["value"]) == {"1", "2", "7"} and "dataset" not in sources[0][1]
    assert [t for t, _ in report.ablation_sources(None, grid, ("live", "grid"))] == ["grid"]
    table = report.ablation_table("steps", sources, {"double": lambda v: int(v) * 2})
    assert list(table.index) == ["1", "2", "3", "7"]  # the paper's values first, then the others
    assert table.loc["2", ("live", "hm")] == "20.00" and table.loc["3", ("live", "hm")] == "–"
    assert table.loc["3", ("paper", "base")] == "3.00" and table.loc["7", ("parameters", "double")] == "14.00"
    assert report.ablation_table("steps", []).empty


def test_precomputed_ablations_need_every_run_current(session: Session) -> None:
    kind, values = "modality", ["vision", "text", "both"]
    pairs = ablation_specs(kind, None, B2N_DATASETS, [1], session.profile.name)
    assert report.precomputed_ablations(session, [kind]) == ({kind: None}, {})
    for i, (_, spec) in enumerate(pairs):
        store: ResultStore = session.store
        store.checkpoint_path(spec).parent.mkdir(parents=True, exist_ok=True)
        store.checkpoint_path(spec).write_bytes(b"weights")  # a trainable run counts once its checkpoint exists
        fingerprint = session.fingerprint(spec) if i else {"code": "old"}  # the first one stale
        store.put(spec, {"schema": RESULT_SCHEMA, "spec": spec.to_dict(), "trainable_params": 5,
                         "metrics": {"base": 50.0 + i, "novel": 40.0, "hm": 44.0 + i},
                         "provenance": {"fingerprint": fingerprint, "git_commit": "0123456789ab",
                                        "device": "cpu", "created": "2026-11-20"}})
    grid, complete = report.precomputed_ablations(session, [kind])
    assert grid == {kind: None} and complete == {}  # one stale run: not shown
    spec = pairs[0][1]
    payload = json.loads(session.store.path_for(spec).read_text())
    payload["provenance"]["fingerprint"] = session.fingerprint(spec)
    session.store.put(spec, payload)
    grid, complete = report.precomputed_ablations(session, [kind])
    assert list(grid[kind][grid[kind]["dataset"] == "average"]["value"]) == values
    assert complete[kind].complete and len(complete[kind].results) == len(pairs)  # what provenance_note reports
    assert report.ablation_runs(session, {kind: values}, B2N_DATASETS, [1]).complete
    # the default configuration is one run, shared by the ablations that include it: counted once
    shared = report.ablation_runs(session, {"steps": [4], "layer": [7], "modality": []}, ["dtd"], [1])
    assert shared.total == 1


def test_precomputed_note_names_what_is_covered() -> None:
    kinds = ["steps", "layer", "dim", "modality", "variant"]
    none = report.precomputed_note({}, kinds, "mini", "dtd; seed 1")
    assert "not in this checkout" in none and "of none of the five ablations" in none
    assert "the live runs only (dtd; seed 1)" in none and "`data/results/mini/`" in none
    some = report.precomputed_note({"steps": ShippedGrid([], 0, 0)}, kinds, "mini", "dtd; seed 1")
    assert "datasets) of: steps;" in some and "Not precomputed yet: layer, dim, modality, variant;" in some
    assert "commit" not in some  # provenance is the chapter's note, not this one
    assert "Not precomputed" not in report.precomputed_note(kinds, kinds, "mini", "x")


def test_hm_consistency_flags_an_hm_below_both() -> None:
    frame = pd.DataFrame({"value": ["a", "b"], "base": [80.0, 70.0], "novel": [60.0, 70.0], "hm": [68.0, 69.0]})
    check = report.hm_consistency(frame, value="r")
    assert check["r"].tolist() == ["a", "b"]
    assert check["HM of the read base and novel"].tolist() == pytest.approx([2 * 80 * 60 / 140, 70.0])
    assert check["read HM below both"].tolist() == [False, True]
    table, verdict = report.fig3a_consistency()
    flagged = table[table["read HM below both"]]
    assert len(table) == 6 and (f"In {len(flagged)} of the 6 rows" in verdict if len(flagged) else "Every" in verdict)


def test_variant_tables(tiny_backbone) -> None:
    described = report.variant_table()
    assert list(described.index) == list(PERL_VARIANTS)
    assert described.loc["early", "thought tokens enter at J"] == 0
    assert described.loc["deep", "thought tokens enter at J"] == "3, 7, 11"
    assert described.loc["shared", "perlkit options"] == "(the defaults)"
    assert described.loc["layerstep", "one projector per step"] == "yes"
    counts = report.variant_params(tiny_backbone)
    pairs = {"early": 1, "deep": 1, "shared": 1, "step": 4, "layer": 3, "layerstep": 12}  # K = 4, 3 depths
    assert counts["pairs (perlkit)"].to_dict() == pairs
    assert counts.loc["layerstep", "paper Table 4 label"] == "83K"
    assert (counts["difference"] == counts["pairs implied by the label"] - counts["pairs (perlkit)"]).all()


def test_default_config_note() -> None:
    same = [("steps", "4", _summary(["4", "1"], [30.0, 1.0])), ("layer", "7", _summary(["7"], [30.0])),
            ("dim", "1", None)]
    note = report.default_config_note(same, "dtd; seed 1", ["steps"])
    assert "one training run" in note and "the 2 ablations that include it" in note and "HM 30.00 on dtd" in note
    assert note.endswith("the precomputed grid averages 11 datasets for: steps.")
    differ = [("steps", "4", _summary(["4"], [30.0])), ("layer", "7", _summary(["7"], [31.0]))]
    assert "steps: HM 30.00, layer: HM 31.00" in report.default_config_note(differ, "x", [])
    assert "fewer than two" in report.default_config_note(same[:1], "x", [])
    assert "not precomputed in this checkout" in report.default_config_note(same[:1], "x", [])


def test_ablation_figure_orders_values_or_says_there_is_nothing(capsys) -> None:
    assert plots.ablation_figure("steps", [], "K") is None
    assert "nothing to plot" in capsys.readouterr().out
    frame = pd.DataFrame({"value": ["5", "1", "3"], "base": [1.0, 2, 3], "novel": [1.0, 2, 3], "hm": [1.0, 2, 3]})
    fig = plots.ablation_figure("steps", [("a", frame)], "K")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "3", "5"]


@pytest.mark.parametrize("style", ["line", "bar"])
def test_ablation_figure_draws_the_hm_seed_interval_where_a_source_has_one(style: str) -> None:
    """An executed source with several seeds (its 'hm ±' column) gets error bars on HM at each value, centred on
    the HM point or bar and as long as the interval; a source without one (one seed, reported numbers) gets none."""
    from matplotlib.container import ErrorbarContainer

    seeds = pd.DataFrame({"value": ["3", "1"], "base": [50.0, 60], "novel": [40.0, 45], "hm": [44.0, 51],
                          "hm ±": [0.5, 2.0]})
    reported = seeds.drop(columns="hm ±")
    fig = plots.ablation_figure("steps", [("seeds", seeds), ("reported", reported)], "K", style=style)
    with_bars, without = fig.axes[:2]
    (bars,) = [c for c in with_bars.containers if isinstance(c, ErrorbarContainer)]
    segments = bars.lines[2][0].get_segments()  # one vertical segment per value, in the axis order (1, 3)
    assert [(round(s[0][1], 6), round(s[1][1], 6)) for s in segments] == [(49.0, 53.0), (43.5, 44.5)]
    if style == "bar":  # on the HM bars, not beside them
        hm_bars = with_bars.containers[2]
        assert [round(s[0][0], 6) for s in segments] == [round(b.get_x() + b.get_width() / 2, 6) for b in hm_bars]
    assert not [c for c in without.containers if isinstance(c, ErrorbarContainer)]
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "HM error bars: 95% interval over seeds" in legend_texts


# ---------------------------------------------------------------------------------------------- chapters 05, 06
def test_transfer_panel_keeps_the_given_datasets_in_order() -> None:
    frame = pd.DataFrame({"method": ["perl", "zeroshot", "perl", "CLIP"],
                          "dataset": ["eurosat", "imagenet", "imagenet", "dtd"], "accuracy": [1.0, 2, 3, 4]})
    panel = plots.transfer_panel(frame, ["imagenet", "eurosat"])
    assert panel["dataset"].tolist() == ["ImageNet", "ImageNet", "EuroSAT"]
    assert panel["method"].tolist() == ["zero-shot CLIP", "PERL", "PERL"]


# ---------------------------------------------------------------------------------------------- chapter 10
METHODS = ["zeroshot", "perl", "mmrl", "mma", "rmma"]


def test_param_budget_against_the_official_counts() -> None:
    vit_b16 = {"zeroshot": 0, "perl": 6402, "mmrl": 4_992_256, "mma": 1, "rmma": 480_000}
    table, agree = report.param_budget(METHODS, vit_b16, dict.fromkeys(METHODS, 12), "tiny (perlkit)")
    assert list(table.index) == ["zero-shot CLIP", "PERL", "MMRL", "MMA", "R-MMA"]
    assert list(table.columns) == ["ViT-B/16 (perlkit)", "tiny (perlkit)", "reported label", "official code"]
    assert table.loc["PERL", "reported label"] == "6K" and table.loc["R-MMA", "reported label"] == "0.48M"
    assert table.loc["MMRL", "official code"] == "4,992,256" and table.loc["PERL", "official code"] == "–"
    assert agree == "MMRL (but not MMA)"
    assert report.param_budget(["perl"], {"perl": 1}, {"perl": 1}, "x")[1] == "none of the rivals"


def test_reported_comparison_tables_use_method_labels() -> None:
    assert report.REPORTED_TABLES["unified"] == ("unified_1epoch", "1", "2")
    b2n = report.reported_b2n_average("unified_1epoch", METHODS)
    assert list(b2n.index) == ["zero-shot CLIP", "PERL", "MMRL", "MMA", "R-MMA"]
    assert b2n.loc["zero-shot CLIP", "hm"] == pytest.approx(71.64) and b2n.loc["PERL", "hm"] == pytest.approx(74.79)
    assert b2n.loc["PERL", "from"] == "PERL paper, Table 1/5"
    assert b2n.loc["R-MMA", "from"] == "R-MMA summary (its own recipe)"
    assert report.reported_b2n_average("default_recipe", ["mmrl"]).loc["MMRL", "hm"] == pytest.approx(81.20)
    transfer = report.reported_transfer("unified_1epoch", "2", METHODS)
    assert list(transfer.index) == list(b2n.index)
    assert list(transfer.columns) == ["ImageNet (source)", "cross-dataset avg", "DG avg", *DG_TARGETS]
    assert pd.isna(transfer.loc["zero-shot CLIP", "cross-dataset avg"])  # Table 2 has no zero-shot row
    assert pd.notna(transfer.loc["zero-shot CLIP", "DG avg"]) and pd.notna(transfer.loc["R-MMA", "cross-dataset avg"])


def test_accuracy_against_parameters_points() -> None:
    b2n = report.reported_b2n_average("unified_1epoch", METHODS)
    points = report.reported_hm_params_points(b2n).set_index("method")
    assert points.loc["zero-shot CLIP", "params"] == 0.0 and points.loc["PERL", "params"] == 6000.0
    assert points.loc["R-MMA (own recipe)", "params"] == 480_000.0
    assert (points["accuracy"] == points["hm"]).all()
    summary = pd.DataFrame({"method": ["zero-shot CLIP", "PERL", "PERL"], "dataset": ["average", "average", "dtd"],
                            "hm": [60.0, 65.0, 1.0]})
    executed = report.hm_params_points(summary, {"zeroshot": 0, "perl": 42})
    assert executed[["method", "params", "accuracy"]].values.tolist() == [["zero-shot CLIP", 0, 60.0],
                                                                           ["PERL", 42, 65.0]]


def test_transfer_by_target_averages_seeds() -> None:
    names = ["imagenet", "xd_average", "dg_average", *XD_TARGETS, *DG_TARGETS]
    payloads = [{"spec": {"method": method, "seed": seed}, "metrics": {name: value + i for i, name in enumerate(names)}}
                for method, value, seed in (("perl", 10.0, 1), ("zeroshot", 0.0, 1), ("perl", 20.0, 2),
                                            ("zeroshot", 0.0, 2))]
    table = report.transfer_by_target(payloads)
    assert list(table.columns) == ["PERL", "zero-shot CLIP"]
    assert list(table.index[:5]) == ["ImageNet", "cross-dataset average", "± 95% (cross-dataset average)",
                                     "DG average", "± 95% (DG average)"] and len(table) == len(names) + 2
    assert table.loc["ImageNet", "PERL"] == 15.0 and table.loc["DG average", "zero-shot CLIP"] == 2.0
    # seeds 10 apart: stdev 7.07, mean's se 5, t(1) 12.706; zero-shot's seeds agree
    assert table.loc["± 95% (DG average)", "PERL"] == pytest.approx(63.53)
    assert table.loc["± 95% (DG average)", "zero-shot CLIP"] == 0.0
    one_seed = report.transfer_by_target(payloads[:2])
    assert list(one_seed.index[:3]) == ["ImageNet", "cross-dataset average", "DG average"]


def test_mma_adapter_note() -> None:
    trained = SimpleNamespace(num_trainable=lambda: 1234, config=SimpleNamespace(adapter_scale=0.001))
    predictions = pd.DataFrame({"images": [30, 20], "predictions that differ": [1, 0],
                                "largest logit change": [0.01, 0.0234], "largest zero-shot logit": [9.0, 9.0]},
                               index=pd.Index(["base", "novel"], name="test set"))
    result = {"spec": {"dataset": "oxford_flowers"}, "train": {"steps": [{}] * 7}}
    comparison = ZeroshotComparison(result, trained, 0.0525, predictions)
    grid = pd.DataFrame({"method": ["MMA", "zero-shot CLIP"] * 3, "dataset": ["dtd", "dtd", "eurosat", "eurosat",
                                                                              "average", "average"],
                         "base": [1.0, 1.0, 2.0, 3.0, 0.0, 0.0], "novel": [1.0, 1.0, 2.0, 2.0, 0.0, 0.0],
                         "hm": [1.0, 1.0, 2.0, 2.4, 1.5, 1.7]})
    note = report.mma_adapter_note(comparison, grid, "mini")
    assert "over the 7 SGD steps of the run its 1,234 adapter weights move by 5.25% of their initial norm" in note
    assert "multiplied by 0.001" in note and "on Flowers102 the logits move by at most 0.023" in note
    assert "1 of the 50 test predictions differs" in note
    assert "equal zero-shot CLIP's on 1 of 11 datasets" in note
    assert "average HM is 1.50 against zero-shot CLIP's 1.70" in note
    assert "at this training budget on the mini CLIP, not a measurement" in note
    assert "11-dataset grid" not in report.mma_adapter_note(comparison, None, "paper")


def test_training_cost_table_reads_every_bench_record_beside_the_reported_timings() -> None:
    from perlkit.bench import load_records
    from perlkit.report import training_cost_table

    table = training_cost_table().set_index("source")
    reported = table.loc["reported: R-MMA summary (RTX 4090)"]
    assert reported["R-MMA"] == pytest.approx(1.6) and reported["MMA"] == pytest.approx(2.2)
    records = load_records()
    mini = records["mini-cpu.json"].methods["rmma"].train_ms_per_image
    row = table[table.index.str.contains("mini-cpu.json")].iloc[0]
    assert row["R-MMA"] == pytest.approx(mini[max(mini, key=int)]) and row["batch"] == max(mini, key=int)


def test_execution_status_says_what_ran_on_which_profile(tmp_path: Path) -> None:
    """Result files are counted per profile and bench records name their device; a profile with nothing is said so."""
    import shutil

    from perlkit.bench import BENCH_DIR

    (tmp_path / "results" / "mini").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "results" / "mini" / f"b2n-{i}.json").write_text("{}")
    (tmp_path / "bench").mkdir()
    shutil.copy(Path(BENCH_DIR) / "paper-cuda-nvidia-h100-80gb-hbm3.json", tmp_path / "bench")
    status = report.execution_status(tmp_path / "results", tmp_path / "bench")
    assert status.startswith("**mini profile**: 3 training and evaluation runs (data/results/mini); **paper profile**")
    assert "paper profile**: no training or evaluation run; timing bench on NVIDIA H100 80GB HBM3 (ViT-B/16, random" \
        in status
    assert "smoke" not in status
    smoke = json.loads((Path(BENCH_DIR) / "paper-cuda-smoke.json").read_text())
    failed = {**smoke, "ok": False, "failed": ["perl/dtd"]}
    (tmp_path / "bench" / "paper-cuda-smoke.json").write_text(json.dumps(failed))
    status = report.execution_status(tmp_path / "results", tmp_path / "bench")
    assert status.endswith("end-to-end smoke on NVIDIA H200 (every method, 24 runs with random weights on synthetic "
                           "data in the CoOp layout; paper-cuda-smoke.json): failed: perl/dtd.")
    assert "every one passed" in report.execution_status(tmp_path / "results")  # the shipped record


def test_a_smoke_stopped_by_its_time_limit_says_so_and_names_a_partial_method_set(tmp_path: Path) -> None:
    """A record with ``"complete": false`` is neither "passed" nor "failed: ?"; a run of some methods names them."""
    from perlkit.bench import BENCH_DIR

    smoke = json.loads((Path(BENCH_DIR) / "paper-cuda-smoke.json").read_text())
    (tmp_path / "results" / "mini").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    runs = {**smoke["runs"], "zeroshot": {k: v for k, v in smoke["runs"]["zeroshot"].items() if k != "imagenet"}}
    stopped = {**smoke, "ok": False, "complete": False, "failed": [], "runs": runs}
    (tmp_path / "bench" / "paper-cuda-smoke.json").write_text(json.dumps(stopped))
    status = report.execution_status(tmp_path / "results", tmp_path / "bench")
    assert status.endswith("(every method, 23 runs with random weights on synthetic data in the CoOp layout; "
                           "paper-cuda-smoke.json): stopped after 23 of 24 runs by its time limit, every finished "
                           "run passed.")
    some = {**smoke, "settings": {**smoke["settings"], "methods": ["rmma", "zeroshot"]},
            "runs": {m: smoke["runs"][m] for m in ("rmma", "zeroshot")}}
    (tmp_path / "bench" / "paper-cuda-smoke.json").write_text(json.dumps(some))
    assert "(rmma, zeroshot, 8 runs with random" in report.execution_status(tmp_path / "results", tmp_path / "bench")


def test_component_cost_table_subtracts_each_variant_from_the_full_method() -> None:
    """A part's cost is the full step minus the step with that part switched off, at the largest batch timed."""
    from types import SimpleNamespace as NS

    def entry(ms: dict[str, float]) -> NS:
        return NS(train_ms_per_image=ms)

    record = NS(device_name="cpu", model="ViT-B-16", methods={
        "mma": entry({"4": 3.0}), "rmma": entry({"4": 10.0, "32": 8.0}),
        "rmma:attention=false": entry({"32": 6.0}), "rmma:mar=false": entry({"4": 9.0})})
    table = report.component_cost_table({"a.json": record})
    assert list(table["switched off"]) == ["nothing", "attention=false"]  # mar=false has no batch-32 timing
    assert list(table["batch"]) == [32, 32] and list(table["saved ms / image"]) == [0.0, 2.0]
    assert table["share of the step (%)"].iloc[1] == 25.0 and table["record"].iloc[0] == "cpu (ViT-B-16, a.json)"
    assert report.component_cost_table({"b.json": NS(device_name="x", model="m", methods={"mma": entry({})})}).empty
    no_variant = NS(device_name="x", model="m", methods={"rmma": entry({"4": 1.0})})
    assert report.component_cost_table({"c.json": no_variant}).empty


# ---------------------------------------------------------------------------------------------- every chapter
def _payload(commit: str, created: str, path: str, fingerprint: bool = True) -> dict:
    return {"_path": path, "provenance": {"git_commit": commit, "device": "cpu", "created": created,
                                          "fingerprint": {"code": "x"} if fingerprint else None}}


def test_runs_provenance_counts_commits_and_names_the_newest() -> None:
    from perlkit.experiments.store import SHIPPED_RESULTS

    shipped = [_payload(f"{i:x}" * 12, f"2026-11-2{i}T10:00:00", str(SHIPPED_RESULTS / "mini" / f"r{i}.json"))
               for i in range(1, 8)]
    local = _payload("f" * 40, "2026-11-20T09:00:00", "/home/u/.cache/perlkit/results/mini/x.json", fingerprint=False)
    text = report.runs_provenance([*shipped, local])
    assert text.startswith("8 runs (7 committed in data/results, 1 from this machine's result cache)")
    assert "perlkit commit 7777777777 (the newest of 8)" in text  # the newest by date, never the list
    assert all(f"{i:x}" * 10 not in text for i in range(1, 7)) and "ffffffffff" not in text
    assert "on cpu; 2026-11-20 to 2026-11-27; 1 without a code fingerprint" in text
    one = report.runs_provenance(shipped[:1])
    assert one.startswith("1 run (1 committed in data/results)") and "(the newest" not in one
    assert one.endswith("2026-11-21; code-and-weights fingerprint current")
    assert report.runs_provenance([]) == "no runs in this execution"


def test_runs_provenance_tells_runs_trained_in_this_execution_from_cached_ones() -> None:
    """A run stored after this process started was trained by it ("trained ... in this execution"); an older one in
    the user's cache was only read; a committed run is committed whatever its date."""
    from perlkit.experiments.store import SHIPPED_RESULTS

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cache = "/home/u/.cache/perlkit/results/mini"
    runs = [_payload("a" * 40, now, f"{cache}/new.json"),
            _payload("b" * 40, "2026-11-20T09:00:00Z", f"{cache}/old.json"),
            _payload("c" * 40, now, str(SHIPPED_RESULTS / "mini" / "shipped.json"))]
    assert report.runs_provenance(runs).startswith(
        "3 runs (1 committed in data/results, 1 from this machine's result cache, 1 trained on this machine in this "
        "execution)")
    assert not report._made_in_this_process({"provenance": {"created": "not a date"}})


def test_provenance_note_is_one_collapsed_block() -> None:
    from IPython.display import HTML

    runs = [_payload("abcdef1234567", "2026-11-20T10:00:00", "x.json")]
    note = report.provenance_note({"live runs <b>": runs, "11-dataset grid": ShippedGrid(runs, 3, 1),
                                   "complete grid": ShippedGrid(runs * 2, 2, 0), "not run": None,
                                   "transfer, live": []}, "mini")
    assert isinstance(note, HTML)
    html = note.data
    assert html.startswith('<details class="provenance">\n<summary>Where these numbers come from</summary>')
    assert html.count("<details") == 1 and html.rstrip().endswith("</details>")
    assert "<strong>live runs &lt;b&gt;</strong>: 1 run (1 from this machine's result cache)" in html  # escaped
    assert "<strong>11-dataset grid</strong>: full grid not precomputed for this code yet: 1 of 3 runs" in html
    assert "<code>perlkit results</code> computes them" in html  # markdown code as HTML
    assert "<strong>complete grid</strong>: 2 runs" in html and "not run" not in html
    assert "<strong>transfer, live</strong>: no runs in this execution" in html
    assert "mini profile" in report.provenance_note({}, "mini").data
    assert "no executed numbers on this page" in report.provenance_note({}, "paper").data


def test_parameter_cell_reads_wrapped_meanings_and_lists() -> None:
    source = ('profile = "mini"  # "mini" (synthetic world) or\n'
              '                  # "paper" (ViT-B/16)\n'
              'datasets = ["eurosat", "dtd",\n'
              '            "ucf101"]  # or "all"\n'
              '# a comment of its own line is no meaning\n'
              '\n'
              'seeds = [1]\n'
              'options = {"steps": 2}  # # a hash in the meaning')
    assert report.parameter_cell(source) == {
        "profile": ('"mini"', '"mini" (synthetic world) or "paper" (ViT-B/16)'),
        "datasets": ('["eurosat", "dtd", "ucf101"]', 'or "all"'),
        "seeds": ("[1]", ""), "options": ('{"steps": 2}', "# a hash in the meaning"),
    }


def test_first_test_images_takes_the_first_image_of_the_first_classes(session: Session) -> None:
    rows = report.first_test_images(session, ["dtd", "eurosat"], 2)
    assert [name for name, _ in rows] == ["DTD", "EuroSAT"]
    test = session.dataset("dtd").test
    first = {}
    for item in test:
        first.setdefault(item.label, item)
    assert [label for _, label in rows[0][1]] == [first[k].classname for k in sorted(first)[:2]]
    assert all(hasattr(image, "size") for _, image_rows in rows for image, _ in image_rows)


def test_unrepeated_rows_prints_no_row_twice() -> None:
    columns = pd.MultiIndex.from_tuples([("PERL", "Base"), ("PERL", "HM")])
    grid = pd.DataFrame([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [3.0, 4.0]], columns=columns,
                        index=["DTD", "EuroSAT", "UCF101", "Average"])
    live = pd.DataFrame([[1.0, 2.0], [3.5, 4.0], [9.0, 9.0]], columns=columns, index=["DTD", "EuroSAT", "Average"])
    rest, note = report.unrepeated_rows(grid, live)
    assert list(rest.index) == ["EuroSAT", "UCF101", "Average"]  # EuroSAT differs (other seeds): kept
    assert note == ("Left out, as the table above shows them with the same numbers: DTD. The average is over all 3 "
                    "datasets.")
    whole, note = report.unrepeated_rows(grid, grid.drop(index="Average"))
    assert whole is None and note.startswith("The live runs above are the whole 3-dataset grid")
    assert report.unrepeated_rows(grid, live.drop(index="DTD"))[0] is grid
    assert report.unrepeated_rows(None, live) == (None, "")


def test_dynamics_ends_puts_step_zero_beside_the_last() -> None:
    dynamics = pd.DataFrame([{"dataset": d, "subset": s, "step": k, "accuracy": 10.0 * k, "confidence": 1.0,
                              "brier": 0.5, "kl_from_step0": 0.0}
                             for d in ("dtd", "oxford_pets") for s in ("base", "novel") for k in range(3)])
    ends = report.dynamics_ends(dynamics, 2)
    assert list(ends.index) == ["DTD base", "DTD novel", "OxfordPets base", "OxfordPets novel"]
    assert {"accuracy (step 0)", "accuracy (step 2)", "brier (step 2)"} <= set(ends.columns)
    assert "accuracy (step 1)" not in ends.columns and ends["accuracy (step 2)"].eq(20.0).all()


def _b2n_runs(hms: dict[tuple[str, str, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "dataset": d, "seed": s, "base": hm, "novel": hm, "hm": hm}
                         for (m, d, s), hm in hms.items()])


def test_b2n_table_puts_the_seed_interval_beside_each_difference() -> None:
    """Δ HM with seeds gets its 95% t half width (t(1) = 12.706): a per-dataset one, and the average row's from the
    per-seed mean over datasets; one seed adds no column."""
    from perlkit.experiments import b2n_summary

    # zero-shot moves with the seed as PERL does (50 -> 53 on DTD): the interval is on the paired gap (2 and 1),
    # narrower than PERL's own spread (52 -> 54) would give
    runs = _b2n_runs({("zeroshot", "dtd", 1): 50.0, ("zeroshot", "dtd", 2): 53.0, ("perl", "dtd", 1): 52.0,
                      ("perl", "dtd", 2): 54.0, ("zeroshot", "eurosat", 1): 60.0, ("zeroshot", "eurosat", 2): 61.0,
                      ("perl", "eurosat", 1): 60.0, ("perl", "eurosat", 2): 61.0})
    wide = plots.b2n_wide(b2n_summary(runs), ["zeroshot", "perl"], delta="zeroshot", runs=runs)
    label = "Δ HM (PERL − zero-shot CLIP)"
    assert wide.loc["DTD", (label, "")] == 1.5 and wide.loc["DTD", (label, "± 95%")] == pytest.approx(6.35)
    assert wide.loc["EuroSAT", (label, "± 95%")] == 0.0  # the same gap at both seeds
    assert wide.loc["Average", (label, "± 95%")] == pytest.approx(3.18)  # seeds' mean gaps 1 and 0.5
    # a method without runs gets no difference; a seed one side lacks is left out of the interval
    assert (label, "± 95%") not in plots.b2n_wide(b2n_summary(runs), ["zeroshot", "perl"], "zeroshot",
                                                  runs[runs["method"] == "zeroshot"]).columns
    gappy = runs.drop(runs[(runs["method"] == "perl") & (runs["dataset"] == "eurosat") & (runs["seed"] == 2)].index)
    partial = plots.b2n_wide(b2n_summary(gappy), ["zeroshot", "perl"], "zeroshot", gappy)
    assert partial.loc["DTD", (label, "± 95%")] == pytest.approx(6.35)
    assert pd.isna(partial.loc["EuroSAT", (label, "± 95%")]) and pd.isna(partial.loc["Average", (label, "± 95%")])
    one = runs[runs["seed"] == 1]
    assert (label, "± 95%") not in plots.b2n_wide(b2n_summary(one), ["zeroshot", "perl"], "zeroshot", one).columns


def test_transfer_table_adds_the_difference_its_interval_and_the_gap() -> None:
    rows = [("zeroshot", 1, 40.0, 20.0), ("zeroshot", 2, 41.0, 20.0), ("perl", 1, 42.0, 20.0), ("perl", 2, 47.0, 20.0)]
    tidy = pd.DataFrame([{"method": m, "seed": s, "dataset": d, "accuracy": v}
                         for m, s, source, target in rows
                         for d, v in (("imagenet", source), ("imagenet_v2", target), ("dg_average", target))])
    wide = plots.transfer_wide(tidy, ["imagenet", "imagenet_v2"], ["zeroshot", "perl"], average="dg_average",
                               delta="zeroshot", gap="gap")
    assert list(wide.index) == ["zero-shot CLIP", "PERL", "PERL − zero-shot CLIP", "± 95% (PERL)"]
    assert wide.loc["PERL", "gap"] == 24.5 and wide.loc["PERL − zero-shot CLIP", "gap"] == 4.0  # paired: 2 and 6
    assert wide.loc["± 95% (PERL)", "gap"] == pytest.approx(25.41) and wide.loc["± 95% (PERL)", "ImageNet-V2"] == 0
    assert report.gap_comparison(wide, "gap") == "within the seed noise of"  # gaps 2 and 6: 4 < 25.41
    assert report.gap_comparison(wide, "ImageNet") == "within the seed noise of"
    assert report.gap_comparison(wide.drop(index="± 95% (PERL)"), "gap") == "wider than"  # means alone
    narrow = wide.copy()
    narrow.loc["PERL − zero-shot CLIP", "gap"], narrow.loc["± 95% (PERL)", "gap"] = -3.0, 1.0
    assert report.gap_comparison(narrow, "gap") == "narrower than"
    narrow.loc["± 95% (PERL)", "gap"] = float("nan")  # no interval: the means decide
    assert report.gap_comparison(narrow, "gap") == "wider than"
    no_perl = plots.transfer_wide(tidy, ["imagenet"], ["zeroshot", "perl", "mma"], "dg_average", "zeroshot")
    assert list(no_perl.index) == ["zero-shot CLIP", "PERL", "MMA", "PERL − zero-shot CLIP", "± 95% (PERL)"]
    one = plots.transfer_wide(tidy[tidy["seed"] == 1], ["imagenet"], ["zeroshot", "perl"], "dg_average", "zeroshot",
                              "gap")
    assert list(one.index) == ["zero-shot CLIP", "PERL"] and report.gap_comparison(one, "gap") == "wider than"


def test_hm_by_dataset_ends_with_the_seed_interval_of_each_average() -> None:
    results = [{"spec": {"method": m, "dataset": d, "seed": s}, "metrics": {"base": hm, "novel": hm, "hm": hm},
                "trainable_params": 0, "train": {}}
               for m, shift in (("zeroshot", 0.0), ("perl", 1.0)) for s in (1, 2) for d, hm in
               (("dtd", 40.0 + shift * s), ("eurosat", 60.0))]
    table = report.hm_by_dataset(results, ["zeroshot", "perl"])
    assert list(table.columns) == ["zero-shot CLIP", "PERL"]
    assert table.loc["average", "PERL"] == pytest.approx(50.75)  # seeds: (41 + 60) / 2 and (42 + 60) / 2
    assert table.loc["± 95% (average)", "PERL"] == pytest.approx(12.706 * 0.25, abs=1e-3)  # t(1) x se of the mean
    assert table.loc["± 95% (average)", "zero-shot CLIP"] == 0.0
    assert "± 95% (average)" not in report.hm_by_dataset(results[:2] + results[4:6], ["zeroshot", "perl"]).index


def _two_seed_runs() -> pd.DataFrame:
    """b2n_table rows: PERL's DTD HM moves with the seed (41, 42), every other HM is fixed."""
    return pd.DataFrame([{"method": m, "dataset": d, "seed": s, "base": hm, "novel": hm, "hm": hm}
                         for m, shift in (("zeroshot", 0.0), ("perl", 1.0)) for s in (1, 2) for d, hm in
                         (("dtd", 40.0 + shift * s), ("eurosat", 60.0))])


def test_live_b2n_table_shows_each_datasets_hm_interval_over_seeds() -> None:
    runs = _two_seed_runs()
    one = report.live_b2n_table(runs[runs["dataset"] == "dtd"], ["zeroshot", "perl"], ["dtd"])
    assert list(one.index) == ["zero-shot CLIP", "PERL"]
    assert list(one.columns) == [("DTD", "Base"), ("DTD", "Novel"), ("DTD", "HM"), ("DTD", "hm ±")]
    assert one.loc["PERL", ("DTD", "HM")] == pytest.approx(41.5)
    assert one.loc["PERL", ("DTD", "hm ±")] == pytest.approx(12.706 * 0.5, abs=1e-3)  # t(1) x se of (41, 42)
    both = report.live_b2n_table(runs, ["perl"], ["dtd", "eurosat"])
    assert [c[0] for c in both.columns[::4]] == ["DTD", "EuroSAT", "average"]
    assert both.loc["PERL", ("average", "hm ±")] == pytest.approx(12.706 * 0.25, abs=1e-3)  # seeds 50.5, 51
    assert "hm ±" not in report.live_b2n_table(runs[runs["seed"] == 1], ["perl"], ["dtd"]).columns.get_level_values(1)


def test_comparison_bars_are_means_over_seeds_with_their_interval(error_segments) -> None:  # noqa: ANN001
    runs = report.runs_with_average(_two_seed_runs())
    average = runs[runs["dataset"] == "average"].set_index(["method", "seed"])["hm"]
    assert average.to_dict() == {("zeroshot", 1): 50.0, ("zeroshot", 2): 50.0, ("perl", 1): 50.5, ("perl", 2): 51.0}
    fig = plots.comparison_bars(runs, "hm", "mini")
    assert plots.SEED_BARS in fig.texts[0].get_text()
    # zero-shot's HMs do not move with the seed (no bar); PERL's DTD (41, 42) and average (50.5, 51) do
    segments = sorted(error_segments(fig.axes[0]))
    assert segments == sorted([(round(41.5 - 12.706 * 0.5, 4), round(41.5 + 12.706 * 0.5, 4)),
                               (round(50.75 - 12.706 * 0.25, 4), round(50.75 + 12.706 * 0.25, 4))])


def test_per_seed_averages_refuse_a_seed_that_lacks_a_dataset() -> None:
    runs = _two_seed_runs()
    gap = runs[~((runs["method"] == "perl") & (runs["seed"] == 2) & (runs["dataset"] == "eurosat"))]
    with pytest.raises(ValueError, match="perl has no run on eurosat at seed 2"):
        report.runs_with_average(gap)
    with pytest.raises(ValueError, match="perl has no run on eurosat at seed 2"):
        report.live_b2n_table(gap, ["perl"], ["dtd", "eurosat"])


@pytest.mark.parametrize("module", ["perlkit.report", "perlkit.reported"])
def test_all_names_every_public_function_and_class(module: str) -> None:
    """The chapters import from these modules by name; ``__all__`` is their list of what is public (stop 39 found
    twelve of report's functions missing from it)."""
    import ast
    import importlib

    mod = importlib.import_module(module)
    tree = ast.parse(Path(mod.__file__).read_text())
    public = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")}
    assert public <= set(mod.__all__)
    assert all(hasattr(mod, name) for name in mod.__all__)
