"""Gated wrappers: masked vs physically skipping execution, all-on = dense, all-off = shortcut path."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench import DynBenchError
from bench.gating.gates import GateTrace, LinearGate, RandomGate
from bench.gating.wrappers import COMPOSITIONS, BlockGate, ChannelGate, dense_copy, gated_units, wrap_blocks
from bench.measure.execution import execution
from bench.backbones import build_backbone
from tests.models import GATE_KINDS, HashGate, as_double, family, gated, small_backbone  # noqa: F401 (family: fixture)

N_SAMPLES = 64  # methods.md §9: identical logits on 64 samples, batch 1 and batched


class ConstantGate(nn.Module):
    """Decides `value` for every sample (and channel)."""

    def __init__(self, value: float, channels: int | None = None) -> None:
        super().__init__()
        self.value, self.channels = value, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (len(x),) if self.channels is None else (len(x), self.channels)
        return torch.full(shape, self.value)


@pytest.mark.parametrize("kind", GATE_KINDS)
@torch.no_grad()
def test_skipping_gives_the_masked_logits_batched_and_batch1(family: str, kind: str) -> None:
    model = gated(family, kind)
    model, x = as_double(model, model.example_input(N_SAMPLES, torch.Generator().manual_seed(2)))
    with GateTrace.recording() as trace:
        masked = model(x)
    rates = torch.tensor(list(trace.exec_rate_per_unit().values()))
    assert ((rates > 0) & (rates < 1)).any(), "decisions should differ between samples"
    with execution(model, "skip"):
        batched = model(x)
        one_by_one = torch.cat([model(x[i:i + 1]) for i in range(N_SAMPLES)])
    torch.testing.assert_close(batched, masked, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, masked, atol=1e-5, rtol=0)


@pytest.mark.parametrize("compose", list(COMPOSITIONS))
@torch.no_grad()
def test_every_block_composition_skips_exactly(compose: str) -> None:
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, RandomGate(0.5), name, compose))
    x = model.example_input(N_SAMPLES)
    torch.manual_seed(3)
    masked = model(x)
    with execution(model, "skip"):
        torch.manual_seed(3)
        torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=0)


@pytest.mark.parametrize("compose", list(COMPOSITIONS))
@torch.no_grad()
def test_skipping_never_writes_into_the_block_input(compose: str) -> None:
    block = small_backbone("resnet_cifar").blocks[0]  # identity shortcut: s is x
    unit = BlockGate(block, RandomGate(0.5), "b", compose).eval()
    x = torch.randn(16, 8, 16, 16)
    before = x.clone()
    with execution(unit, "skip"):
        unit(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("kind", ["block", "channel"])
@torch.no_grad()
def test_all_gates_on_equals_the_dense_backbone(family: str, kind: str) -> None:
    dense = small_backbone(family)
    model = copy.deepcopy(dense)
    if kind == "block":
        wrap_blocks(model, lambda name, block: BlockGate(block, ConstantGate(1.0), name))
    else:
        wrap_blocks(model, lambda name, block: ChannelGate(block, ConstantGate(1.0, block.first[0].weight.shape[0]), name))
    x = dense.example_input(4)
    torch.testing.assert_close(model(x), dense(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(dense_copy(model)(x), dense(x), atol=0, rtol=0)


@torch.no_grad()
def test_all_gates_off_reduces_to_stem_shortcuts_head() -> None:
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, ConstantGate(0.0), name))
    x = model.example_input(2)
    h = model.stem(x)
    for unit in gated_units(model):
        h = torch.relu(unit.block.shortcut(h))
    expected = model.head(h)
    torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)


@torch.no_grad()
def test_text_gate_decisions_do_not_depend_on_padding_length() -> None:
    """methods.md §9: gates pool over valid tokens only, so extra padding changes no decision."""
    short = gated("textcnn", "channel")
    longer = build_backbone("textcnn", (40,), 2, depth=2, width=16, embed_dim=8, vocab_size=50)
    longer = wrap_blocks(longer, lambda name, block: ChannelGate(block, HashGate(block.pool, 16, units=16), name))
    longer.load_state_dict(short.state_dict())
    short, tokens = as_double(short, short.example_input(16, torch.Generator().manual_seed(4)))
    longer = longer.double().eval()
    with GateTrace.recording() as trace_short:
        logits = short(tokens)
    with GateTrace.recording() as trace_long:
        padded_logits = longer(torch.cat([tokens, torch.zeros(16, 16, dtype=torch.long)], 1))
    for unit in trace_short.units():
        assert torch.equal(trace_short.stacked(unit), trace_long.stacked(unit))
    torch.testing.assert_close(padded_logits, logits, atol=1e-10, rtol=0)


def test_skipping_refuses_training_mode_and_soft_decisions() -> None:
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, ConstantGate(0.7), name))
    x = model.example_input(2)
    with execution(model, "skip"), pytest.raises(DynBenchError, match="hard 0/1"):
        model(x)
    model.train()
    with execution(model, "skip"), pytest.raises(DynBenchError, match="eval only"):
        model(x)


def test_training_computes_all_and_gates_get_gradients(family: str) -> None:
    model = gated(family, "block").train()
    x = model.example_input(4)
    with GateTrace.recording() as trace:
        out = model(x)
    out.float().mean().backward()
    gates = [m for m in model.modules() if isinstance(m, LinearGate)]
    assert all(g.linear.weight.grad is not None and g.linear.weight.grad.abs().sum() > 0 for g in gates)
    assert set(trace.units()) == set(model.block_names())


@torch.no_grad()
def test_gate_layouts_are_normalised_and_checked() -> None:
    class Column(ConstantGate):  # block decisions as [N, 1]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[:, None]

    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, Column(1.0), name))
    x = model.example_input(3)
    with GateTrace.recording() as trace, execution(model, "skip"):
        model(x)
    assert trace.stacked("blocks.0").shape == (3,)
    wrong = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: ChannelGate(block, ConstantGate(1.0, 3), name))
    with pytest.raises(DynBenchError, match="3 decisions per sample for 8 units"):
        wrong(x)


def test_bad_wrapper_arguments_are_clear_errors() -> None:
    block = small_backbone("resnet_cifar").blocks[0]
    with pytest.raises(DynBenchError, match="composition"):
        BlockGate(block, ConstantGate(1.0), "b", compose="resnet")
    with pytest.raises(DynBenchError, match="execution"):
        with execution(nn.Sequential(), "fast"):
            pass
