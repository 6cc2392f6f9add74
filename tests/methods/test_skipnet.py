"""SkipNet (methods.md §2): gate wiring, SP/HRL phases, the REINFORCE loss, MAC accounting."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench import DynBenchError
from bench.backbones import build_backbone
from bench.gating.gates import GateTrace
from bench.measure.macs import unit_table
from bench.method import StepContext
from bench.gating.wrappers import dense_copy, gated_units
from tests.methods.common import (built, check_eval_hard_and_deterministic, check_macs_match_pruned,
                                  check_masked_equals_skip, eval_trace, force_gates, mean_eval_rate, plugin, toy_train)
from tests.models import small_backbone

FAMILIES = ["resnet_cifar", "resmlp", "textcnn"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("gate", ["rnn", "ff1"])
def test_every_block_but_the_first_is_gated_with_per_sample_decisions(family: str, gate: str) -> None:
    _, model = built("skipnet", family, gate=gate)
    x = model.example_input(6)
    with GateTrace.recording() as trace:
        model.train()(x)
    assert trace.units() == model.block_names()[1:]
    for unit in trace.units():
        assert trace.stacked(unit).shape == (6,)
        p = trace.extra(unit, "p")
        assert p.shape == (6,) and bool(((p > 0) & (p < 1)).all())
    check_eval_hard_and_deterministic(model, x)


def test_the_lstm_state_restarts_every_forward() -> None:
    _, model = built("skipnet", "resmlp")
    x = model.example_input(4)
    with GateTrace.recording() as a:
        model(x)
    with GateTrace.recording() as b:
        model(x)
    for unit in a.units():
        assert torch.equal(a.extra(unit, "p"), b.extra(unit, "p"))


@pytest.mark.parametrize("phase", ["sp", "hrl"])
def test_gradients_reach_the_gate_parameters(phase: str) -> None:
    method, model = built("skipnet", "resmlp", hrl_fraction=1.0 if phase == "hrl" else 0.0)
    method.on_epoch_start(model.train(), 0, 1)
    x = model.example_input(8)
    with GateTrace.recording() as trace:
        logits = model(x)
    per_sample = logits.logsumexp(1) - logits[:, 0]
    extra = method.extra_losses(model, StepContext(x, torch.zeros(8, dtype=torch.long), logits, per_sample, trace, 0, 1, 0, 1))
    assert ("reinforce" in extra) == (phase == "hrl")
    (per_sample.mean() + sum(extra.values(), torch.zeros(()))).backward()
    policy = model.blocks[1].gate.probability.policy
    for parameter in [policy.lstm.weight_ih_l0, policy.head.weight] + [u.gate.probability.project.weight for u in gated_units(model)]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_hrl_samples_bernoulli_decisions_without_a_pathwise_gradient() -> None:
    method, model = built("skipnet", "resmlp", hrl_fraction=1.0)
    method.on_epoch_start(model.train(), 0, 1)
    model(model.example_input(8)).sum().backward()  # the task loss alone
    assert all(p.grad is None or p.grad.abs().sum() == 0 for u in gated_units(model) for p in u.gate.parameters())


def test_reinforce_loss_matches_a_hand_computation() -> None:
    reinforce = plugin("skipnet").reinforce_loss
    p, g, ce = torch.tensor([[0.8, 0.4]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0.5])
    # α = 0.1, N = 2: r = (0, 0.05); R_1 = R_2 = 0.05 − 0.5 = −0.45; log π = (log 0.8, log 0.6)
    expected = 0.45 * (math.log(0.8) + math.log(0.6))
    torch.testing.assert_close(reinforce(p, g, ce, 0.1), torch.tensor(expected), atol=1e-5, rtol=0)
    # ImageNet terminal reward −(α/N)·CE = −0.025: R_1 = R_2 = 0.025
    torch.testing.assert_close(reinforce(p, g, ce, 0.1, "scaled_ce"), torch.tensor(-0.025 * (math.log(0.8) + math.log(0.6))),
                               atol=1e-5, rtol=0)
    # two samples, batch-mean baseline: sample 2 skips both (R = 0.1 − 0.3, 0.05 − 0.3)
    p2, g2, ce2 = torch.tensor([[0.8, 0.4], [0.3, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([0.5, 0.3])
    returns = torch.tensor([[-0.45, -0.45], [-0.2, -0.25]])
    centred = returns - returns.mean(0)
    log_pi = torch.tensor([[math.log(0.8), math.log(0.6)], [math.log(0.7), math.log(0.5)]])
    torch.testing.assert_close(reinforce(p2, g2, ce2, 0.1, baseline="batch_mean"), (-centred * log_pi).sum(1).mean(),
                               atol=1e-5, rtol=0)


def test_the_batch_mean_baseline_turns_the_skip_reward_into_a_per_input_signal() -> None:
    """Both samples skipped their one gate, paying CE 0.1 and 0.5 against α = 1: returns 0.9 and 0.5.
    Without a baseline both skips are reinforced; centred, the costlier one is discouraged."""
    reinforce = plugin("skipnet").reinforce_loss
    skipped, ce = torch.zeros(2, 1), torch.tensor([0.1, 0.5])
    directions = {}
    for baseline in ("none", "batch_mean"):
        p = torch.full((2, 1), 0.5, requires_grad=True)
        reinforce(p, skipped, ce, 1.0, baseline=baseline).backward()
        directions[baseline] = (-p.grad).sign().flatten().tolist()  # a descent step moves p this way
    assert directions == {"none": [-1.0, -1.0], "batch_mean": [-1.0, 1.0]}


def test_the_method_loss_is_w_rl_times_reinforce_on_the_live_gate_values() -> None:
    method, model = built("skipnet", "resmlp", hrl_fraction=1.0, alpha=0.3)
    method.on_epoch_start(model.train(), 0, 1)
    x = model.example_input(8)
    with GateTrace.recording() as trace:
        logits = model(x)
    ce = torch.rand(8)
    extra = method.extra_losses(model, StepContext(x, torch.zeros(8, dtype=torch.long), logits, ce, trace, 0, 1, 0, 1))
    p = torch.stack([trace.extra(u, "p") for u in trace.units()], 1)
    g = torch.stack([trace.stacked(u) for u in trace.units()], 1)
    torch.testing.assert_close(extra["reinforce"].detach(), 0.01 * plugin("skipnet").reinforce_loss(p, g, ce, 0.3))


def test_the_schedule_runs_sp_then_hrl_for_the_last_fraction_of_epochs() -> None:
    method, model = built("skipnet", "resmlp", hrl_fraction=0.3)
    phases = []
    for epoch in range(10):
        method.on_epoch_start(model, epoch, 10)
        phases.append(model.blocks[1].gate.phase)
    assert phases == ["sp"] * 7 + ["hrl"] * 3


def test_a_large_skip_reward_lowers_the_execution_rate() -> None:
    rates = {}
    for alpha in (0.0, 20.0):
        method, model = built("skipnet", "resmlp", hrl_fraction=1.0, alpha=alpha, w_rl=1.0)
        rates[alpha] = mean_eval_rate(toy_train(method, model, epochs=3, steps_per_epoch=10, lr=0.02))
    assert rates[20.0] < rates[0.0]


@pytest.mark.parametrize("head_bias, undecided", [(0.0, 1.0), (8.0, 0.0)])
@torch.no_grad()
def test_records_report_the_eval_distribution_of_gate_probabilities(head_bias: float, undecided: float) -> None:
    """p = 0.5 everywhere (zero head) is fully undecided; a bias of 8 (p ≈ 0.9997) is saturated."""
    method, model = built("skipnet", "resmlp")
    policy = gated_units(model)[0].gate.probability.policy
    policy.head.weight.zero_()
    policy.head.bias.fill_(head_bias)
    x = model.example_input(32, torch.Generator().manual_seed(3))
    _, trace = eval_trace(model, x)
    report = method.extra_metrics(model, x[:1], trace)["gate_probability"]
    assert set(report) == {unit.name for unit in gated_units(model)}
    expected = torch.sigmoid(torch.tensor(head_bias)).item()
    for stats in report.values():
        for key in ("mean", "p05", "p50", "p95"):
            assert stats[key] == pytest.approx(expected, abs=1e-6)
        assert stats["undecided"] == undecided


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_and_skipping_execution_give_identical_logits(family: str) -> None:
    _, model = built("skipnet", family)
    check_masked_equals_skip(model, model.example_input(16, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("gate", ["rnn", "ff2"])
def test_executed_macs_equal_the_pruned_net_and_count_every_gate(gate: str) -> None:
    _, model = built("skipnet", "resnet_cifar", gate=gate)
    x = model.example_input(8, torch.Generator().manual_seed(2))
    check_macs_match_pruned(model, x)
    table = unit_table(model.float(), x[:1].float())
    if gate == "rnn":  # per gate: linear C→10 and head 10→1; the shared LSTM: 4·10·(10+10) per step
        c_in = [u.block.first[0].in_channels for u in gated_units(model)]
        assert sum(table.gates.values()) == sum(10 * c + 10 + 800 for c in c_in)
    assert all(macs > 0 for macs in table.gates.values())


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_all_gates_on_equals_the_dense_backbone(family: str) -> None:
    _, model = built("skipnet", family)
    dense = dense_copy(model)
    force_gates(model, 1.0)
    x = model.example_input(4)
    torch.testing.assert_close(model(x), dense(x), atol=1e-6, rtol=0)


def test_bad_options_and_backbones_are_clear_errors() -> None:
    from bench import registry
    skipnet = registry.get_method("skipnet")
    for options in ({"alpha": -1}, {"hrl_fraction": 1.5}, {"gate": "lstm"}, {"rl_baseline": "critic"}):
        with pytest.raises(DynBenchError):
            skipnet(**options)
    with pytest.raises(DynBenchError, match="no block"):
        skipnet().build(build_backbone("resmlp", (12,), 2, depth=1, width=8))
    with pytest.raises(DynBenchError, match="has none"):
        skipnet().build(nn.Linear(3, 2))
