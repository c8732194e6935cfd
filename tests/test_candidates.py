"""The table in data/candidates/README.md is what the recorded runs say: every row's numbers come from that run's
calibration.json and pretrain_log.json, and the weights' sha256 agrees across the two files that record it."""

import json
import re
from pathlib import Path

import pytest

from perlkit.backbone import create_backbone
from perlkit.files import sha256_file
from perlkit.mini.weights import MINI_MODEL, mini_weights_path
from perlkit.profiles import get_profile

CANDIDATES = Path(__file__).resolve().parents[1] / "data" / "candidates"
ROW = re.compile(r"^\| (world\d+-run\d+) \| (\w+) \| ([\d,]+) s \| ([+-][\d.]+), (\d+)/11[^|]* \| (\d+)/11[^|]* \| "
                 r"([\d.]+)[^|]* \| (\d+)/11 \|$")


def table_rows() -> dict[str, tuple[str, ...]]:
    lines = (CANDIDATES / "README.md").read_text().splitlines()
    return {m.group(1): m.groups()[1:] for m in map(ROW.match, lines) if m}


def run_folders() -> list[Path]:
    return sorted(p for p in CANDIDATES.iterdir() if p.is_dir())


def test_every_run_has_a_row_and_every_row_a_run():
    assert sorted(table_rows()) == [p.name for p in run_folders()]


@pytest.mark.parametrize("folder", run_folders(), ids=lambda p: p.name)
def test_row_matches_the_run_record(folder: Path):
    _, wall, headroom, headroom_count, within_20, spearman, budget = table_rows()[folder.name]
    summary = json.loads((folder / "calibration.json").read_text())["summary"]
    log = json.loads((folder / "pretrain_log.json").read_text())
    assert int(wall.replace(",", "")) == round(log["wall_time_s"])
    assert float(headroom) == round(summary["headroom"]["value"], 2)
    assert int(headroom_count) == summary["headroom"]["count"]
    assert int(within_20) == summary["zeroshot_within_20"]["value"]
    assert float(spearman) == round(summary["zeroshot_spearman"]["value"], 2)
    assert int(budget) == summary["training_budget"]["value"]


@pytest.mark.parametrize("folder", run_folders(), ids=lambda p: p.name)
def test_weights_hash_agrees_between_records(folder: Path):
    log = json.loads((folder / "pretrain_log.json").read_text())
    assert (folder / "mini-clip.sha256").read_text().split()[0] == log["weights_sha256"]


@pytest.mark.parametrize("path", sorted(CANDIDATES.glob("*/calibration-seed*.json")), ids=lambda p: p.parent.name)
def test_other_seed_calibrations_are_of_the_same_weights_and_zero_shot(path: Path):
    """Another few-shot seed (``perlkit mini calibrate --seed``) changes the probe's shots only."""
    other, first = (json.loads(p.read_text()) for p in (path, path.parent / "calibration.json"))
    assert other["seed"] == int(path.stem.removeprefix("calibration-seed")) != first["seed"]
    assert other["weights_sha256"] == first["weights_sha256"]
    for name, row in other["benchmarks"].items():
        assert row["zeroshot_base"] == first["benchmarks"][name]["zeroshot_base"]


#: candidates whose weights ship as a mini world's own (perlkit/assets/mini-<world>), not in data/candidates
SHIPPED_AS_WORLD = {"world2-run5": "2"}
COMMITTED_WEIGHTS = sorted([*((p.parent, p) for p in CANDIDATES.glob("*/mini-clip.pt")),
                            *((CANDIDATES / run, mini_weights_path(world)) for run, world in SHIPPED_AS_WORLD.items())])


@pytest.mark.parametrize(("folder", "weights"), COMMITTED_WEIGHTS, ids=lambda p: p.name)
def test_committed_weights_are_the_recorded_ones(folder: Path, weights: Path):
    """A candidate that met every bar commits its weights (a world's shipped weights are one); they must be the file
    its records describe."""
    assert sha256_file(weights) == (folder / "mini-clip.sha256").read_text().split()[0]
    assert (weights.with_suffix(".sha256")).read_text().split()[0] == sha256_file(weights)
    calibration = json.loads((folder / "calibration.json").read_text())
    assert calibration["summary"]["all_pass"]
    # and the calibration was made with exactly these weights (its hash is over the loaded tensors)
    assert create_backbone(MINI_MODEL, str(weights)).weights_sha256() == calibration["weights_sha256"]


@pytest.mark.parametrize("path", sorted(CANDIDATES.glob("*/pretrain_log-reproduction.json")),
                         ids=lambda p: p.parent.name)
def test_a_second_pretraining_reproduced_the_weights_byte_for_byte(path: Path):
    """The log of a second pretraining from scratch: same sha256, same loss curve and evaluations."""
    again, first = (json.loads(p.read_text()) for p in (path, path.parent / "pretrain_log.json"))
    recorded = (path.parent / "mini-clip.sha256").read_text().split()[0]
    assert again["weights_sha256"] == first["weights_sha256"] == recorded
    for key in ("loss_curve", "intermediate_evals", "zeroshot_test_top1", "recipe", "world_version"):
        assert again[key] == first[key], key


@pytest.mark.parametrize("path", sorted(CANDIDATES.glob("*/views.json")), ids=lambda p: p.parent.name)
def test_views_are_of_the_same_weights_and_shots_as_the_calibration(path: Path):
    """``perlkit mini views --json`` of a candidate: the calibration's weights and few-shot seed, and its zero-shot
    and probe columns are the calibration's own (the crop probes sit beside them)."""
    views, calibration = (json.loads(p.read_text()) for p in (path, path.parent / "calibration.json"))
    assert views["weights_sha256"] == calibration["weights_sha256"] and views["seed"] == calibration["seed"]
    for row in views["benchmarks"]:
        first = calibration["benchmarks"][row["dataset"]]
        assert (row["zeroshot_base"], row["probe_base"]) == (first["zeroshot_base"], first["probe_base"])
        assert {"probe_unified_crop", "probe_dassl_crop"} <= set(row)


@pytest.mark.parametrize("path", sorted(CANDIDATES.glob("*/adaptation*.json")),
                         ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_adaptation_records_are_of_the_calibrated_weights_and_add_up(path: Path):
    """``perlkit mini adaptation --json`` of a candidate: the calibration's weights, the same zero-shot base accuracies
    (the b2n zero-shot runs and the calibration agree to rounding; zero-shot does not depend on the seed), the run seed
    its file name says (``adaptation-seed2.json`` is ``--seed 2``), and gains and verdicts that follow from its own
    base accuracies."""
    from perlkit.experiments.calibration import adaptation_summary

    record, calibration = (json.loads(p.read_text()) for p in (path, path.parent / "calibration.json"))
    assert record["weights_sha256"] == calibration["weights_sha256"]
    assert record["seed"] == int(path.stem.removeprefix("adaptation").removeprefix("-seed") or 1)
    for name, accuracy in record["zeroshot_base"].items():
        assert accuracy == pytest.approx(calibration["benchmarks"][name]["zeroshot_base"], abs=1e-9)
    again = adaptation_summary(record["zeroshot_base"], {m: r["base"] for m, r in record["methods"].items()})
    for method, row in record["methods"].items():
        assert row["mean_gain"] == pytest.approx(again["methods"][method]["mean_gain"], abs=1e-9)
        assert row["pass"] == again["methods"][method]["pass"]
    assert record["all_pass"] == again["all_pass"]


def test_world2_adaptation_record_is_the_shipped_results() -> None:
    """run 5's adaptation bar (``perlkit mini adaptation --world 2 --json``) reads the shipped world-2 results: each
    base accuracy in the record is a result file's, and the gains follow from them."""
    from perlkit.experiments.calibration import adaptation_summary
    from perlkit.experiments.store import SHIPPED_RESULTS

    record = json.loads((CANDIDATES / "world2-run5" / "adaptation.json").read_text())
    stored: dict[tuple[str, str], dict[str, float]] = {}
    for path in (SHIPPED_RESULTS / get_profile("mini", world="2").store_name).glob("b2n-*-s1-*.json"):
        result = json.loads(path.read_text())
        spec = result["spec"]
        if not spec["options"] and not spec["train_overrides"]:
            stored.setdefault((spec["method"], spec["protocol"]), {})[spec["dataset"]] = result["metrics"]["base"]
    assert record["zeroshot_base"] == stored[("zeroshot", "unified")]
    trained = {m: stored[(m, "default")] for m in record["methods"]}
    for method, again in adaptation_summary(record["zeroshot_base"], trained)["methods"].items():
        first = record["methods"][method]
        assert again["base"] == first["base"] and again["pass"] == first["pass"]
        assert again["mean_gain"] == pytest.approx(first["mean_gain"], abs=1e-9)  # summed in the files' order


def test_the_books_adaptation_bar_reads_the_recorded_seed_1_numbers() -> None:
    """Chapter 1's adaptation table (``report.stored_adaptation``, nothing trained) gives, at seed 1, the mean gains
    that ``perlkit mini adaptation --world 2`` recorded; over seeds 1-3 each mean gain is the mean of the seeds'."""
    from perlkit import report
    from perlkit.experiments import Session
    from perlkit.report import stored_adaptation

    record = json.loads((CANDIDATES / "world2-run5" / "adaptation.json").read_text())
    session = Session(get_profile("mini"), progress=False)
    seed1, grid = stored_adaptation(session, [1])
    assert seed1 is not None, grid.note("mini")
    for method, first in record["methods"].items():
        assert seed1["methods"][method]["mean_gain"] == pytest.approx(first["mean_gain"], abs=1e-9)
        assert seed1["methods"][method]["pass"] == first["pass"]
    three, _ = stored_adaptation(session, [1, 2, 3])
    assert three is not None and three["seeds"] == [1, 2, 3]
    for method, row in three["methods"].items():
        seeds = three["seed_gains"][method]
        assert row["mean_gain"] == pytest.approx(sum(seeds.values()) / 3, abs=1e-9)
        assert seeds[1] == pytest.approx(seed1["methods"][method]["mean_gain"], abs=1e-9)
    from perlkit.experiments.calibration import ADAPTATION_BAR, adaptation_verdict

    assert adaptation_verdict(three) == "no rival reaches it, at any seed"  # the finding (stops 35-37)
    lucky = {**three, "seed_gains": {**three["seed_gains"], "mmrl": {1: ADAPTATION_BAR, 2: 0.0, 3: 0.0}}}
    assert adaptation_verdict(lucky) == "no rival reaches it"
    passing = {**three, "methods": {**three["methods"], "mmrl": {**three["methods"]["mmrl"], "pass": True}}}
    assert adaptation_verdict(passing) == "1 of 4 rivals reach it (MMRL)"
    assert adaptation_verdict(None).startswith("the bar cannot be read")
    table = report.adaptation_view(three)
    assert list(table.index[-4:]) == ["gain over zero-shot", "gain, seed 1", "gain, seed 2", "gain, seed 3"]
    assert table.loc["gain, seed 2", "MMRL"] == pytest.approx(three["seed_gains"]["mmrl"][2])


def test_the_views_record_of_the_shipped_weights_is_found() -> None:
    from perlkit.experiments.calibration import recorded_views

    record = json.loads((CANDIDATES / "world2-run5" / "calibration.json").read_text())
    views = recorded_views(record["weights_sha256"])
    assert views is not None and views["path"] == "data/candidates/world2-run5/views.json"
    assert recorded_views("0" * 64) is None
    from perlkit.experiments.calibration import views_sentence

    assert views_sentence(views) == ("finds that it keeps +4.51 points over zero-shot under the (0.5, 1) crops of "
                                     "MMRL and MMRL++ and -2.49 under Dassl's (0.08, 1) crops of MMA and R-MMA, "
                                     "against +11.09 on the shots as rendered")  # as recorded in stop 33's note
