"""ConvNet-AIG (methods.md §3): gate wiring, target-rate loss by hand, rate follows t, MAC accounting."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import DynBenchError, registry
from bench.gating.gates import GateTrace
from bench.measure.macs import unit_table
from bench.method import StepContext
from bench.gating.wrappers import dense_copy, gated_units
from tests.methods.common import (built, check_eval_hard_and_deterministic, check_macs_match_pruned,
                                  check_masked_equals_skip, force_gates, mean_eval_rate, plugin, toy_train)
from tests.models import small_backbone

FAMILIES = ["resnet_cifar", "resmlp", "textcnn"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_block_is_gated_with_hard_training_decisions(family: str) -> None:
    _, model = built("convnet_aig", family)
    x = model.example_input(6)
    with GateTrace.recording() as trace:
        model.train()(x)
    assert trace.units() == model.block_names()  # CIFAR: all blocks, downsampling ones included (§3.2)
    for unit in trace.units():
        g = trace.stacked(unit)
        assert g.shape == (6,) and bool(((g == 0) | (g == 1)).all())  # hard Gumbel-softmax forward
        assert trace.extra(unit, "p_on").shape == (6,)
    check_eval_hard_and_deterministic(model, x)


def test_the_gate_starts_mostly_on() -> None:
    _, model = built("convnet_aig", "resnet_cifar")
    with torch.no_grad(), GateTrace.recording() as trace:
        model(model.example_input(16))
    p_on = torch.cat([trace.extra(u, "p_on") for u in trace.units()])
    torch.testing.assert_close(p_on.mean(), torch.sigmoid(torch.tensor(1.9)), atol=0.01, rtol=0)  # bias (0.1, 2.0)


def test_segmentation_keeps_the_first_block_of_each_stage_ungated() -> None:
    method = registry.get_method("convnet_aig")()
    targets = method.block_targets(small_backbone("segnet"))
    assert [name for name, t in targets.items() if t == 1.0] == ["blocks.0", "blocks.2", "blocks.4", "blocks.6"]


def test_a_target_of_one_leaves_the_block_ungated() -> None:
    _, model = built("convnet_aig", "resmlp", targets=[1.0, 0.5, 0.5])
    assert [u.name for u in gated_units(model)] == ["blocks.1", "blocks.2"]


def test_target_rate_loss_matches_a_hand_computation() -> None:
    loss = plugin("convnet_aig").target_rate_loss
    gates = [torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 1.0, 0.0])]
    # λ = 2, t = 0.6: ((0.6 − 0.75)² + (0.6 − 0.25)²) / 2 · 2 = 0.145
    torch.testing.assert_close(loss(gates, [0.6, 0.6], 2.0), torch.tensor(0.145))
    torch.testing.assert_close(loss(gates, [0.5, 0.2], 1.0), torch.tensor(((0.5 - 0.75) ** 2 + 0.05 ** 2) / 2))


def test_gradients_reach_the_gates_through_the_straight_through_sample() -> None:
    method, model = built("convnet_aig", "resmlp")
    model.train()
    x = model.example_input(8)
    with GateTrace.recording() as trace:
        logits = model(x)
    targets = torch.zeros(8, dtype=torch.long)
    extra = method.extra_losses(model, StepContext(x, targets, logits, logits[:, 0], trace, 0, 1, 0, 1))
    g = [trace.stacked(u).mean() for u in trace.units()]
    torch.testing.assert_close(extra["target_rate"].detach(), 2.0 * torch.stack([(0.6 - m) ** 2 for m in g]).mean())
    extra["target_rate"].backward()
    for unit in gated_units(model):
        assert unit.gate.logits.weight.grad.abs().sum() > 0 and unit.gate.hidden[0].weight.grad.abs().sum() > 0


def test_the_execution_rate_follows_the_target() -> None:
    rates = {}
    for target in (0.2, 0.9):
        method, model = built("convnet_aig", "resmlp", target=target, weight=5.0)
        rates[target] = mean_eval_rate(toy_train(method, model, epochs=3, steps_per_epoch=10, lr=0.02))
    assert rates[0.2] < rates[0.9]


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_and_skipping_execution_give_identical_logits(family: str) -> None:
    _, model = built("convnet_aig", family)
    for unit in gated_units(model):  # mixed decisions: the fresh gate says "on" for everything
        nn.init.normal_(unit.gate.logits.weight, std=3.0)
        nn.init.zeros_(unit.gate.logits.bias)
    check_masked_equals_skip(model, model.example_input(16, torch.Generator().manual_seed(1)))


def test_executed_macs_equal_the_pruned_net_and_count_the_gates() -> None:
    _, model = built("convnet_aig", "resnet_cifar")
    x = model.example_input(8, torch.Generator().manual_seed(2))
    check_macs_match_pruned(model, x)
    table = unit_table(model.float(), x[:1].float())
    c_in = [u.block.first[0].in_channels for u in gated_units(model)]
    assert list(table.gates.values()) == [16 * c + 32 for c in c_in]  # §3.3: ≈ 16·C_in + 32 per block


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_all_gates_on_equals_the_dense_backbone(family: str) -> None:
    _, model = built("convnet_aig", family)
    dense = dense_copy(model)
    force_gates(model, 1.0)
    x = model.example_input(4)
    torch.testing.assert_close(model(x), dense(x), atol=1e-6, rtol=0)


def test_bad_options_are_clear_errors() -> None:
    aig = registry.get_method("convnet_aig")
    for options in ({"target": -0.1}, {"target": 1.5}, {"targets": [0.5, 2.0]}, {"tau": 0}):
        with pytest.raises(DynBenchError):
            aig(**options)
    with pytest.raises(DynBenchError, match="3 blocks"):
        aig(targets=[0.5, 0.5]).build(small_backbone("resmlp"))
    with pytest.raises(DynBenchError, match="no block"):
        aig(targets=[1.0, 1.0, 1.0]).build(small_backbone("resmlp"))
    with pytest.raises(DynBenchError, match="has none"):
        aig().build(nn.Linear(3, 2))
