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


def test_chapter_conclusion_lists_each_checked_claim() -> None:
    table = F.findings_table(_grid(8.0), chapter=("§4 (Table 1)", "App. B (Table 5)"))
    assert set(table["where"]) == {"§4 (Table 1)", "App. B (Table 5)"}
    text = F.conclusion(table)
    assert text.startswith("On the mini profile, claims checked on executed runs: 5 of 8 (5 holds)")
    assert "* average HM of 74.79 with only 6K trainable parameters: **holds**" in text
