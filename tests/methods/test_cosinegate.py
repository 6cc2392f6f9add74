"""CosineGate (methods.md §5): CIR, losses by hand, FLOPs-term gradients (the notebook bug), MACs
(faithful: the branch always runs; realizable: real skipping), macs_nominal."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench import DynBenchError, registry
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs, unit_table
from bench.method import StepContext
from bench.gating.wrappers import dense_copy, gated_units
from tests.methods.common import (built, check_eval_hard_and_deterministic, check_macs_match_pruned,
                                  check_masked_equals_skip, eval_trace, plugin, toy_train)

FAMILIES = ["resnet_cifar", "resmlp", "textcnn"]


def step_context(model: nn.Module, x: torch.Tensor, epoch: int = 100, num_epochs: int = 200) -> tuple[StepContext, GateTrace]:
    with GateTrace.recording() as trace:
        logits = model.train()(x)
    targets = torch.zeros(len(x), dtype=torch.long)
    return StepContext(x, targets, logits, logits.logsumexp(1) - logits[:, 0], trace, epoch, num_epochs, 0, 1), trace


def open_gates(model: nn.Module) -> None:
    """z = CIR + c(x) with c ≈ 100: every gate on (σ(z) ≈ 1 > 0.42)."""
    for unit in gated_units(model):
        unit.gate.scale.data.fill_(1.0)
        unit.gate.controller[-1].bias.data.fill_(100.0)


def mix_gates(model: nn.Module) -> None:
    """Large logits of both signs, so decisions differ between samples and sit far from the threshold."""
    generator = torch.Generator().manual_seed(0)
    for unit in gated_units(model):
        unit.gate.scale.data.fill_(20.0)
        for layer in [*unit.gate.controller, *(unit.gate.predictor or [])]:
            if isinstance(layer, nn.Linear):
                layer.weight.data.normal_(0, 1, generator=generator)
        unit.gate.controller[-1].bias.data.fill_(-1.0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("realizable", [False, True])
def test_every_block_is_gated_and_starts_near_all_shortcuts(family: str, realizable: bool) -> None:
    _, model = built("cosinegate", family, realizable=realizable)
    x = model.example_input(6)
    with GateTrace.recording() as trace:
        model.train()(x)
    assert trace.units() == model.block_names()
    for unit in trace.units():
        g, cir = trace.stacked(unit), trace.extra(unit, "cir")
        assert g.shape == cir.shape == (6,)
        assert bool(((cir >= 0) & (cir <= 2)).all()) and bool(((g > 0) & (g < 1)).all())  # soft in training
        assert trace.extra(unit, "p").mean() < 0.3  # s_b = −2.2: z ≈ −2.2·CIR at the start (§5.3)
    check_eval_hard_and_deterministic(model, x)


def test_cir_is_one_minus_the_cosine() -> None:
    cir = plugin("cosinegate").cosine_incompatibility
    s = torch.tensor([[1.0, 0.0], [1.0, 2.0], [1.0, 2.0]])
    r = torch.tensor([[0.0, 3.0], [2.0, 4.0], [-1.0, -2.0]])
    torch.testing.assert_close(cir(s, r), torch.tensor([1.0, 0.0, 2.0]))


def test_consistency_loss_matches_a_hand_computation() -> None:
    consistency = plugin("cosinegate").consistency_loss
    # normalise([3, 4]) = [0.6, 0.8], normalise([3, 0]) = [1, 0]: MSE = (0.4² + 0.8²) / 2 = 0.4
    pairs = [(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0]])), (torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]]))]
    terms = [plugin("cosinegate").normalized_mse(full, gated) for full, gated in pairs]
    torch.testing.assert_close(consistency(terms, "all"), torch.tensor(0.2))
    torch.testing.assert_close(consistency(terms, "last"), torch.tensor(0.0))


def test_flops_loss_matches_a_hand_computation() -> None:
    flops = plugin("cosinegate").flops_loss
    gates = [torch.tensor([0.9, 0.7]), torch.tensor([0.5, 0.5])]  # r = (0.8 + 0.5) / 2 = 0.65
    torch.testing.assert_close(flops(gates, 0.5, 2.5, progress=0.08, ramp_fraction=0.16), torch.tensor(2.5 * 0.5 * 0.15 ** 2))
    torch.testing.assert_close(flops(gates, 0.5, 2.5, progress=0.32, ramp_fraction=0.16), torch.tensor(2.5 * 0.15 ** 2))
    assert flops(gates, 0.7, 2.5, progress=0.32, ramp_fraction=0.16) == 0  # hinge: below the target costs nothing
    assert flops(gates, 0.5, 2.5, progress=0.0, ramp_fraction=0.16) == 0


@pytest.mark.parametrize("num_epochs", [5, 15, 250])
def test_the_compute_term_ramps_over_the_same_fraction_of_short_and_long_runs(num_epochs: int) -> None:
    """The ramp is in run fractions (16 %, the notebook's 40 of 250 epochs): at 32 % of any run the FLOPs
    term acts at full weight (in absolute epochs a 15-epoch run stayed below 0.35 and 5-epoch runs at 0.1)."""
    method, model = built("cosinegate", "resmlp", target=0.0)
    x = model.example_input(8, torch.Generator().manual_seed(0))
    epoch = round(0.32 * num_epochs)
    context, trace = step_context(model, x, epoch=epoch, num_epochs=num_epochs)
    rate = torch.stack([trace.stacked(u).mean() for u in trace.units()]).mean()
    ramp = min(1.0, epoch / num_epochs / 0.16)
    torch.testing.assert_close(method.extra_losses(model, context)["flops"].detach(), 2.5 * ramp * rate ** 2)
    assert ramp == 1.0
    first, _ = step_context(model, x, epoch=0, num_epochs=num_epochs)
    assert method.extra_losses(model, first)["flops"] == 0  # the ramp starts at 0, as in the notebook


def test_the_method_losses_use_this_steps_gates() -> None:
    method, model = built("cosinegate", "resmlp", target=0.0, flops_ramp_fraction=0)
    context, trace = step_context(model, model.example_input(8))
    losses = method.extra_losses(model, context)
    rate = torch.stack([trace.stacked(u).mean() for u in trace.units()]).mean()
    torch.testing.assert_close(losses["flops"].detach(), 2.5 * rate ** 2)
    assert losses["consistency"] > 0


@pytest.mark.parametrize("flops_grad", [True, False])
def test_the_flops_term_trains_the_gates_only_when_flops_grad(flops_grad: bool) -> None:
    """§5.8: the notebook's float(r) leaves the FLOPs term without gradient."""
    method, model = built("cosinegate", "resmlp", target=0.0, flops_ramp_fraction=0, flops_grad=flops_grad)
    context, _ = step_context(model, model.example_input(8))
    loss = method.extra_losses(model, context)["flops"]
    assert loss > 0
    if flops_grad:
        loss.backward()
    for unit in gated_units(model):
        for parameter in (unit.gate.scale, unit.gate.controller[0].weight):
            grad = parameter.grad.abs().sum() if parameter.grad is not None else torch.tensor(0.0)
            assert (grad > 0) == flops_grad


def test_gradients_reach_the_gates_from_the_task_loss_and_the_cir_predictor() -> None:
    method, model = built("cosinegate", "resmlp", realizable=True)
    context, _ = step_context(model, model.example_input(8))
    losses = method.extra_losses(model, context)
    (context.per_sample_loss.mean() + sum(losses.values())).backward()
    for unit in gated_units(model):
        assert unit.gate.scale.grad.abs() > 0 and unit.gate.predictor[0].weight.grad.abs().sum() > 0


def test_the_mean_gate_follows_the_target() -> None:
    probs = {}
    for target in (0.0, 1.0):
        method, model = built("cosinegate", "resmlp", target=target, flops_weight=20.0, flops_ramp_fraction=0)
        toy_train(method, model, epochs=3, steps_per_epoch=10, lr=0.02)
        x = model.example_input(64, torch.Generator().manual_seed(3))
        _, trace = eval_trace(model, x)
        probs[target] = torch.stack([trace.extra(u, "p").mean() for u in trace.units()]).mean()
    assert probs[0.0] < probs[1.0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("realizable", [False, True])
def test_masked_and_skipping_execution_give_identical_logits(family: str, realizable: bool) -> None:
    _, model = built("cosinegate", family, realizable=realizable)
    mix_gates(model)
    x = model.example_input(16, torch.Generator().manual_seed(1))
    _, trace = eval_trace(model, x)
    assert any(0 < trace.stacked(u).mean() < 1 for u in trace.units()), "decisions should differ between samples"
    check_masked_equals_skip(model, x)


def test_faithful_macs_run_every_branch_and_count_controllers_and_cir() -> None:
    _, model = built("cosinegate", "resmlp")
    mix_gates(model)
    x = model.example_input(8, torch.Generator().manual_seed(2))
    dense = count_macs(dense_copy(model), x[:1])
    per_sample = check_macs_match_pruned(model, x)  # (turns the model to float64)
    width = model.blocks[0].block.first[0].in_features
    controller, cir = width * 64 + 64 * 32 + 32, 3 * width  # §5.3 controller; CIR: three dot products of D = width
    assert bool((per_sample == dense + len(model.blocks) * (controller + cir)).all())  # saving < 0 (§5.6)


def test_realizable_macs_skip_the_branch() -> None:
    _, model = built("cosinegate", "resnet_cifar", realizable=True)
    mix_gates(model)
    x = model.example_input(8, torch.Generator().manual_seed(2))
    dense = count_macs(dense_copy(model), x[:1])
    assert check_macs_match_pruned(model, x).min() < dense


def test_macs_nominal_counts_only_executed_branches() -> None:
    method, model = built("cosinegate", "resmlp")
    mix_gates(model)
    x = model.example_input(16, torch.Generator().manual_seed(2))
    _, trace = eval_trace(model, x)
    metrics = method.extra_metrics(model, x[:1], trace)
    branch = 2 * 16 * 16  # resmlp width 16: two linears per branch
    always_on = count_macs(dense_copy(model), x[:1]) - len(model.blocks) * branch
    expected = always_on + branch * sum(trace.stacked(u).mean() for u in trace.units())
    assert math.isclose(metrics["macs_nominal"]["mean"], float(expected), rel_tol=1e-9)
    assert set(metrics["gate_scale_per_unit"]) == set(model.block_names())
    assert 0 < metrics["paper_metric"]["value"] < 1


@pytest.mark.parametrize("composition", ["aig", "no_act"])
@torch.no_grad()
def test_all_gates_on_equals_the_dense_block_of_its_composition(composition: str) -> None:
    _, model = built("cosinegate", "resnet_cifar", composition=composition)
    dense = dense_copy(model)
    if composition == "no_act":  # the notebook's dense baseline has no ReLU after the addition (§0.1)
        for block in dense.blocks:
            block.act = nn.Identity()
    open_gates(model)
    x = model.example_input(4)
    torch.testing.assert_close(model(x), dense(x), atol=1e-6, rtol=0)


def test_input_noise_consistency_runs_a_second_forward() -> None:
    method, model = built("cosinegate", "resmlp", cons_type="input_noise")
    context, _ = step_context(model, model.example_input(8))
    assert method.extra_losses(model, context)["consistency"] > 0
    method, model = built("cosinegate", "textcnn", cons_type="input_noise")
    context, _ = step_context(model, model.example_input(8))
    with pytest.raises(DynBenchError, match="float inputs"):
        method.extra_losses(model, context)


def test_presets_and_bad_options() -> None:
    cosinegate = registry.get_method("cosinegate")
    assert cosinegate("notebook_exact").config["flops_grad"] is False
    assert cosinegate("realizable_aggressive").config == {**cosinegate().config, "target": 0.6, "flops_weight": 5.0,
                                                          "realizable": True}
    for options in ({"target": 1.5}, {"threshold": -0.1}, {"composition": "relu"}, {"cons_blocks": "first"},
                    {"flops_weight": -1.0}):
        with pytest.raises(DynBenchError):
            cosinegate(**options)
    with pytest.raises(DynBenchError, match="has none"):
        cosinegate().build(nn.Linear(3, 2))


def test_the_training_cir_and_consistency_equal_the_counted_forms_on_nhwc_maps() -> None:
    """Training computes CIR and the consistency term by per-sample reductions (no flattened copies); the
    values equal the bmm CIR that eval counts and F.mse_loss of F.normalize, zero maps included."""
    import torch.nn.functional as F

    module = plugin("cosinegate")
    torch.manual_seed(0)
    s, r = (torch.randn(5, 8, 6, 6).contiguous(memory_format=torch.channels_last) for _ in range(2))
    r[0] = -2 * s[0]
    torch.testing.assert_close(module.cosine_incompatibility_fast(s, r), module.cosine_incompatibility(s, r))
    assert module.cosine_incompatibility_fast(s, r)[0].item() == pytest.approx(2.0)
    r[1] = 0.0  # a zero map: F.normalize leaves it 0
    for a, b in ((s, r), (r, s), (torch.zeros_like(s), torch.zeros_like(s))):
        expected = F.mse_loss(F.normalize(a.flatten(1)), F.normalize(b.flatten(1)))
        torch.testing.assert_close(module.normalized_mse(a, b), expected)
    a, b = s.clone().requires_grad_(), r.clone().requires_grad_()
    (module.normalized_mse(a, b) + module.cosine_incompatibility_fast(a, b).sum()).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_the_gate_uses_the_counted_cir_at_eval_and_the_fast_one_in_training(monkeypatch) -> None:
    module = plugin("cosinegate")
    cir = module.CosineIncompatibility()
    s, r = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    calls = []
    original = module.cosine_incompatibility
    monkeypatch.setattr(module, "cosine_incompatibility", lambda *args: calls.append("bmm") or original(*args))
    cir.eval()(s, r, None)
    cir.train()(s, r, None)
    assert calls == ["bmm"]


def test_the_no_act_consistency_from_the_cir_reductions_equals_the_map_form() -> None:
    """A no_act block's consistency term comes from the |s|, |r|, <s, r> the CIR already reduced: same value
    and gradients (maps and gates) as normalized_mse(s + r, s + g·r), gates 0 and 1 included; None where the
    residual cancels the shortcut (the sums would lose the digits the maps keep)."""
    module = plugin("cosinegate")
    torch.manual_seed(0)
    s, r = (torch.randn(6, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_() for _ in range(2))
    g = torch.tensor([0.0, 1.0, 0.3, 0.7, 0.5, 0.05], requires_grad=True)
    fast = module.no_act_consistency(*module.branch_reductions(s, r), g, s[0].numel())
    fast_grads = torch.autograd.grad(fast, (s, r, g))
    maps = module.normalized_mse(s + r, s + g.view(-1, 1, 1, 1) * r)
    map_grads = torch.autograd.grad(maps, (s, r, g))
    torch.testing.assert_close(fast, maps)
    for fast_grad, map_grad in zip(fast_grads, map_grads):
        torch.testing.assert_close(fast_grad, map_grad, rtol=1e-4, atol=1e-6)
    cancelling = (-s).detach() + 1e-3 * torch.randn_like(s)
    assert module.no_act_consistency(*module.branch_reductions(s, cancelling), g, s[0].numel()) is None


@pytest.mark.parametrize("composition", ["no_act", "aig"])
def test_a_training_step_has_the_consistency_of_the_map_form(composition: str, monkeypatch) -> None:
    """Whole model: the loss from the reductions (no_act) or the maps (aig) equals the map form in value and
    parameter gradients, with the same Gumbel draws."""
    module = plugin("cosinegate")
    method, model = built("cosinegate", "resnet_cifar", composition=composition)
    mix_gates(model)
    x = model.example_input(8)

    def consistency_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(1)
        model.zero_grad()
        context, _ = step_context(model, x)
        loss = method.extra_losses(model, context)["consistency"]
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    from_sums = []
    original = module.no_act_consistency
    monkeypatch.setattr(module, "no_act_consistency", lambda *args: from_sums.append(original(*args)) or from_sums[-1])
    loss, grads = consistency_and_grads()
    assert len(from_sums) == (3 if composition == "no_act" else 0) and None not in from_sums
    monkeypatch.setattr(module, "no_act_consistency", lambda *args: None)  # every block on the maps
    map_loss, map_grads = consistency_and_grads()
    assert loss > 0
    torch.testing.assert_close(loss, map_loss)
    assert len(grads) == len(map_grads)
    for grad, map_grad in zip(grads, map_grads):
        torch.testing.assert_close(grad, map_grad, rtol=1e-4, atol=1e-6)


def test_input_noise_consistency_leaves_no_per_block_term() -> None:
    method, model = built("cosinegate", "resnet_cifar", cons_type="input_noise")
    step_context(model, model.example_input(4))
    assert not any("consistency" in unit.gate.scratch for unit in gated_units(model))


def test_a_no_act_block_hands_on_channels_last_gradients() -> None:
    """Without a ReLU after the addition nothing restores the layout of the gradient the next block's pooling
    gives (NCHW); the block turns it back, so its batch norms run their channels-last backward."""
    method, model = built("cosinegate", "resnet_cifar")
    model = model.to(memory_format=torch.channels_last)
    layouts = []

    def spy(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output.register_hook(lambda grad: layouts.append(grad.is_contiguous(memory_format=torch.channels_last)))
        return output

    for unit in gated_units(model):
        unit.block.second.register_forward_hook(spy)
    x = model.example_input(4).contiguous(memory_format=torch.channels_last)
    context, _ = step_context(model, x)
    (context.per_sample_loss.mean() + sum(method.extra_losses(model, context).values())).backward()
    assert layouts and all(layouts)
