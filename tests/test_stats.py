"""t-intervals, Pareto dominance and paired control verdicts, on hand-made numbers (quantiles checked
against values printed by scipy.stats.t.ppf)."""
from __future__ import annotations

import math

import pytest

from bench.reporting.stats import dominators, paired_comparison, strongest_dominator, t_interval, t_quantile

# scipy.stats.t.ppf(0.975, dof) for dof = 1, 2, 4, 9, 29, printed by scipy 1.17.1
SCIPY_T_975 = {1: 12.706204736174705, 2: 4.302652729749464, 4: 2.7764451051977987, 9: 2.2621571627409915,
               29: 2.045229642132703}


@pytest.mark.parametrize("dof", sorted(SCIPY_T_975))
def test_t_quantile_matches_scipy(dof):
    assert t_quantile(0.975, dof) == pytest.approx(SCIPY_T_975[dof], rel=1e-9)


def test_t_interval_of_three_seeds_is_the_textbook_one():
    interval = t_interval([0.90, 0.92, 0.94])
    half = SCIPY_T_975[2] * 0.02 / math.sqrt(3)  # sample std 0.02
    assert interval.n == 3 and interval.mean == pytest.approx(0.92)
    assert (interval.low, interval.high) == (pytest.approx(0.92 - half), pytest.approx(0.92 + half))
    assert interval.format(100) == f"92.00 [{100 * (0.92 - half):.2f}, {100 * (0.92 + half):.2f}]"


def test_a_single_seed_has_no_interval_and_prints_no_spread():
    interval = t_interval([0.9])
    assert interval.n == 1 and not interval.has_spread and math.isnan(interval.low)
    assert interval.format(100) == "90.00"  # no "± 0.00"


def test_dominance_on_the_accuracy_macs_plane():
    macs = [1.0, 2.0, 2.0, 3.0, 0.5, 2.0]
    score = [0.90, 0.95, 0.93, 0.94, 0.80, 0.95]
    dominated = dominators(macs, score)
    assert dominated[0] == [] and dominated[4] == []  # front
    assert dominated[1] == [] and dominated[5] == []  # equal points do not dominate each other
    assert sorted(dominated[2]) == [1, 5]  # same MACs, lower score
    assert sorted(dominated[3]) == [1, 5]  # more MACs, lower score
    assert strongest_dominator(dominated[3], score, macs) in (1, 5)
    assert strongest_dominator([0, 2], score, macs) == 2  # the higher score is named


@pytest.mark.parametrize("gated, control, verdict", [
    ({0: 0.95, 1: 0.96, 2: 0.97}, {0: 0.90, 1: 0.91, 2: 0.91}, "better"),
    ({0: 0.90, 1: 0.91, 2: 0.91}, {0: 0.95, 1: 0.96, 2: 0.97}, "worse"),
    ({0: 0.95, 1: 0.90, 2: 0.93}, {0: 0.91, 1: 0.94, 2: 0.93}, "no evidence"),
    ({0: 0.99}, {0: 0.50}, "no verdict (n = 1)"),  # a 49-point gap from one pair is still no evidence
    ({0: 0.99, 1: 0.98}, {2: 0.5}, "no pairs"),
])
def test_paired_verdicts_follow_the_interval(gated, control, verdict):
    assert paired_comparison(gated, control).verdict == verdict


def test_pairs_are_formed_by_seed_only():
    result = paired_comparison({0: 0.9, 1: 0.8, 5: 0.7}, {1: 0.7, 0: 0.8, 7: 0.1})
    assert result.seeds == (0, 1) and result.difference.mean == pytest.approx(0.1)


def test_a_printed_score_interval_stays_within_what_a_score_can_be():
    wide = t_interval([0.95, 0.99])  # two seeds: t = 12.7 sends the interval past 100 %
    assert wide.high > 1
    assert wide.format(100, bounds=(0.0, 1.0)).endswith(", 100.00]")
    assert wide.format(100) != wide.format(100, bounds=(0.0, 1.0))
