"""MAC counting: fvcore vs FlopCounterMode, the unit table, executed MACs against physically pruned nets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import DynBenchError
from bench.backbones import build_backbone
from bench.gating.gates import GateTrace, relax
from bench.measure.macs import (MacSummary, UncountedOpError, count_macs, executed_macs, flop_counter_macs, unit_table)
from bench.gating.wrappers import BlockGate, NeuronGate, dense_copy, pruned_copy, wrap_blocks
from bench.measure.execution import execution
from tests.models import GATE_KINDS, HashGate, as_double, family, gated, small_backbone  # noqa: F401 (family: fixture)

N_SAMPLES = 4


@pytest.mark.parametrize("kind", [None, "block", "channel", "neuron_light"])
def test_fvcore_agrees_with_flop_counter_mode(family: str, kind: str | None) -> None:
    model = small_backbone(family) if kind is None else gated(family, kind)
    x = model.example_input(1)
    assert count_macs(model, x) == flop_counter_macs(model, x)


@pytest.mark.parametrize("name, in_shape, num_classes, macs", [
    ("resnet20", (3, 32, 32), 10, 40_813_184), ("resmlp", (108,), 2, 145_152), ("textcnn", (256,), 2, 113_246_720),
    pytest.param("segnet", (3, 256, 512), 19, 26_488_995_840, marks=pytest.mark.slow),
])
def test_fvcore_agrees_with_flop_counter_mode_at_default_sizes(name: str, in_shape: tuple, num_classes: int,
                                                                macs: int) -> None:
    model = build_backbone(name, in_shape, num_classes)
    x = model.example_input(1)
    assert count_macs(model, x) == flop_counter_macs(model, x) == macs


@pytest.mark.parametrize("kind", GATE_KINDS)
@torch.no_grad()
def test_executed_macs_equal_fvcore_on_the_physically_pruned_net(family: str, kind: str) -> None:
    model = gated(family, kind)
    model, x = as_double(model, model.example_input(N_SAMPLES, torch.Generator().manual_seed(5)))
    with GateTrace.recording() as trace:
        logits = model(x)
    per_sample = unit_table(model, x[:1]).per_sample(trace)
    assert any(len(trace.stacked(u).unique(dim=0)) > 1 for u in trace.units()), "decisions should differ"
    for n in range(N_SAMPLES):
        pruned = pruned_copy(model, {unit: trace.stacked(unit)[n] for unit in trace.units()})
        assert count_macs(pruned, x[n:n + 1]) == per_sample[n].item()
        torch.testing.assert_close(pruned(x[n:n + 1]), logits[n:n + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("compose", ["skipnet", "no_act"])
@torch.no_grad()
def test_pruned_blocks_keep_each_composition(compose: str) -> None:
    model = wrap_blocks(small_backbone("resnet_cifar"),
                        lambda name, block: BlockGate(block, HashGate(block.pool, block.first[0].in_channels), name, compose))
    model, x = as_double(model, model.example_input(N_SAMPLES))
    with GateTrace.recording() as trace:
        logits = model(x)
    per_sample = unit_table(model, x[:1]).per_sample(trace)
    for n in range(N_SAMPLES):
        pruned = pruned_copy(model, {unit: trace.stacked(unit)[n] for unit in trace.units()})
        assert count_macs(pruned, x[n:n + 1]) == per_sample[n].item()
        torch.testing.assert_close(pruned(x[n:n + 1]), logits[n:n + 1], atol=1e-10, rtol=0)


def test_unit_table_splits_resnet_block_gates_as_in_the_spec() -> None:
    model = gated("resnet_cifar", "block")
    table = unit_table(model, model.example_input(1))
    dense = count_macs(dense_copy(model), model.example_input(1))
    assert table.total == dense + sum(table.gates.values())
    blocks = {u.name: u.macs for u in table.units}
    assert blocks["blocks.0"] == 2 * 8 * 8 * 9 * 16 * 16  # two 3x3 convs, 8 -> 8 channels, 16x16 map
    assert table.always_on == dense - sum(blocks.values())  # stem, projection shortcuts, head
    assert "always-on" in table.format() and "Batch norm" in table.format()


def test_neuron_gate_with_light_path_scales_only_the_host_layer() -> None:
    plain, light = gated("resmlp", "neuron"), gated("resmlp", "neuron_light")
    x = plain.example_input(1)
    assert unit_table(plain, x).units[0].macs == 2 * 16 * 16
    assert unit_table(light, x).units[0].macs == 16 * 16
    assert len(unit_table(light, x).gates) == 2 * len(light.blocks)  # gate and light path of every block


@torch.no_grad()
def test_executed_macs_summary_and_saving() -> None:
    model = gated("resnet_cifar", "block")
    x = model.example_input(16, torch.Generator().manual_seed(0))
    with GateTrace.recording() as trace:
        model(x)
    dense = count_macs(dense_copy(model), x[:1])
    summary = executed_macs(model, x, trace, dense)
    per_sample = unit_table(model, x[:1]).per_sample(trace)
    assert summary.mean == pytest.approx(per_sample.mean().item())
    assert summary.p50 <= summary.p95 and summary.std > 0
    assert 0 < summary.saving < 1


def test_a_trace_with_uneven_sample_counts_is_an_error() -> None:
    model = gated("resmlp", "block")
    x = model.example_input(3)
    with GateTrace.recording() as trace:
        model(x)
        model.blocks[1](model.stem(x[:1]))  # one unit records one extra sample
    with pytest.raises(DynBenchError, match="recorded 4 samples"):
        unit_table(model, x[:1]).per_sample(trace)


def test_counting_inside_a_recording_adds_no_decisions() -> None:
    model = gated("resmlp", "block")
    x = model.example_input(3)
    with GateTrace.recording() as trace:
        model(x)
        unit_table(model, x[:1])
    assert len(trace.stacked("blocks.0")) == 3


def test_executed_macs_of_a_dense_model_is_constant() -> None:
    model = small_backbone("resmlp")
    x = model.example_input(1)
    summary = executed_macs(model, x, GateTrace(), count_macs(model, x))
    assert summary == MacSummary(summary.dense, float(summary.dense), 0.0, float(summary.dense), float(summary.dense))
    assert summary.saving == 0.0


class TinyLSTM(nn.Module):
    def __init__(self, bidirectional: bool = False, layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.cell = nn.LSTMCell(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        h, _ = self.cell(x[:, 0])
        return out.sum() + h.sum()


@pytest.mark.parametrize("bidirectional, layers", [(False, 1), (True, 2)])
def test_lstm_macs_are_added_analytically(bidirectional: bool, layers: int) -> None:
    steps, i, h, dirs = 7, 6, 5, 2 if bidirectional else 1
    per_step = 4 * h * (i + h) + (layers - 1) * 4 * h * (dirs * h + h)
    expected = steps * dirs * per_step + 4 * h * (i + h)  # LSTM over 7 steps + one LSTMCell step
    assert count_macs(TinyLSTM(bidirectional, layers), torch.randn(1, steps, i)) == expected


def test_an_op_outside_the_rule_is_an_error() -> None:
    class Cumsum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.cumsum(0)

    with pytest.raises(UncountedOpError, match="cumsum"):
        count_macs(Cumsum(), torch.randn(3))


class LowRankScores(nn.Module):
    """MID-L-style gate (methods.md §6.2): code u = V x, scores σ(S u), top-k; keeps u for the light path."""

    def __init__(self, d: int, m: int, r: int, k: int) -> None:
        super().__init__()
        self.code, self.scores, self.k = nn.Linear(d, r, bias=False), nn.Linear(r, m), k
        self.last_code: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_code = self.code(x)
        return relax("topk", torch.sigmoid(self.scores(self.last_code)), self.training, k=self.k)


class LightFromCode(nn.Module):
    """Light path h_ℓ = U u reading the gate's code u, so V runs once per sample."""

    def __init__(self, gate: LowRankScores, r: int, m: int) -> None:
        super().__init__()
        self.gate = [gate]  # a plain list: not a submodule, its MACs belong to the gate
        self.up = nn.Linear(r, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.gate[0].last_code)


@pytest.mark.parametrize("light, expected_fraction", [(True, 35584 / 65536), (False, None)])
@torch.no_grad()
def test_neuron_gate_reproduces_the_midl_mac_formula(light: bool, expected_fraction: float | None) -> None:
    """§6.3: per layer r·d + 2·r·m + k·d vs dense m·d; d = m = 256, ρ = 0.45 (k = 115), r = 8 -> 0.54.
    With light=zero the next layer's MACs scale by k/m as well."""
    d = m = 256
    r, k = 8, round(0.45 * 256)
    model = build_backbone("resmlp", (d,), 2, depth=1, width=d).eval()

    def make(name: str, block: nn.Module) -> NeuronGate:
        gate = LowRankScores(d, m, r, k)
        return NeuronGate(block, gate, name, light=LightFromCode(gate, r, m) if light else None)

    wrap_blocks(model, make)
    x = model.example_input(3)
    with GateTrace.recording() as trace:
        masked = model(x)
    table = unit_table(model, x[:1])
    gated_macs = table.per_sample(trace) - table.always_on  # gate, light path and the scaled layers
    if light:  # the second layer reads every unit (light fills the rest): it stays in always_on
        assert (gated_macs / (m * d)).tolist() == pytest.approx([expected_fraction] * 3)
    else:
        assert gated_macs.tolist() == [r * d + r * m + 2 * k * d] * 3
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=0)
