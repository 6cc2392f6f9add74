"""Plot helpers: distinct colours per row, one marker per method, t-interval bars clipped to what can occur."""
from __future__ import annotations

import numpy as np
import pytest

from bench.reporting.plots import _errors, method_markers, row_colours
from bench.reporting.stats import t_interval


@pytest.mark.parametrize("count", [3, 10, 14, 27, 40])
def test_every_row_gets_its_own_colour(count):
    colours = [tuple(np.round(c, 6)) for c in row_colours(count)]
    assert len(set(colours)) == count


def test_one_marker_per_method_and_fixed_ones_for_the_controls():
    markers = method_markers(["skipnet", "skipnet", "midl", "dense", "random_gate", "static_small", "convnet_aig"])
    assert markers["dense"] == "*" and markers["random_gate"] == "X" and markers["static_small"] == "s"
    learned = [markers[m] for m in ("skipnet", "midl", "convnet_aig")]
    assert len(set(learned)) == 3 and not set(learned) & {"*", "X", "s"}


def test_error_bars_are_the_t_interval_clipped_to_the_possible_range():
    two_seeds = t_interval([0.50, 0.90])  # t = 12.7: 70 ± 254 points, far below 0 and above 100
    three_seeds = t_interval([0.50, 0.52, 0.54])
    bars = _errors([two_seeds, three_seeds, t_interval([0.7])], 100, 100.0)
    assert bars[:, 0] == pytest.approx([70.0, 30.0])  # down to 0 %, up to 100 %
    assert bars[:, 1] == pytest.approx([100 * three_seeds.half_width] * 2)  # unclipped: symmetric
    assert bars[:, 2].tolist() == [0.0, 0.0]  # one seed: no bar
