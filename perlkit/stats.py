"""The 95% intervals of perlkit's tables and verdicts, in one place: an estimate with its standard error and its
per-seed values (a t-interval over seeds when there are several), and the seed interval of a table's rows.

``perlkit.findings`` builds its verdicts on ``Estimate``; the tables of ``perlkit.plots``, ``perlkit.report`` and
the ablation summaries show ``seed_half_width`` / ``seed_half_widths`` beside their means, so a table and a verdict
on the same runs carry the same interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

#: two-sided 95% quantiles of Student's t: every df from 1 to 30 and a few beyond (``t95`` reads them)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
_Z95 = 1.96


def t95(df: float) -> float:
    """Two-sided 95% Student t quantile for ``df`` degrees of freedom (a Welch df is rounded down): exact for 1..30,
    beyond that the quantile of the nearest tabulated df below (slightly wide, never narrow); normal from 1,000."""
    if df >= 1000:
        return _Z95
    return _T95[max(k for k in _T95 if k <= max(1, int(df)))]


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error (per-seed values kept, so several seeds can give a t-interval)."""

    value: float
    se: float
    per_seed: tuple[float, ...] = ()
    #: the seed of each ``per_seed`` value, so that a difference pairs the same seeds; empty: pair by position
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.seeds and len(self.seeds) != len(self.per_seed):
            raise ValueError(f"{len(self.seeds)} seed ids for {len(self.per_seed)} per-seed values")

    @property
    def half_width(self) -> float:
        """Half the 95% interval: t over seeds when there are several, else the normal one on ``se``."""
        if len(self.per_seed) > 1:
            n = len(self.per_seed)
            return t95(n - 1) * statistics.stdev(self.per_seed) / math.sqrt(n)
        return _Z95 * self.se

    @property
    def low(self) -> float:
        return self.value - self.half_width

    @property
    def high(self) -> float:
        return self.value + self.half_width

    def __sub__(self, other: Estimate) -> Estimate:
        # pair seed by seed: the same seed ids on both sides (or none on either, then by position)
        paired = len(self.per_seed) == len(other.per_seed) > 1 and self.seeds == other.seeds
        diffs = tuple(a - b for a, b in zip(self.per_seed, other.per_seed, strict=True)) if paired else ()
        se = math.hypot(self.se, other.se)
        repeats = [len(s) for s in (self.per_seed, other.per_seed) if len(s) > 1]
        if not paired and repeats:  # other seeds on each side: widen to the t quantile of the fewer seeds
            se *= t95(min(repeats) - 1) / _Z95
        return Estimate(self.value - other.value, se, diffs, self.seeds if paired else ())


def seed_half_width(per_seed: Sequence[float]) -> float:
    """Half the 95% t-interval of a mean over seeds (``Estimate.half_width``); NaN with fewer than two seeds. A
    NaN value (a seed one side of a difference lacks) is left out."""
    values = tuple(float(v) for v in per_seed if not math.isnan(float(v)))
    return Estimate(sum(values) / len(values), 0.0, values).half_width if len(values) > 1 else float("nan")


def seed_half_widths(runs: pd.DataFrame, by: str, metric: str) -> pd.Series:
    """Per value of ``by`` (``runs``: one row per run, with ``seed`` and ``metric``; several datasets per seed are
    averaged first): ``seed_half_width`` of its per-seed means, the noise a table's average row carries."""
    per_seed = runs.groupby([by, "seed"], sort=False)[metric].mean()
    return per_seed.groupby(level=by, sort=False).apply(lambda v: seed_half_width(list(v)))
