"""MID-L (methods.md §6): top-k neuron masks, light paths, k warm-up, executions, MACs and reports."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.backbones import Backbone, build_backbone
from bench.gating.gate_stats import mean_pairwise_iou
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs, unit_table
from bench.gating.wrappers import NeuronGate, gated_units, pruned_copy
from bench.measure.execution import execution
from tests.methods.common import check_macs_match_pruned, check_masked_equals_skip
from tests.methods.toy import build, eval_trace, plugin, train_briefly, xor_data
from tests.models import as_double

FAMILIES = ("resnet_cifar", "resmlp", "textcnn")
ALL_FAMILIES = (*FAMILIES, pytest.param("segnet", marks=pytest.mark.slow))
LIGHTS = ("lowrank", "zero")
midl = plugin("midl")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("light", LIGHTS)
def test_eval_masks_keep_exactly_k_units_and_repeat(family: str, light: str) -> None:
    _, model = build("midl", family, light=light)
    x = model.example_input(16, torch.Generator().manual_seed(0))
    first, trace = eval_trace(model, x)
    second, _ = eval_trace(model, x)
    assert torch.equal(first, second)
    for unit in gated_units(model):
        mask = trace.stacked(unit.name)
        assert isinstance(unit, NeuronGate) and mask.shape == (16, unit.width)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert mask.sum(1).tolist() == [round(0.45 * unit.width)] * 16
        assert (unit.light is None) == (light == "zero")


@pytest.mark.parametrize("family", FAMILIES)
def test_training_masks_pass_gradients_to_scores_and_light_path(family: str) -> None:
    _, model = build("midl", family)
    model.train()
    x = model.example_input(8, torch.Generator().manual_seed(0))
    with GateTrace.recording() as trace:
        logits = model(x)
    logits.square().mean().backward()
    for unit in gated_units(model):
        assert trace.stacked(unit.name).sum(1).tolist() == [unit.gate.k] * 8  # hard top-k forward in training too
        for part in (unit.gate, unit.light):
            for name, param in part.named_parameters():
                assert param.grad is not None and param.grad.abs().sum() > 0, f"{unit.name}: {name} gets no gradient"


def test_k_warms_up_from_m_to_rho_m() -> None:
    method, model = build("midl", "resmlp", k_warmup_frac=0.2)  # 10 epochs: 2 warm-up epochs
    ks = []
    for epoch in range(4):
        method.on_epoch_start(model, epoch, 10)
        ks.append(gated_units(model)[0].gate.k)
    assert ks == [16, 12, 7, 7]  # m = 16, ρm = round(7.2) = 7, halfway round(11.5) = 12


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("light", LIGHTS)
@torch.no_grad()
def test_skipping_execution_gives_the_masked_logits(family: str, light: str) -> None:
    _, model = build("midl", family, light=light)
    model, x = as_double(model.eval(), model.example_input(32, torch.Generator().manual_seed(1)))
    masked = model(x)
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.cat([model(x[i:i + 1]) for i in range(8)]), masked[:8], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("light", LIGHTS)
def test_executed_macs_follow_the_unit_table_and_the_pruned_network(family: str, light: str) -> None:
    _, model = build("midl", family, light=light)
    x = model.example_input(4, torch.Generator().manual_seed(2))
    _, trace = eval_trace(model, x)
    per_sample = unit_table(model, x[:1]).per_sample(trace)
    for i in range(2):
        decisions = {unit: trace.stacked(unit)[i] for unit in trace.units()}
        assert count_macs(pruned_copy(model, decisions), x[i:i + 1]) == per_sample[i]


@pytest.mark.parametrize("light", LIGHTS)
def test_macs_reproduce_the_spec_formula(light: str) -> None:
    """§6.3: r·d + 2·r·m + k·d per layer (d = m = 256, ρ = 0.45, r = 8: 0.54 of m·d); with light=zero
    the light path's r·m is gone and the next layer reads only k units (k·d more scaled MACs)."""
    d = m = 256
    r, k = 8, round(0.45 * m)
    method = type(build("midl", "resmlp")[0])(light=light)
    model = method.build(build_backbone("resmlp", (d,), 2, depth=1, width=m))
    x = model.example_input(3)
    _, trace = eval_trace(model, x)
    table = unit_table(model, x[:1])
    layer_macs = table.per_sample(trace) - table.always_on
    expected = r * d + 2 * r * m + k * d if light == "lowrank" else r * d + r * m + k * d + k * m
    assert layer_macs.tolist() == [expected] * 3
    if light == "lowrank":
        assert expected / (m * d) == pytest.approx(0.54, abs=0.005)


def test_conv_light_path_and_scores_are_overhead() -> None:
    """§6.4 CNN: scores GAP(x) -> C_in->r->C_out, light 1×1 C_in->r->C_out at conv1's output size."""
    _, model = build("midl", "resnet_cifar")
    table = unit_table(model, model.example_input(1))
    unit = gated_units(model)[0]
    c_in, c_out, rank = unit.block.first[0].in_channels, unit.width, unit.gate.code.out_features
    assert table.gates["blocks.0.gate"] == rank * (c_in + c_out)
    assert table.gates["blocks.0.light"] == rank * (c_in + c_out) * 16 * 16  # 16×16 maps, stride 1
    assert table.units[0].modules == ("blocks.0.block.first",)  # second reads all units: no downstream saving


def test_options_are_validated() -> None:
    method_cls = type(build("midl", "resmlp")[0])
    for bad in ({"rho": 0.0}, {"rho": 1.5}, {"light": "full"}, {"k": 0}, {"k_warmup_frac": 2.0}):
        with pytest.raises(DynBenchError):
            method_cls(**bad)
    with pytest.raises(DynBenchError, match="k=40 exceeds the 16 units"):
        method_cls(k=40).build(build_backbone("resmlp", (12,), 2, depth=1, width=16))
    with pytest.raises(DynBenchError, match="not low-rank"):
        method_cls(rank=32).build(build_backbone("resmlp", (12,), 2, depth=1, width=16))
    with pytest.raises(DynBenchError, match="no such block"):
        method_cls().build(Backbone(torch.nn.Identity(), [], torch.nn.Identity(), (4,), family="empty"))


def test_mean_pairwise_iou() -> None:
    masks = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.float)
    assert mean_pairwise_iou(masks) == pytest.approx((1 / 3 + 1.0 + 1 / 3) / 3)
    assert mean_pairwise_iou(masks[[0, 2]]) == 1.0  # one static mask


def test_masks_stay_input_dependent_on_a_toy_problem() -> None:
    method, model = build("midl", "resmlp")
    x, y = xor_data(512)
    train_briefly(method, model, x, y, steps=40)
    _, trace = eval_trace(model, x)
    report = method.extra_metrics(model, x[:1], trace)
    assert report["mask_iou_mean"] < 0.9
    assert report["gate_share_conditional"] > 0.3
    assert report["active_fraction"] == pytest.approx(7 / 16)
    assert report["k_per_unit"] == {f"blocks.{i}": 7 for i in range(3)}


def test_a_run_record_carries_the_mask_report(tmp_path) -> None:
    from bench.train import make_spec, run

    spec = make_spec("midl", "digits", profile="smoke", max_train_examples=256)
    record, _ = run(spec, tmp_path / "data", tmp_path / "results", device="cpu", progress=False)
    assert {"mask_iou_mean", "gate_share_conditional", "active_fraction"} <= set(record.metrics)
    assert record.metrics["mac_saving"] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_random_topk_keeps_k_random_units_and_counts_no_score_layer(family: str) -> None:
    """The §7 control: the same k per input as MID-L, drawn at random (not from the input), the score
    layer S not run (its MACs gone from the executed count); masked and skipping eval agree."""
    _, learned = build("midl", family)
    _, model = build("midl", family, preset="random_topk")
    x = model.example_input(16, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    _, trace = eval_trace(model, x)
    torch.manual_seed(1)
    _, other = eval_trace(model, x)
    for unit in gated_units(model):
        mask = trace.stacked(unit.name)
        assert mask.sum(1).tolist() == [round(0.45 * unit.width)] * 16
        assert not torch.equal(mask, other.stacked(unit.name))  # a new draw, same inputs: not input-driven
        assert len(mask.unique(dim=0)) > 1  # and not one static mask either
    example = x[:1]
    assert sum(unit_table(model, example).gates.values()) < sum(unit_table(learned, example).gates.values())
    check_masked_equals_skip(model, x[:8], batch1=False)
    check_macs_match_pruned(model, x[:4])
