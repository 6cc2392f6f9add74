"""Static-small control (methods.md §7): a smaller dense backbone of the same family at a MAC budget."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import DynBenchError, registry
from bench.measure.macs import count_macs
from tests.models import small_backbone

FAMILIES = ["resnet_cifar", "resmlp", "textcnn"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_chosen_net_matches_the_budget_and_runs(family: str) -> None:
    full = small_backbone(family)
    example = full.example_input(2)
    dense = count_macs(full, example[:1])
    macs = {}
    for budget in (0.3, 0.8):
        method = registry.get_method("static_small")(mac_budget=budget)
        model = method.build(small_backbone(family))
        macs[budget] = count_macs(model, example[:1])
        assert macs[budget] == method.chosen["macs"]
        assert abs(macs[budget] / dense - budget) < 0.15  # widths are integers: small nets match coarsely
        assert model(example).shape == full(example).shape
    assert macs[0.3] < macs[0.8] <= dense


def test_the_full_budget_keeps_the_full_net() -> None:
    method = registry.get_method("static_small")(mac_budget=1.0)
    method.build(small_backbone("resnet_cifar"))
    assert (method.chosen["depth"], method.chosen["width"]) == (8, 8)


def test_impossible_budgets_are_clear_errors() -> None:
    static = registry.get_method("static_small")
    for budget in (0.0, -0.2, 1.5):
        with pytest.raises(DynBenchError):
            static(mac_budget=budget)
    with pytest.raises(DynBenchError, match="below the smallest"):
        static(mac_budget=0.01).build(small_backbone("resmlp"))
    with pytest.raises(DynBenchError, match="has none"):
        static().build(nn.Linear(3, 2))
