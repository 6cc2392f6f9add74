"""Batch-shaping channel gating (methods.md §4): loss terms, curriculum, gates, executions and MACs."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import beta as scipy_beta

from bench import DynBenchError
from bench.backbones import Backbone
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs, unit_table
from bench.method import StepContext
from bench.gating.wrappers import ChannelGate, gated_units, pruned_copy
from bench.measure.execution import execution
from tests.methods.toy import build, eval_trace, plugin, train_briefly, xor_data
from tests.models import SMALL, as_double

FAMILIES = ("resnet_cifar", "resmlp", "textcnn")
ALL_FAMILIES = (*FAMILIES, pytest.param("segnet", marks=pytest.mark.slow))
bas = plugin("batch_shaping")


def test_batch_shaping_loss_vanishes_on_a_prior_sample_and_grows_with_departure() -> None:
    torch.manual_seed(0)
    prior = torch.distributions.Beta(0.6, 0.4).sample((20000, 1))
    losses = [float(bas.batch_shaping_loss(t * prior + (1 - t) * 0.5, 0.6, 0.4)) for t in (1.0, 0.8, 0.5, 0.2, 0.0)]
    assert losses[0] < 1e-4  # CvM of a true sample: O(1/(6N))
    assert losses == sorted(losses) and losses[-1] > 0.05  # shrinking toward 0.5 departs further each time


def test_beta_cdf_matches_scipy_and_its_gradient_is_the_clipped_pdf() -> None:
    x = torch.tensor([0.0, 1e-9, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64, requires_grad=True)
    cdf = bas.BetaCDF.apply(x, 0.6, 0.4)
    assert cdf.detach().numpy() == pytest.approx(scipy_beta.cdf(x.detach().numpy(), 0.6, 0.4), abs=1e-5)
    dense = torch.cat([torch.rand(100000, dtype=torch.float64), torch.logspace(-12, 0, 1000, dtype=torch.float64),
                       1 - torch.logspace(-12, 0, 1000, dtype=torch.float64)])
    for a, b in ((0.6, 0.4), (2.0, 5.0)):
        error = bas.BetaCDF.apply(dense, a, b).numpy() - scipy_beta.cdf(dense.numpy(), a, b)
        assert abs(error).max() < 2e-5
    cdf.sum().backward()
    pdf = scipy_beta.pdf(x.detach().numpy()[2:5], 0.6, 0.4)
    assert x.grad[2:5].numpy() == pytest.approx(pdf, rel=1e-9)
    assert x.grad[[0, 1, 5]].tolist() == [100.0, 100.0, 100.0]  # the singular ends are clipped


def test_the_loss_pulls_sigmoids_of_free_points_to_the_prior() -> None:
    """§4.9: σ of learnable points converges to Beta(0.6, 0.4) in a few hundred Adam steps."""
    torch.manual_seed(0)
    z = torch.randn(256, 1, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=0.05)
    start = float(bas.batch_shaping_loss(torch.sigmoid(z), 0.6, 0.4).detach())
    for _ in range(300):
        loss = bas.batch_shaping_loss(torch.sigmoid(z), 0.6, 0.4).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.01 * start
    assert float(torch.sigmoid(z).detach().mean()) == pytest.approx(0.6, abs=0.03)  # the prior's mean


def test_curriculum_follows_the_spec_schedule() -> None:
    """§4.5 with epochs 100 / 300 of 500 as fractions 0.2 / 0.6: γ 0.75 -> 0 by 0.2, λ 0 -> λ over 0.2..0.6."""
    schedule = [bas.curriculum(p, 0.75, 0.2, 0.3, 0.2, 0.6) for p in (0.0, 0.1, 0.2, 0.4, 0.6, 0.9)]
    gammas, lambdas = zip(*schedule)
    assert gammas == pytest.approx([0.75, 0.375, 0.0, 0.0, 0.0, 0.0])
    assert lambdas == pytest.approx([0.0, 0.0, 0.0, 0.15, 0.3, 0.3])


def step_context(model: torch.nn.Module, x: torch.Tensor, step: int, total_steps: int) -> StepContext:
    model.train()
    with GateTrace.recording() as trace:
        logits = model(x)
    return StepContext(x, torch.zeros(len(x), dtype=torch.long), logits, logits.sum(1), trace, 0, 1, step, total_steps)


def test_l0_and_batch_shaping_terms_match_a_hand_computation() -> None:
    method, model = build("batch_shaping", "resmlp", l0_weight=0.3, bs_weight=0.75)
    x = model.example_input(32, torch.Generator().manual_seed(0))
    context = step_context(model, x, step=1, total_steps=10)  # progress 0.1: γ = 0.375, λ = 0
    gate = gated_units(model)[0].gate  # noise-free σ(z) by hand for the first block (its input: the stem's output)
    with torch.no_grad():
        hand = torch.sigmoid(gate.expand(torch.relu(gate.norm(gate.reduce(model.stem(x))))))
    torch.testing.assert_close(gate.last_prob.detach(), hand)
    probs = [unit.gate.last_prob for unit in gated_units(model)]
    losses = method.extra_losses(model, context)
    assert losses["l0"].detach().item() == 0.0
    hand_bs = 0.0
    for p in probs:
        n = len(p)
        ecdf = torch.arange(1, n + 1, dtype=torch.float64).div(n + 1).unsqueeze(1)
        prior = torch.from_numpy(scipy_beta.cdf(p.detach().double().sort(0).values.numpy(), 0.6, 0.4))
        hand_bs += float(((ecdf - prior) ** 2).mean(0).mean())  # mean over a layer's gates, summed over layers
    assert losses["batch_shaping"].detach().item() == pytest.approx(0.375 * hand_bs, rel=1e-5)

    losses = method.extra_losses(model, step_context(model, x, step=9, total_steps=10))  # λ = 0.3, γ = 0
    probs = [unit.gate.last_prob for unit in gated_units(model)]
    hand_l0 = sum(float(p.detach().sum()) for p in probs) / sum(p.numel() for p in probs)
    assert float(losses["l0"].detach()) == pytest.approx(0.3 * hand_l0, rel=1e-6)
    assert float(losses["batch_shaping"].detach()) == 0.0


def test_l0_only_ablation_has_no_batch_shaping_term() -> None:
    method, model = build("batch_shaping", "resmlp", "l0_only")
    losses = method.extra_losses(model, step_context(model, model.example_input(16), 0, 10))
    assert set(losses) == {"l0"}


def test_bs_memory_adds_detached_earlier_batches() -> None:
    method, model = build("batch_shaping", "resmlp", bs_memory=2)
    for step in range(3):
        method.extra_losses(model, step_context(model, model.example_input(16, torch.Generator().manual_seed(step)), 0, 10))
    memory = method.memory["blocks.0"]
    assert len(memory) == 2 and all(not m.requires_grad for m in memory)


@pytest.mark.parametrize("family", FAMILIES)
def test_gates_have_one_decision_per_channel_and_gradients_reach_them(family: str) -> None:
    method, model = build("batch_shaping", family)
    x = model.example_input(8, torch.Generator().manual_seed(0))
    context = step_context(model, x, step=0, total_steps=10)
    for unit in gated_units(model):
        assert isinstance(unit, ChannelGate)
        assert context.trace.stacked(unit.name).shape == (8, unit.width)
        assert context.trace.extra(unit.name, "prob").shape == (8, unit.width)
        assert set(context.trace.stacked(unit.name).unique().tolist()) <= {0.0, 1.0}  # hard in training too (ST)
    loss = context.logits.square().mean() + sum(method.extra_losses(model, context).values())
    loss.backward()
    for unit in gated_units(model):
        for name, param in unit.gate.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{unit.name}.gate.{name} gets no gradient"


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_gates_are_hard_noise_free_and_repeatable(family: str) -> None:
    _, model = build("batch_shaping", family)
    x = model.example_input(16, torch.Generator().manual_seed(0))
    first, trace = eval_trace(model, x)
    second, _ = eval_trace(model, x)
    assert torch.equal(first, second)
    for unit in trace.units():
        assert torch.equal(trace.stacked(unit), (trace.extra(unit, "prob") > 0.5).float())  # σ(z) > 0.5


@pytest.mark.parametrize("family", ALL_FAMILIES)
@torch.no_grad()
def test_skipping_execution_gives_the_masked_logits(family: str) -> None:
    _, model = build("batch_shaping", family)
    model, x = as_double(model.eval(), model.example_input(32, torch.Generator().manual_seed(1)))
    masked = model(x)
    with execution(model, "skip"):
        torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.cat([model(x[i:i + 1]) for i in range(8)]), masked[:8], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_executed_macs_follow_the_unit_table_and_the_pruned_network(family: str) -> None:
    _, model = build("batch_shaping", family)
    x = model.example_input(4, torch.Generator().manual_seed(2))
    _, trace = eval_trace(model, x)
    table = unit_table(model, x[:1])
    per_sample = table.per_sample(trace)
    for i in range(3):
        decisions = {unit: trace.stacked(unit)[i] for unit in trace.units()}
        assert count_macs(pruned_copy(model, decisions), x[i:i + 1]) == per_sample[i]
    # §4.7: a block's conv1 and conv2 scale with its kept fraction; the gate MLP is overhead
    unit = table.units[0]
    assert unit.modules == ("blocks.0.block.first", "blocks.0.block.second")
    assert table.gates["blocks.0.gate"] > 0


def test_options_are_validated() -> None:
    method_cls = type(build("batch_shaping", "resmlp")[0])
    with pytest.raises(DynBenchError, match="l0_weight must be >= 0"):
        method_cls(l0_weight=-0.1)
    with pytest.raises(DynBenchError, match="bs_reduce"):
        method_cls(bs_reduce="median")
    with pytest.raises(DynBenchError, match="no such block"):
        method_cls().build(Backbone(torch.nn.Identity(), [], torch.nn.Identity(), (4,), family="empty"))


def test_gates_turn_conditional_on_a_toy_problem() -> None:
    """A few dozen steps with batch-shaping leave many gates on for some inputs and off for others."""
    method, model = build("batch_shaping", "resmlp")
    x, y = xor_data(512)
    train_briefly(method, model, x, y, steps=40)
    _, trace = eval_trace(model, x)
    report = method.extra_metrics(model, x[:1], trace)
    assert report["gate_share_conditional"] > 0.3
    assert sum(report[f"gate_share_{k}"] for k in ("always_on", "conditional", "always_off")) == pytest.approx(1.0)
    assert 0.0 < report["active_fraction"] < 1.0


def test_a_run_record_carries_the_gate_report(tmp_path) -> None:
    from bench.train import make_spec, run

    spec = make_spec("batch_shaping", "digits", profile="smoke", max_train_examples=256)
    record, _ = run(spec, tmp_path / "data", tmp_path / "results", device="cpu", progress=False)
    assert {"gate_share_always_on", "gate_share_conditional", "active_fraction"} <= set(record.metrics)
    assert record.metrics["mac_saving"] > 0
