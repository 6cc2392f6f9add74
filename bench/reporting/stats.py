"""The statistics the leaderboards print: 95 % t-intervals over seeds, Pareto dominance on the accuracy–MACs
plane, and paired comparisons of a gated row with its matched controls (with a verdict only where the
interval says so)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as scipy_stats  # scikit-learn's own dependency: always installed with dynbench

CONFIDENCE = 0.95


def t_quantile(probability: float, dof: int) -> float:
    """The `probability` quantile of Student's t with `dof` degrees of freedom."""
    return float(scipy_stats.t.ppf(probability, dof))


@dataclass(frozen=True)
class Interval:
    """Mean of n values and its two-sided t-interval at `CONFIDENCE`; `low`/`high` are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def has_spread(self) -> bool:
        return self.n >= 2 and not math.isnan(self.low)

    def excludes_zero(self) -> bool:
        return self.has_spread and (self.low > 0 or self.high < 0)

    def format(self, scale: float = 1.0, digits: int = 2, bounds: tuple[float, float] | None = None) -> str:
        """`mean [low, high]`, or the mean alone when there is no spread to show (n = 1). `bounds` cuts the
        printed interval to the values the quantity can take (a score between 0 and 1): with two seeds
        the t-interval easily runs past them."""
        if not self.has_spread:
            return f"{scale * self.mean:.{digits}f}"
        low, high = (self.low, self.high) if bounds is None else (max(self.low, bounds[0]), min(self.high, bounds[1]))
        return f"{scale * self.mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t_{(1+c)/2, n−1} · s / √n (s the sample standard deviation)."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def dominators(macs: Sequence[float], score: Sequence[float]) -> list[list[int]]:
    """For each point, the indices of the points that dominate it: no more MACs and no lower score, better
    on at least one of the two. A point with an empty list is on the accuracy–MACs front."""
    points = list(zip(macs, score))
    return [[j for j, (m2, s2) in enumerate(points) if j != i and m2 <= m and s2 >= s and (m2 < m or s2 > s)]
            for i, (m, s) in enumerate(points)]


def strongest_dominator(dominating: list[int], score: Sequence[float], macs: Sequence[float]) -> int | None:
    """The dominating point a reader should look at: the highest score, then the fewest MACs."""
    if not dominating:
        return None
    return min(dominating, key=lambda j: (-score[j], macs[j]))


@dataclass(frozen=True)
class PairedComparison:
    """Gated minus control score over the seeds both ran, and what the interval allows one to say."""

    difference: Interval
    seeds: tuple[int, ...]

    @property
    def verdict(self) -> str:
        """better / worse only where the t-interval of the paired differences excludes 0; with one pair there
        is no interval and so no verdict."""
        if not self.difference.has_spread:
            return "no verdict (n = 1)" if self.difference.n == 1 else "no pairs"
        if not self.difference.excludes_zero():
            return "no evidence"
        return "better" if self.difference.low > 0 else "worse"


def paired_comparison(gated: dict[int, float], control: dict[int, float]) -> PairedComparison:
    """Pair the two rows' scores by seed (`{seed: score}`); only seeds present in both count."""
    seeds = tuple(sorted(set(gated) & set(control)))
    return PairedComparison(t_interval([gated[s] - control[s] for s in seeds]), seeds)
