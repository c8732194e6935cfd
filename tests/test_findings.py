"""Verdicts on the paper's claims are computed from results: intervals, rules, and the table over claims.csv."""

from __future__ import annotations

import math

import pytest

from perlkit import findings as F
from perlkit.data import B2N_DATASETS, DG_TARGETS, XD_TARGETS
from perlkit.reported import load_reported


def _b2n(method: str, dataset: str, base: float, novel: float, seed: int = 1, n: int = 400) -> dict:
    return {"spec": {"kind": "b2n", "method": method, "dataset": dataset, "seed": seed, "options": {}},
            "metrics": {"base": base, "novel": novel}, "counts": {"base_test": n, "novel_test": n}}


def _transfer(method: str, acc: float, seed: int = 1, n: int = 800) -> dict:
    names = ("imagenet", *XD_TARGETS, *DG_TARGETS)
    return {"spec": {"kind": "imagenet_transfer", "method": method, "dataset": "imagenet", "seed": seed,
                     "options": {}},
            "metrics": dict.fromkeys(names, acc), "counts": {f"{name}_test": n for name in names}}


def _grid(perl_shift: float, seeds: tuple[int, ...] = (1,), jitter: float = 0.0) -> list[dict]:
    runs = []
    for seed in seeds:
        wobble = jitter * (seed - 2)
        for method, shift in (("zeroshot", 0.0), ("mma", 0.0), ("mmrl", -3.0), ("mmrlpp", 0.0), ("perl", perl_shift)):
            runs += [_b2n(method, d, 60 + shift + wobble, 55 + shift + wobble, seed) for d in B2N_DATASETS]
            runs.append(_transfer(method, 40 + shift + wobble, seed))
    return runs


def test_binomial_and_delta_method_errors() -> None:
    acc = F.accuracy(50.0, 100)
    assert acc.se == pytest.approx(5.0)
    hm = F.hm_estimate(F.accuracy(50.0, 100), F.accuracy(50.0, 100))
    assert hm.value == pytest.approx(50.0)
    assert hm.se == pytest.approx(math.hypot(0.5 * 5.0, 0.5 * 5.0))  # dHM/db = dHM/dn = 1/2 at b = n
    avg = F.mean([F.accuracy(50.0, 100)] * 4)
    assert avg.se == pytest.approx(5.0 / 2)  # independent datasets: se / sqrt(k)


def test_seeds_give_a_t_interval() -> None:
    est = F.over_seeds([F.Estimate(v, 0.1) for v in (1.0, 2.0, 3.0)])
    assert est.value == pytest.approx(2.0)
    assert est.half_width == pytest.approx(4.303 * 1.0 / math.sqrt(3))


@pytest.mark.parametrize(("low", "high", "bound", "expected"), [
    (0.5, 2.0, 0.0, F.HOLDS), (-2.0, -0.5, 0.0, F.CONTRADICTED), (-1.0, 1.0, 0.0, F.NOT_SEEN),
    (-0.3, 0.4, -0.44, F.HOLDS), (-3.0, -1.0, -0.44, F.CONTRADICTED),
])
def test_verdict_rules(low: float, high: float, bound: float, expected: str) -> None:
    estimate = F.Estimate((low + high) / 2, (high - low) / 2 / F._Z95)
    assert F.verdict(F.Claim("x", lambda r: estimate, bound), estimate) == expected


def test_every_claim_of_the_paper_has_a_check_or_a_reason() -> None:
    ids = set(load_reported("claims")["id"])
    assert ids <= set(F.CLAIMS), f"claims without a counterpart: {sorted(ids - set(F.CLAIMS))}"
    for claim_id in ids:
        claim = F.CLAIMS[claim_id]
        assert claim.value is not None or claim.reason or claim.part_of, claim_id


@pytest.mark.parametrize(("shift", "expected"), [(8.0, F.HOLDS), (0.0, F.NOT_SEEN), (-8.0, F.CONTRADICTED)])
def test_table_follows_the_results(shift: float, expected: str) -> None:
    table = F.findings_table(_grid(shift)).set_index("measured here")
    row = table.loc["PERL − zero-shot HM, mean over the base-to-novel datasets"]
    assert row["verdict"] == expected
    assert row["value"] == pytest.approx(shift, abs=0.6)  # HM of (60+s, 55+s) minus HM of (60, 55)
    assert table.loc["PERL − zero-shot, ImageNet-variant average", "verdict"] == expected


def test_three_seeds_narrow_the_interval_and_ablations_are_ignored() -> None:
    runs = _grid(2.0, seeds=(1, 2, 3), jitter=0.1)
    runs.append({**_b2n("perl", "dtd", 99.0, 99.0), "spec": {**_b2n("perl", "dtd", 0, 0)["spec"],
                                                              "options": {"steps": 1}}})
    table = F.findings_table(runs)
    assert table.attrs["seeds"] == [3]
    row = table.set_index("measured here").loc["PERL − zero-shot HM, mean over the base-to-novel datasets"]
    assert row["verdict"] == F.HOLDS  # identical gaps in every seed: a tight t-interval
    assert "3 seeds" in F.interval_note(table)


def test_missing_results_say_so() -> None:
    table = F.findings_table([r for r in _grid(1.0) if r["spec"]["method"] != "mma"])
    assert table.set_index("measured here").loc["PERL − MMA HM (mean); the claim: above −0.44", "verdict"] == \
        "no result"


def test_rmma_removal_verdicts_follow_the_runs() -> None:
    """Removing a component that the runs show to matter holds; one that changes nothing is not seen."""
    def run(value: str, hm_shift: float, dataset: str) -> tuple[str, dict]:
        result = _b2n("rmma", dataset, 70 + hm_shift, 70 + hm_shift, n=2000)
        return value, {**result, "trainable_params": 100}

    pairs = [run(v, s, d) for v, s in (("full R-MMA", 0.0), ("w/o MAR", -6.0), ("w/o fusion", 0.0), ("unshared", 1.0))
             for d in B2N_DATASETS]
    table = F.removal_verdicts(pairs).set_index("removed")
    assert table.loc["w/o MAR", "verdict"] == F.HOLDS
    assert table.loc["w/o MAR", "executed HM drop"] == pytest.approx(6.0)
    assert table.loc["w/o MAR", "reported HM drop"] == pytest.approx(81.32 - 79.25)
    assert table.loc["w/o fusion", "verdict"] == F.NOT_SEEN
    assert table.loc["unshared", "verdict"].startswith("no claim")


def test_ablation_claims_follow_the_runs() -> None:
    """Each ablation claim is the difference the paper's numbers make, checked on the runs: a clear gain holds, a
    clear loss is contradicted, a tie is not seen, and a claim against the best other value subtracts the best."""
    shifts = {"steps": {"1": 0.0, "4": 5.0}, "layer": {"6": 0.0, "7": -5.0, "11": 1.0},
              "modality": {"vision": 0.0, "text": 0.0, "both": 0.0}}
    pairs = {kind: [(v, _b2n("perl", d, 70 + s, 70 + s, n=2000)) for v, s in values.items() for d in B2N_DATASETS]
             for kind, values in shifts.items()}
    table = F.ablation_verdicts(pairs).set_index("where")
    steps, layer, variants = table.loc["§4.4 (Fig. 3b)"], table.loc["Fig. 3a"], table.loc["Table 4"]
    assert steps["verdict"] == F.HOLDS and steps["value"] == pytest.approx(5.0)
    assert steps["paper"] == pytest.approx(74.80 - 73.95) and steps["paper compares with"] == "K=1"
    assert layer["verdict"] == F.CONTRADICTED and layer["value"] == pytest.approx(-6.0)  # 7 against 11, the best
    assert layer["measured here"].startswith("HM(J=7) − HM(J=11)")
    assert layer["paper"] == pytest.approx(74.79 - 74.44) and layer["paper compares with"] == "J=6"
    assert list(table.loc["Table 3", "verdict"]) == [F.NOT_SEEN, F.NOT_SEEN]
    assert list(variants["verdict"]) == ["no result", "no result"]  # no variant grid given
    assert list(variants["paper"]) == [pytest.approx(74.79 - 65.15), pytest.approx(76.37 - 75.09)]
    assert F.interval_note(table).startswith("95% intervals from test-set sampling alone (one seed")


def test_ablation_claims_without_runs_say_so() -> None:
    table = F.ablation_verdicts({})
    assert set(table["verdict"]) == {"no result"} and table["measured here"].iloc[0] == "HM(K=4) − HM(K=1)"
    assert table["measured here"].iloc[1] == f"HM(J=7) − HM({F.BEST_OTHER})"
    assert F.conclusion(table).startswith("On the mini profile, claims checked on executed runs: 0 of 6 (none); "
                                          "no result: 6")
    assert F.interval_note(table) == "No executed run behind these claims, so no interval."


def test_t_quantiles_and_unpaired_seed_differences() -> None:
    assert [F.t95(df) for df in (1, 2, 10, 19.7, 35, 5000)] == [12.706, 4.303, 2.228, 2.093, 2.042, 1.96]
    three, two = F.Estimate(3.0, 1.0, (2.0, 3.0, 4.0)), F.Estimate(1.0, 1.0, (0.0, 2.0))
    unpaired = three - two  # seed counts differ: no pairing, the t quantile of the fewer seeds (df 1)
    assert unpaired.per_seed == () and unpaired.half_width == pytest.approx(12.706 * math.sqrt(2))


def test_ablation_claims_on_the_stored_seed_1_grid() -> None:
    """The shipped mini ablation grid at seed 1 (world 2) gives the recorded differences (stop 38)."""
    from perlkit.book import open_session

    table = F.stored_ablation_verdicts(open_session("mini", None, None, None), [1])
    assert list(table["value"]) == [-0.04, -0.37, -0.79, 0.34, 10.81, -0.67]
    assert list(table["verdict"]) == [F.NOT_SEEN] * 4 + [F.HOLDS, F.NOT_SEEN]


def test_chapter_conclusion_lists_each_checked_claim() -> None:
    table = F.findings_table(_grid(8.0), chapter=("§4 (Table 1)", "App. B (Table 5)"))
    assert set(table["where"]) == {"§4 (Table 1)", "App. B (Table 5)"}
    text = F.conclusion(table)
    assert text.startswith("On the mini profile, claims checked on executed runs: 5 of 8 (5 holds)")
    assert "* average HM of 74.79 with only 6K trainable parameters: **holds**" in text


# ---------------------------------------------------------------------------------------------- training cost
def _bench(device: str, steps: dict[str, dict[str, list[float]]]) -> object:
    from types import SimpleNamespace

    methods = {name: SimpleNamespace(train_step_ms_samples=samples) for name, samples in steps.items()}
    return SimpleNamespace(device_name=device, methods=methods)


def test_component_costs_are_judged_against_the_spread_of_the_repeats() -> None:
    fast, slow = [10.0, 10.5, 9.5, 10.2], [20.0, 20.5, 19.5, 20.2]
    records = {"gpu.json": _bench("GPU", {
        "mma": {"4": fast, "32": [x + 0.45 for x in fast]},
        "rmma": {"4": slow, "32": slow},
        "rmma:attention=false": {"32": fast},  # saves 10 ms: costs time
        "rmma:mar=false": {"32": [20.4, 19.4, 20.3, 20.0]},  # saves nothing
        "rmma:shared=false": {"32": [x + 5 for x in slow]},  # slower without it
    }), "cpu.json": _bench("CPU", {"mma": {"4": fast}})}  # no variant: left out
    table = F.component_cost_verdicts(records)
    assert list(table["switched off"]) == ["attention=false", "mar=false", "shared=false"]
    assert list(table["verdict"]) == ["costs time", "inside the noise", "slower without it"]
    assert table["saved ms / step"].iloc[0] == pytest.approx(10.0) and set(table["batch"]) == {32}
    text = F.component_cost_conclusion(records)
    assert "an R-MMA training step takes 20.1 ms, MMA's 10.5 ms" in text
    assert "add up to 10.0 ms of it" in text and "Parts beyond the noise: attention (10.0 ms" in text
    assert "1.04x its time at batch 4 (8x the images): launch- and latency-bound" in text
    assert F.component_cost_conclusion({}) == "No committed bench record times rmma's variants yet."


def test_the_committed_gpu_record_finds_the_attention_costly_and_the_cpu_one_finds_nothing() -> None:
    table = F.component_cost_verdicts().set_index(["record", "switched off"])["verdict"]
    gpu = table[table.index.get_level_values(0).str.startswith("NVIDIA H200")]
    cpu = table[table.index.get_level_values(0).str.startswith("CPU")]
    assert gpu.xs("attention=false", level=1).item() == "costs time"
    assert set(cpu) == {"inside the noise"}


def test_a_cost_difference_of_few_repeats_gets_students_t_not_the_normal_quantile() -> None:
    saved = F._mean_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # Welch df = 4: t = 2.776
    assert saved.value == 0.0 and saved.half_width == pytest.approx(2.776 * math.sqrt(2 / 3), rel=1e-6)


def test_seed_differences_pair_the_same_seeds_not_the_same_positions() -> None:
    """Two estimates over three seeds each pair seed by seed only when the seeds are the same ones; other seeds
    give the unpaired (widened) interval, as unequal seed counts do."""
    a = F.over_seeds([F.Estimate(v, 0.1) for v in (2.0, 3.0, 4.0)], seeds=(1, 2, 3))
    b = F.over_seeds([F.Estimate(v, 0.1) for v in (1.0, 2.0, 3.5)], seeds=(1, 2, 3))
    c = F.over_seeds([F.Estimate(v, 0.1) for v in (1.0, 2.0, 3.5)], seeds=(4, 5, 6))
    paired, unpaired = a - b, a - c
    assert paired.per_seed == (1.0, 1.0, 0.5) and paired.seeds == (1, 2, 3)
    assert unpaired.per_seed == () and unpaired.seeds == () and unpaired.value == paired.value
    assert unpaired.half_width == pytest.approx(4.303 * math.hypot(a.se, c.se))
    legacy = F.Estimate(3.0, 1.0, (2.0, 3.0, 4.0)) - F.Estimate(2.0, 1.0, (1.0, 2.0, 3.0))  # no ids: by position
    assert legacy.per_seed == (1.0, 1.0, 1.0)
    assert (a - F.Estimate(2.0, 1.0, (1.0, 2.0, 3.0))).per_seed == ()  # ids on one side only: not paired
    shuffled = F.over_seeds([F.Estimate(v, 0.1) for v in (3.5, 1.0, 2.0)], seeds=(3, 1, 2))
    assert shuffled.seeds == (1, 2, 3) and (a - shuffled).per_seed == (1.0, 1.0, 0.5)  # sorted by seed
    with pytest.raises(ValueError, match="2 seed ids for 3 per-seed values"):
        F.Estimate(1.0, 0.0, (1.0, 2.0, 3.0), (1, 2))


def test_results_average_datasets_seed_by_seed_whatever_the_order_of_the_runs() -> None:
    """Per-seed averages over datasets take each seed's runs, even when the runs arrive in another seed order on
    each dataset; a dataset run on other seeds gives no average."""

    def run(dataset: str, seed: int, base: float) -> dict:
        return {"spec": {"kind": "b2n", "method": "perl", "dataset": dataset, "seed": seed},
                "metrics": {"base": base, "novel": base}, "counts": {"base_test": 100, "novel_test": 100}}

    runs = [run("dtd", 1, 10.0), run("dtd", 2, 20.0), run("eurosat", 2, 40.0), run("eurosat", 1, 30.0)]
    value = F.Results(runs).b2n_value("perl", "base")
    assert value.per_seed == (20.0, 30.0) and value.seeds == (1, 2)
    assert F.Results([*runs[:3], run("eurosat", 3, 30.0)]).b2n_value("perl", "base") is None


def test_two_runs_of_one_seed_are_refused_not_counted_as_two_seeds() -> None:
    run = {"spec": {"kind": "b2n", "method": "perl", "dataset": "dtd", "seed": 1},
           "metrics": {"base": 50.0, "novel": 50.0}, "counts": {"base_test": 100, "novel_test": 100}}
    with pytest.raises(ValueError, match="two b2n results of perl on dtd at seed 1"):
        F.Results([run, run])

