"""The timed execution paths (`bench.measure.execution`): every batched path (all on, all off, gather, grouped
masks, union of channels), the channels-last gather/scatter, batch-norm folding and traced gates give the
masked outputs and decisions."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.gating.gates import GateTrace, RandomGate
from bench.gating.wrappers import BlockGate, ChannelGate, gated_units, gates_forced, wrap_blocks
from bench.measure import execution as execution_module
from bench.measure.execution import compiled_gates, execution, fold_batchnorm, gather, scatter_
from tests.models import GATE_KINDS, as_double, gated, small_backbone


class ParityMask(nn.Module):
    """Two channel masks only: even samples keep the first quarter of the channels, odd ones the second."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.zeros(len(x), self.channels)
        quarter = max(1, self.channels // 4)
        g[0::2, :quarter] = 1
        g[1::2, quarter:2 * quarter] = 1
        return g


@pytest.mark.parametrize("forced", [None, 1.0, 0.0])
@pytest.mark.parametrize("kind", GATE_KINDS)
@torch.no_grad()
def test_every_batched_path_gives_the_masked_outputs(kind, forced):
    model, x = as_double(gated("resnet_cifar", kind), small_backbone("resnet_cifar").example_input(32))
    with gates_forced(model, forced) if forced is not None else torch.no_grad():
        masked = model(x)
        with execution(model, "skip"):
            torch.testing.assert_close(model(x), masked, atol=1e-9, rtol=0)
            torch.testing.assert_close(model(x[:1]), masked[:1], atol=1e-9, rtol=0)


@torch.no_grad()
def test_few_distinct_channel_masks_run_as_groups_and_many_as_their_union(monkeypatch):
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: ChannelGate(
        block, ParityMask(block.first[0].out_channels), name)).double().eval()
    x = model.example_input(6).double()
    masked = model(x)
    calls = []
    original = execution_module.sliced_branch
    monkeypatch.setattr(execution_module, "sliced_branch",
                        lambda *args, **kwargs: calls.append(kwargs.get("mask") is not None) or original(*args, **kwargs))
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), masked, atol=1e-9, rtol=0)
    assert calls and not any(calls)  # two masks: two groups per unit, no union
    calls.clear()
    monkeypatch.setattr(execution_module, "GROUPS_MAX", 1)
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), masked, atol=1e-9, rtol=0)
    assert calls and all(calls)  # one union per unit, masked per sample


def test_channels_last_gather_and_scatter_keep_the_format_and_the_values():
    x = torch.randn(8, 5, 4, 3).contiguous(memory_format=torch.channels_last)
    index = torch.tensor([6, 1, 3])
    picked = gather(x, index)
    assert picked.is_contiguous(memory_format=torch.channels_last) and torch.equal(picked, x.index_select(0, index))
    out = torch.zeros_like(x)
    scatter_(out, index, picked)
    expected = torch.zeros(8, 5, 4, 3).index_copy_(0, index, x.index_select(0, index))
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, expected)


@torch.no_grad()
def test_folding_batch_norms_keeps_outputs_and_leaves_gates_alone():
    model = gated("resnet_cifar", "block")
    for module in model.modules():  # statistics that differ from the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = model.example_input(8)
    with GateTrace.recording() as before:
        expected = model(x)
    folded = fold_batchnorm(copy.deepcopy(model))
    with GateTrace.recording() as after:
        torch.testing.assert_close(folded(x), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for unit in gated_units(folded) for m in unit.block.modules())
    for unit in before.units():
        assert torch.equal(before.stacked(unit), after.stacked(unit))


@torch.no_grad()
def test_traced_gates_are_used_only_where_they_decide_as_the_trained_ones_and_are_faster(monkeypatch):
    model = gated("resnet_cifar", "block")
    samples = [model.example_input(8)]
    eager = [unit.gate for unit in gated_units(model)]
    monkeypatch.setattr(execution_module, "_faster", lambda traced, gate, x: True)
    with compiled_gates(model, samples) as gates:
        assert gates.checked and all(isinstance(unit.gate, torch.jit.ScriptModule) for unit in gated_units(model))
        assert gates.traced == [unit.name for unit in gated_units(model)]
    assert [unit.gate for unit in gated_units(model)] == eager
    monkeypatch.setattr(execution_module, "_faster", lambda traced, gate, x: False)
    with compiled_gates(model, samples) as gates:
        assert gates.checked and gates.traced == [] and [unit.gate for unit in gated_units(model)] == eager

    class Counting(nn.Module):  # decides from a call counter: a trace freezes the count, so it must stay eager
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return torch.full((len(x),), float(self.calls % 2))

    stateful = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, Counting(), name)).eval()
    with compiled_gates(stateful, [stateful.example_input(4), stateful.example_input(4)]) as gates:
        assert not gates.checked and gates.traced == []
        assert all(isinstance(unit.gate, Counting) for unit in gated_units(stateful))


@torch.no_grad()
def test_a_mix_of_traced_and_eager_gates_is_kept_when_it_decides_as_the_trained_gates(monkeypatch):
    """Where only some traces are faster, those gates run traced and the rest eagerly; the record names them."""
    model = gated("resnet_cifar", "block")
    samples = [model.example_input(8), model.example_input(8)]
    units = gated_units(model)
    assert len(units) >= 2
    eager = [unit.gate for unit in units]
    with GateTrace.recording() as trained:
        for x in samples:
            model(x)
    monkeypatch.setattr(execution_module, "_faster", lambda traced, gate, x: gate is eager[0])  # only the first
    with compiled_gates(model, samples) as gates, GateTrace.recording() as mixed:
        assert gates.checked and gates.traced == [units[0].name]
        assert isinstance(units[0].gate, torch.jit.ScriptModule) and units[1:] and \
            [unit.gate for unit in units[1:]] == eager[1:]
        for x in samples:
            model(x)
    for unit in trained.units():
        assert torch.equal(trained.stacked(unit), mixed.stacked(unit))
    assert [unit.gate for unit in units] == eager


@torch.no_grad()
def test_random_gates_can_be_traced_and_draw_as_before():
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, RandomGate(0.5), name)).eval()
    with compiled_gates(model, [model.example_input(16)]) as gates:
        assert gates.checked
