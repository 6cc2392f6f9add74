"""Static-small control (methods.md §7): a smaller dense backbone of the same family at a MAC budget."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import DynBenchError, registry
from bench.backbones import build_backbone
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
    assert (method.chosen["depth"], method.chosen["widths"]) == (8, (8, 16, 32))


def test_stage_widths_set_one_by_one_build_the_family_net() -> None:
    """At widths 16/32/64 the net is the family's ResNet-20 (same layers, same MACs); other widths land in
    their own stages."""
    from methods.static_small import resnet_stage_widths
    family = build_backbone("resnet20", (3, 16, 16), 10)
    same = resnet_stage_widths((3, 16, 16), 10, 20, (16, 32, 64))
    example = family.example_input(1)
    assert str(same) == str(family) and count_macs(same, example) == count_macs(family, example)
    narrow = resnet_stage_widths((3, 16, 16), 10, 14, (12, 23, 46))
    assert [block.second[0].out_channels for block in narrow.blocks] == [12, 12, 23, 23, 46, 46]
    assert narrow(narrow.example_input(2)).shape == (2, 10)


@pytest.mark.parametrize("budget", [0.35, 0.5, 0.6353, 0.7156, 0.85])
def test_resnet20_budgets_are_matched_within_the_rule(budget: float) -> None:
    """§7: a static net is matched within ±5 % of the budget. Fails on one base width for all stages
    (at 0.7156 its nearest net, base width 14, is 7 % over)."""
    full = build_backbone("resnet20", (3, 16, 16), 10)
    method = registry.get_method("static_small")(mac_budget=budget)
    model = method.build(full)
    dense = count_macs(full, full.example_input(1))
    assert abs(method.chosen["relative_miss"]) <= 0.05
    assert count_macs(model, full.example_input(1)) == method.chosen["macs"]
    assert method.chosen["relative_miss"] == pytest.approx(method.chosen["macs"] / (budget * dense) - 1)


def test_impossible_budgets_are_clear_errors() -> None:
    static = registry.get_method("static_small")
    for budget in (0.0, -0.2, 1.5):
        with pytest.raises(DynBenchError):
            static(mac_budget=budget)
    with pytest.raises(DynBenchError, match="below the smallest"):
        static(mac_budget=0.01).build(small_backbone("resmlp"))
    with pytest.raises(DynBenchError, match="has none"):
        static().build(nn.Linear(3, 2))
