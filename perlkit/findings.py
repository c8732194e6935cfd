"""The paper's claims checked on executed results: each claim of ``claims.csv``, its counterpart computed from runs,
a 95% interval and a verdict, so that no page types a conclusion.

A claim's counterpart is a difference (PERL minus a rival or zero-shot), a gap to a threshold, or PERL's margin
over the best other method. Intervals come from the runs themselves:

* several seeds: the mean over seeds and a t-interval on the per-seed values (seed-to-seed variation);
* one seed: test-set sampling alone, a binomial standard error per accuracy (``sqrt(p (1 - p) / n)``), propagated
  through HM (delta method) and averages; methods are treated as independent, which overstates the noise of a
  difference on the same test images, so a one-seed interval is conservative. It says nothing about seed variation.

Verdicts: ``holds`` (the interval lies on the claim's side), ``contradicted`` (it lies on the other side), ``not
seen`` (it straddles the claim's boundary: inside the noise), ``not tested`` (the claim concerns a method or a
measurement this harness does not have; the reason is given).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perlkit import plots
from perlkit.data import B2N_DATASETS, DG_TARGETS, XD_TARGETS
from perlkit.experiments import Session, ablation_specs, b2n_specs, harmonic_mean, transfer_specs
from perlkit.methods import list_methods
from perlkit.report import ShippedGrid, reported_ablation, shipped_grid, stored_ablation_grids
from perlkit.reported import load_reported
from perlkit.stats import _Z95, Estimate, t95

HOLDS, NOT_SEEN, CONTRADICTED, NOT_TESTED = "holds", "not seen", "contradicted", "not tested"


def accuracy(percent: float, n: int) -> Estimate:
    """An accuracy (in %) on ``n`` test images, with its binomial standard error."""
    p = percent / 100.0
    return Estimate(percent, 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1)))


def hm_estimate(base: Estimate, novel: Estimate) -> Estimate:
    """HM of base and novel accuracy (``protocols.harmonic_mean``); its standard error by the delta method."""
    b, n = base.value, novel.value
    if b + n <= 0:
        return Estimate(0.0, 0.0)
    d_b, d_n = 2 * n * n / (b + n) ** 2, 2 * b * b / (b + n) ** 2
    return Estimate(harmonic_mean(b, n), math.hypot(d_b * base.se, d_n * novel.se))


def mean(estimates: Sequence[Estimate]) -> Estimate:
    """The average of independent estimates (datasets)."""
    k = len(estimates)
    return Estimate(sum(e.value for e in estimates) / k, math.sqrt(sum(e.se**2 for e in estimates)) / k)


def over_seeds(estimates: Sequence[Estimate], seeds: Sequence[int] = ()) -> Estimate:
    """One estimate from the same quantity under several seeds (``seeds``: which, in order, so that differences
    pair them): their mean; the interval then comes from the seeds."""
    if len(estimates) == 1:
        return estimates[0]
    order = sorted(range(len(estimates)), key=lambda i: seeds[i]) if seeds else range(len(estimates))
    values = tuple(estimates[i].value for i in order)  # in seed order, so that equal seed sets pair
    return Estimate(statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)), values,
                    tuple(seeds[i] for i in order) if seeds else ())


# ---------------------------------------------------------------------------------------------- measures
def b2n_measure(result: Mapping) -> dict[str, Estimate]:
    """Base, novel and HM of one base-to-novel result, with their test-set errors."""
    metrics, counts = result["metrics"], result["counts"]
    base = accuracy(metrics["base"], counts["base_test"])
    novel = accuracy(metrics["novel"], counts["novel_test"])
    return {"base": base, "novel": novel, "hm": hm_estimate(base, novel)}


#: the target averages of an ImageNet-trained model, as ``Session.imagenet_transfer`` computes them
TRANSFER_AVERAGES: dict[str, tuple[str, ...]] = {"xd_average": XD_TARGETS, "dg_average": DG_TARGETS}


def transfer_measure(result: Mapping, targets: Mapping[str, Sequence[str]] = TRANSFER_AVERAGES) -> dict[str, Estimate]:
    """Per-target accuracy of an ImageNet-trained model and its target averages (``targets`` maps each average
    name to the datasets it averages)."""
    metrics, counts = result["metrics"], result["counts"]
    out = {name: accuracy(value, counts[f"{name}_test"]) for name, value in metrics.items()
           if f"{name}_test" in counts}
    for average, names in targets.items():
        out[average] = mean([out[n] for n in names])
    return out


class Results:
    """Executed results of one profile, indexed for claims: base-to-novel by (method, dataset), transfer by method,
    each over the seeds present."""

    def __init__(self, results: Iterable[Mapping], targets: Mapping[str, Sequence[str]] = TRANSFER_AVERAGES) -> None:
        # measures by seed, so that per-seed averages over datasets and differences between methods pair seeds
        self.b2n: dict[tuple[str, str], dict[int, dict[str, Estimate]]] = {}
        self.transfer: dict[str, dict[int, dict[str, Estimate]]] = {}
        for r in results:
            spec = r["spec"]
            if spec.get("options"):  # ablation runs are not the method as published
                continue
            if spec["kind"] == "b2n":
                runs, measure = self.b2n.setdefault((spec["method"], spec["dataset"]), {}), b2n_measure(r)
            elif spec["kind"] == "imagenet_transfer":
                runs, measure = self.transfer.setdefault(spec["method"], {}), transfer_measure(r, targets)
            else:
                continue
            if spec["seed"] in runs:  # e.g. two protocols mixed: they would be counted as one seed
                raise ValueError(f"two {spec['kind']} results of {spec['method']} on {spec.get('dataset', 'ImageNet')}"
                                 f" at seed {spec['seed']}; give the claims one run per seed")
            runs[spec["seed"]] = measure

    def methods(self) -> list[str]:
        return sorted({m for m, _ in self.b2n} | set(self.transfer))

    def b2n_value(self, method: str, metric: str, dataset: str | None = None) -> Estimate | None:
        """One dataset's base/novel/HM, or the mean over the datasets every method has, over seeds."""
        datasets = [dataset] if dataset else self._common_datasets()
        by_dataset = [self.b2n.get((method, d)) for d in datasets]
        if not datasets or any(runs is None for runs in by_dataset) or len({frozenset(r) for r in by_dataset}) != 1:
            return None  # a dataset without runs, or datasets run on other seeds
        seeds = sorted(by_dataset[0])
        return over_seeds([mean([runs[s][metric] for runs in by_dataset]) for s in seeds], seeds)

    def transfer_value(self, method: str, metric: str) -> Estimate | None:
        runs = self.transfer.get(method)
        if not runs or any(metric not in r for r in runs.values()):
            return None
        seeds = sorted(runs)
        return over_seeds([runs[s][metric] for s in seeds], seeds)

    def _common_datasets(self) -> list[str]:
        by_method: dict[str, set[str]] = {}
        for method, dataset in self.b2n:
            by_method.setdefault(method, set()).add(dataset)
        return sorted(set.intersection(*by_method.values())) if by_method else []


# ---------------------------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    """How one paper claim is checked: a "PERL minus something" measure and the bound the claim puts on it (0 for
    "PERL gains over" and "PERL is highest"; -X for "within X points of" and "at most X below the best")."""

    measure: str  # what the executed number is, in words
    value: Callable[[Results], Estimate | None] | None  # None: not tested here
    bound: float = 0.0
    reason: str = ""  # why a claim is not tested
    part_of: str = ""  # a claim id whose row already checks this sentence


Getter = Callable[[Results, str], "Estimate | None"]


def _versus(get: Getter, rival: str) -> Callable[[Results], Estimate | None]:
    """PERL minus a named method (zero-shot CLIP or a rival)."""
    def value(results: Results) -> Estimate | None:
        a, b = get(results, "perl"), get(results, rival)
        return None if a is None or b is None else a - b
    return value


def _versus_best(get: Getter) -> Callable[[Results], Estimate | None]:
    """PERL minus the best other method (negative: a rival is ahead)."""
    def value(results: Results) -> Estimate | None:
        mine = get(results, "perl")
        others = [e for m in results.methods() if m != "perl" and (e := get(results, m)) is not None]
        return None if mine is None or not others else mine - max(others, key=lambda e: e.value)
    return value


def _b2n(metric: str, dataset: str | None = None) -> Getter:
    return lambda results, method: results.b2n_value(method, metric, dataset)


def _transfer(metric: str) -> Getter:
    return lambda results, method: results.transfer_value(method, metric)


_NOT_IN_HARNESS = "compares with {}, which this harness does not run"
_ARCHITECTURE = "a parameter count of the ViT-B/16 methods, exact and shown in the comparison chapter"


def _best_gap(dataset: str, name: str) -> Claim:
    return Claim(f"PERL − best other method on {name}; the claim: above −1", _versus_best(_transfer(dataset)), -1.0)


CLAIMS: dict[str, Claim] = {
    "t1_avg_hm": Claim("PERL − zero-shot HM, mean over the base-to-novel datasets", _versus(_b2n("hm"), "zeroshot")),
    "t1_novel_perl": Claim("PERL − best other method, novel accuracy (mean)", _versus_best(_b2n("novel"))),
    "t1_novel_mma": Claim("", None, part_of="t1_novel_perl"),
    "t1_gap_mma": Claim("PERL − MMA HM (mean); the claim: above −0.44", _versus(_b2n("hm"), "mma"), -0.44),
    "t1_gap_promptsrc": Claim("", None, reason=_NOT_IN_HARNESS.format("PromptSRC")),
    "t1_ratio_mma": Claim("", None, reason=_ARCHITECTURE),
    "t1_ratio_promptsrc": Claim("", None, reason=_ARCHITECTURE),
    "t5_dtd_novel": Claim("PERL − best other method, DTD novel accuracy", _versus_best(_b2n("novel", "dtd"))),
    "t5_eurosat_novel": Claim("PERL − best other method, EuroSAT novel accuracy",
                              _versus_best(_b2n("novel", "eurosat"))),
    "t2_gap_maple": Claim("", None, reason=_NOT_IN_HARNESS.format("MaPLe")),
    "t2_ratio_maple": Claim("", None, reason=_ARCHITECTURE),
    "t2_gap_mmrlpp": Claim("PERL − MMRL++, cross-dataset target average; the claim: above −2",
                           _versus(_transfer("xd_average"), "mmrlpp"), -2.0),
    "t2_ratio_mmrlpp": Claim("", None, reason=_ARCHITECTURE),
    "t8_gain_over_clip": Claim("PERL − zero-shot, ImageNet-variant average", _versus(_transfer("dg_average"),
                                                                                      "zeroshot")),
    "t8_gap_v2": _best_gap("imagenet_v2", "ImageNet-V2"),
    "t8_gap_sketch": _best_gap("imagenet_sketch", "ImageNet-Sketch"),
    "t8_gap_a": _best_gap("imagenet_a", "ImageNet-A"),
    "t8_gap_r": _best_gap("imagenet_r", "ImageNet-R"),
    "t8_source_target_gap_perl": Claim("", None, reason=_NOT_IN_HARNESS.format("CoOp and PromptSRC")),
    "t8_source_target_gap_coop": Claim("", None, part_of="t8_source_target_gap_perl"),
    "t8_source_target_gap_promptsrc": Claim("", None, part_of="t8_source_target_gap_perl"),
    "fig1_ratio_mmrl": Claim("", None, reason=_ARCHITECTURE),
    "fig1_novel_gain_mmrl": Claim("PERL − MMRL novel accuracy (mean)", _versus(_b2n("novel"), "mmrl")),
    "limitations_cost": Claim("", None, reason="a cost model; measured in the efficiency chapter (perlkit bench)"),
}


def interval_verdict(estimate: Estimate, bound: float = 0.0) -> str:
    """Holds / contradicted / not seen (inside the noise) from where the 95% interval lies against a bound."""
    return HOLDS if estimate.low > bound else CONTRADICTED if estimate.high < bound else NOT_SEEN


def verdict(claim: Claim, estimate: Estimate | None) -> str:
    """A claim's verdict: not tested, no result, or ``interval_verdict`` against the claim's bound."""
    if claim.value is None:
        return NOT_TESTED
    if estimate is None:
        return "no result"
    return interval_verdict(estimate, claim.bound)


def findings_table(results: Iterable[Mapping], chapter: str | tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every claim of ``claims.csv`` (or those of one chapter: its ``where`` prefixes, e.g. "§4 (Table 1)"), the
    paper's number, the executed counterpart with its 95% interval, and the verdict."""
    claims = load_reported("claims")
    indexed = Results(results)
    seeds = sorted({len(v) for v in (*indexed.b2n.values(), *indexed.transfer.values())})
    rows = []
    for row in claims.itertuples():
        if chapter is not None and not str(row.where).startswith(chapter):
            continue
        claim = CLAIMS.get(row.id, Claim("", None, reason="no counterpart defined"))
        if claim.part_of:
            continue
        estimate = claim.value(indexed) if claim.value else None
        rows.append({
            "claim": row.claim, "paper": row.value, "where": row.where,
            "measured here": claim.measure or "—",
            "value": None if estimate is None else round(estimate.value, 2),
            "95% interval": "" if estimate is None else f"[{estimate.low:.2f}, {estimate.high:.2f}]",
            "verdict": verdict(claim, estimate),
            "why not tested": claim.reason,
        })
    table = pd.DataFrame(rows)
    table.attrs["seeds"] = seeds
    return table


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims fall under each verdict (for a one-line conclusion)."""
    return {k: int(v) for k, v in table["verdict"].value_counts().items()}


def conclusion(table: pd.DataFrame, profile: str = "mini") -> str:
    """The page's conclusion, counted from the verdicts (never typed): how many claims hold, and each one that does
    not, with its executed number."""
    counts = verdict_counts(table)
    missing, untested = counts.get("no result", 0), counts.get(NOT_TESTED, 0)
    checked = len(table) - untested - missing
    parts = [f"{counts.get(v, 0)} {v}" for v in (HOLDS, NOT_SEEN, CONTRADICTED) if counts.get(v, 0)]
    text = (f"On the {profile} profile, claims checked on executed runs: {checked} of {len(table)} "
            f"({', '.join(parts) or 'none'})")
    if missing:
        text += f"; no result: {missing} (their runs are not stored for this code and these seeds)"
    text += (f"; not tested here: {untested} (other methods, parameter counts or cost models, each with its reason)."
             if untested else ".")
    checked_rows = table[table["verdict"].isin([HOLDS, NOT_SEEN, CONTRADICTED])]
    lines = [f"* {row['claim']}: **{row['verdict']}** ({row['measured here']}: {row['value']:+.2f}, 95% interval "
             f"{row['95% interval']})" for _, row in checked_rows.iterrows()]
    return "\n".join([text, "", *lines]) if lines else text


def interval_note(table: pd.DataFrame) -> str:
    """What the intervals of a findings table rest on, in one sentence."""
    seeds = table.attrs.get("seeds", [])
    if not seeds:
        return "No executed run behind these claims, so no interval."
    if min(seeds) > 1:
        return f"95% t-intervals over {min(seeds)} seeds."
    return ("95% intervals from test-set sampling alone (one seed; binomial errors, methods treated as independent, "
            "so conservative); seed-to-seed variation is not in them.")


def executed_grid(session: Session, seeds: Sequence[int] = (1,)) -> ShippedGrid:
    """The runs the claims are checked on: base-to-novel on every dataset and the ImageNet-trained models, for
    every method under the one-epoch protocol, as stored (current fingerprints only; nothing is trained here)."""
    methods, profile = list_methods(), session.profile.name
    specs = [*b2n_specs(methods, B2N_DATASETS, seeds, profile=profile), *transfer_specs(methods, seeds, profile)]
    return shipped_grid(session, specs)


def executed_findings(session: Session, seeds: Sequence[int] = (1,),
                      chapter: str | tuple[str, ...] | None = None) -> tuple[pd.DataFrame, ShippedGrid]:
    """``findings_table`` on ``executed_grid``: the claims table a page shows, and the grid it rests on."""
    grid = executed_grid(session, seeds)
    return findings_table(grid.results, chapter), grid


# ---------------------------------------------------------------------------------------------- ablation claims
BEST_OTHER = "best other value"


@dataclass(frozen=True)
class AblationClaim:
    """One of the paper's ablation findings as a difference of two mean HMs over the base-to-novel datasets: the
    value the paper puts ahead (``better``) minus the one it is compared with (``than``: a value, or the best of all
    the others). It holds when the 95% interval of that difference lies above 0."""

    kind: str  # the ablation (``perlkit.experiments.ABLATIONS``)
    table: str  # where its reported numbers are (``report.reported_ablation``)
    claim: str  # the paper's words, or what its numbers show where no sentence says it
    where: str
    better: str
    than: str


ABLATION_CLAIMS: tuple[AblationClaim, ...] = (
    AblationClaim("steps", "fig3b", "“Performance improves steadily from one to four reasoning steps”",
                  "§4.4 (Fig. 3b)", "4", "1"),
    AblationClaim("layer", "fig3a", "“Performance peaks at layer 7” (J of the vision encoder there; of both "
                  "encoders here)", "Fig. 3a", "7", BEST_OTHER),
    AblationClaim("modality", "3", "“text-only reasoning yields stronger gains than vision-only”", "Table 3",
                  "text", "vision"),
    AblationClaim("modality", "3", "“refining the textual decision space alone is insufficient” (both "
                  "encoders above text only)", "Table 3", "both", "text"),
    AblationClaim("variant", "4", "Table 4's numbers (no sentence): injecting at the embedding (PERL-Early) is far "
                  "below the default", "Table 4", "shared", "early"),
    AblationClaim("variant", "4", "Table 4's numbers (no sentence): one projector per depth and step "
                  "(PERL-LayerStep) is the best loop", "Table 4", "layerstep", BEST_OTHER),
)


def _label(kind: str, value: str) -> str:
    if value == BEST_OTHER:
        return value
    return {"steps": f"K={value}", "layer": f"J={value}"}.get(kind, value)


def _claim_difference(claim: AblationClaim, hm: Mapping[str, Estimate]) -> tuple[Estimate, str] | None:
    """``better`` minus ``than`` (or minus the best other value) on ``hm`` (value -> estimate), and which value was
    subtracted; None when a value is missing."""
    if claim.better not in hm:
        return None
    if claim.than == BEST_OTHER:
        others = {v: e for v, e in hm.items() if v != claim.better}
        if not others:
            return None
        than = max(others, key=lambda v: others[v].value)
    elif claim.than in hm:
        than = claim.than
    else:
        return None
    return hm[claim.better] - hm[than], than


def stored_ablation_pairs(grids: Mapping[str, ShippedGrid], seeds: Sequence[int],
                          profile: str) -> dict[str, list[tuple[str, Mapping]]]:
    """(value, result) pairs of each complete ablation grid (``report.stored_ablation_grids``, or the second part of
    ``report.precomputed_ablations``: every value on every base-to-novel dataset at ``seeds``), the form
    ``ablation_verdicts`` reads."""
    out = {}
    for kind, grid in grids.items():
        if grid.complete:
            specs = ablation_specs(kind, None, B2N_DATASETS, list(seeds), profile)
            out[kind] = [(str(v), r) for (v, _), r in zip(specs, grid.results, strict=True)]
    return out


def ablation_verdicts(pairs: Mapping[str, Iterable[tuple[str, Mapping]]]) -> pd.DataFrame:
    """Each of ``ABLATION_CLAIMS``: the paper's own difference (from its reported HMs), the executed one (mean HM over
    the datasets, over seeds when there are several) with its 95% interval, and the verdict; "no result" where the
    ablation's grid is not given (``stored_ablation_pairs`` gives only complete grids)."""
    hm_by_kind = {kind: _mean_hm_by_value(list(p)) for kind, p in pairs.items()}
    seeds = sorted({len(e.per_seed) or 1 for hm in hm_by_kind.values() for e in hm.values()})
    reported = {table: {v: Estimate(h, 0.0) for v, h in _reported_hm(table).items()}
                for table in dict.fromkeys(claim.table for claim in ABLATION_CLAIMS)}
    rows = []
    for claim in ABLATION_CLAIMS:
        paper = _claim_difference(claim, reported[claim.table])
        executed = _claim_difference(claim, hm_by_kind.get(claim.kind, {}))
        than = executed[1] if executed else claim.than
        measured = f"HM({_label(claim.kind, claim.better)}) − HM({_label(claim.kind, than)})"
        rows.append({
            "claim": claim.claim, "where": claim.where,
            "paper": None if paper is None else round(paper[0].value, 2),
            "paper compares with": "" if paper is None else _label(claim.kind, paper[1]),
            "measured here": measured,  # of mean HMs over the base-to-novel datasets
            "value": None if executed is None else round(executed[0].value, 2),
            "95% interval": "" if executed is None else f"[{executed[0].low:.2f}, {executed[0].high:.2f}]",
            "verdict": "no result" if executed is None else interval_verdict(executed[0]),
        })
    table = pd.DataFrame(rows)
    table.attrs["seeds"] = seeds
    return table


def stored_ablation_verdicts(session: Session, seeds: Sequence[int] = (1,)) -> pd.DataFrame:
    """``ablation_verdicts`` on the stored 11-dataset grids at ``seeds`` (nothing is trained; an incomplete grid
    gives "no result" rows)."""
    kinds = tuple(dict.fromkeys(claim.kind for claim in ABLATION_CLAIMS))
    grids = stored_ablation_grids(session, kinds, seeds)
    return ablation_verdicts(stored_ablation_pairs(grids, seeds, session.profile.name))


def _reported_hm(table: str) -> dict[str, float]:
    """The paper's HM per value of one reported ablation, its values named as perlkit's."""
    frame = reported_ablation(table)
    return dict(zip(frame["value"].astype(str), frame["hm"].astype(float), strict=True))


# ---------------------------------------------------------------------------------------------- R-MMA's claims
def _mean_hm_by_value(pairs: Iterable[tuple[str, Mapping]]) -> dict[str, Estimate]:
    """Mean HM over datasets per ablation value (and over seeds, when there are several)."""
    grouped: dict[str, dict[int, list[Estimate]]] = {}
    for value, result in pairs:
        grouped.setdefault(str(value), {}).setdefault(result["spec"]["seed"], []).append(b2n_measure(result)["hm"])
    return {value: over_seeds([mean(hms) for _, hms in sorted(seeds.items())], sorted(seeds))
            for value, seeds in grouped.items()}


def removal_verdicts(pairs: Iterable[tuple[str, Mapping]], full: str = "full R-MMA") -> pd.DataFrame:
    """R-MMA's summary claims that removing each component lowers HM: per removed component, the reported drop
    (``ablations.csv``, its own recipe on real data), the executed drop HM(full) - HM(without) with its interval, and
    the verdict (holds: the executed drop is above 0)."""
    pairs = list(pairs)
    hm = _mean_hm_by_value(pairs)
    params = {str(v): r.get("trainable_params") for v, r in pairs}
    reported = load_reported("ablations")
    reported = reported[reported["ablation"] == "rmma_components"].set_index("variant")["hm"].astype(float)
    rows = []
    for value, estimate in hm.items():
        if value == full or full not in hm:
            continue
        drop = hm[full] - estimate
        rows.append({
            "removed": value, "trainable params": params.get(value),
            "reported HM drop": round(reported[full] - reported[value], 2) if value in reported.index else None,
            "executed HM drop": round(drop.value, 2), "95% interval": f"[{drop.low:.2f}, {drop.high:.2f}]",
            "verdict": interval_verdict(drop) if value in reported.index else "no claim (perlkit's baseline)",
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- training cost
def _mean_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b) of two sets of independent repeats (bench steps): Welch's interval, its t quantile on the
    Welch-Satterthwaite degrees of freedom (a CPU record has 3 repeats a variant), carried as a widened error."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.inf
    t = t95(df)
    return Estimate(statistics.fmean(a) - statistics.fmean(b), se * t / _Z95)


def _bench_records(records: Mapping[str, Any] | None) -> Mapping[str, Any]:
    from perlkit.bench import load_records  # the committed bench records (data/bench/) unless given

    return load_records() if records is None else records


def component_cost_verdicts(records: Mapping[str, Any] | None = None, method: str = "rmma") -> pd.DataFrame:
    """Where a method's training step spends its time, with the noise of the repeated steps: per bench record that
    timed ``method:<option>`` variants, at its largest batch, the mean step time saved by switching each part off
    (full minus variant, ms per step), its 95% interval over the repeats, and whether the part costs time beyond
    that noise. ``records``: ``perlkit.bench.load_records()`` (the default)."""
    rows = []
    for name, record in sorted(_bench_records(records).items()):
        full = record.methods.get(method)
        if full is None or not full.train_step_ms_samples:
            continue
        batch = max(full.train_step_ms_samples, key=int)
        for label, entry in record.methods.items():
            samples = entry.train_step_ms_samples.get(batch)
            if not label.startswith(f"{method}:") or not samples or len(samples) < 2:
                continue
            saved = _mean_difference(full.train_step_ms_samples[batch], samples)
            verdict = interval_verdict(saved)
            rows.append({"record": f"{record.device_name} ({name})", "batch": int(batch),
                         "switched off": label.split(":", 1)[1], "saved ms / step": round(saved.value, 2),
                         "95% interval": f"[{saved.low:.1f}, {saved.high:.1f}]",
                         "verdict": {HOLDS: "costs time", CONTRADICTED: "slower without it",
                                     NOT_SEEN: "inside the noise"}[verdict]})
    return pd.DataFrame(rows, columns=["record", "batch", "switched off", "saved ms / step", "95% interval",
                                       "verdict"])


def component_cost_conclusion(records: Mapping[str, Any] | None = None, method: str = "rmma",
                              rival: str = "mma") -> str:
    """One computed paragraph per record of ``component_cost_verdicts``: the method's step against the rival's in the
    same record, the parts that cost time beyond the noise and how much of the gap they add up to, and whether the
    rival's step grows with the batch (a step that does not is bound by launches and latency, not arithmetic)."""
    records = _bench_records(records)
    lines = []
    for name, record in sorted(records.items()):
        rows = component_cost_verdicts({name: record}, method)
        if rows.empty:
            continue
        where, batch = rows["record"].iloc[0], int(rows["batch"].iloc[0])
        key = str(batch)
        full = statistics.fmean(record.methods[method].train_step_ms_samples[key])
        costly = rows[rows["verdict"] == "costs time"]
        parts = ", ".join(f"{r['switched off'].split('=')[0]} ({r['saved ms / step']:.1f} ms, {r['95% interval']})"
                          for _, r in costly.iterrows()) or "none"
        name, rival_name = plots.method_label(method), plots.method_label(rival)
        text = f"* **{where}**, batch {batch}: an {name} training step takes {full:.1f} ms"
        other = record.methods.get(rival)
        if other is not None and other.train_step_ms_samples.get(key):
            gap = _mean_difference(record.methods[method].train_step_ms_samples[key],
                                   other.train_step_ms_samples[key])
            text += (f", {rival_name}'s {full - gap.value:.1f} ms (gap {gap.value:.1f} ms, 95% interval "
                     f"[{gap.low:.1f}, {gap.high:.1f}])")
            if len(costly):
                text += f"; the parts beyond the noise add up to {costly['saved ms / step'].sum():.1f} ms of it"
            sizes = sorted(other.train_step_ms_samples, key=int)
            if len(sizes) > 1:
                small, large = sizes[0], sizes[-1]
                ratio = (statistics.fmean(other.train_step_ms_samples[large])
                         / statistics.fmean(other.train_step_ms_samples[small]))
                bound = "launch- and latency-bound" if ratio < 1.5 else "compute-bound"
                text += (f". {rival_name}'s step at batch {large} takes {ratio:.2f}x its time at batch {small} "
                         f"({int(large) // int(small)}x the images): {bound}")
        lines.append(f"{text}. Parts beyond the noise: {parts}.")
    return "\n".join(lines) if lines else f"No committed bench record times {method}'s variants yet."
