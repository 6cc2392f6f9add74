"""Relaxations of methods.md §0.2, their eval rules, simple gates and the gate trace."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.gating.gates import (GateTrace, LinearGate, RandomGate, binary_concrete, gumbel_sigmoid, gumbel_softmax2, record,
                         record_extra, relax, ste_threshold, topk_ste)


def test_ste_threshold_is_hard_forward_identity_backward() -> None:
    p = torch.tensor([0.2, 0.7, 0.5], requires_grad=True)
    g = ste_threshold(p)
    assert g.tolist() == [0.0, 1.0, 0.0]
    g.sum().backward()
    assert p.grad.tolist() == [1.0, 1.0, 1.0]


def test_gumbel_softmax2_is_one_hot_forward_with_softmax_gradient() -> None:
    torch.manual_seed(0)
    logits = torch.randn(256, 2, requires_grad=True)
    g = gumbel_softmax2(logits, tau=1.0)
    assert set(g.unique().tolist()) <= {0.0, 1.0}
    g.sum().backward()
    assert logits.grad.abs().sum() > 0
    torch.manual_seed(1)  # P(on) = σ(z1 − z0): logits (0, 2) open the gate ≈ 88 % of the time
    rate = gumbel_softmax2(torch.tensor([[0.0, 2.0]]).expand(20000, 2)).mean()
    assert abs(rate - torch.sigmoid(torch.tensor(2.0))) < 0.02


def test_binary_concrete_matches_its_logistic_probability_and_has_gradient() -> None:
    torch.manual_seed(0)
    z = torch.full((20000,), 1.0, requires_grad=True)
    g = binary_concrete(z, tau=2 / 3)
    assert set(g.unique().tolist()) == {0.0, 1.0}
    assert abs(g.mean() - torch.sigmoid(torch.tensor(1.0))) < 0.02
    g.sum().backward()
    assert (z.grad > 0).all()


def test_single_gumbel_sigmoid_is_soft_and_biased_toward_on() -> None:
    torch.manual_seed(0)
    g = gumbel_sigmoid(torch.zeros(20000), tau=0.6)
    assert ((g > 0) & (g < 1)).all() and g.mean() > 0.55  # mean of Gumbel(0, 1) ≈ 0.577 > 0


def test_topk_ste_keeps_k_units_and_passes_gradient_to_all_scores() -> None:
    scores = torch.rand(3, 10, requires_grad=True)
    mask = topk_ste(scores, 4)
    assert mask.detach().sum(1).tolist() == [4.0, 4.0, 4.0]
    mask.sum().backward()
    assert (scores.grad == 1).all()


def test_bernoulli_has_no_pathwise_gradient() -> None:
    p = torch.full((10,), 0.5, requires_grad=True)
    assert not relax("bernoulli", p, training=True).requires_grad


@pytest.mark.parametrize("name, value, params, expected", [
    ("ste", torch.tensor([0.4, 0.6]), {}, [0.0, 1.0]),
    ("gumbel_softmax2", torch.tensor([[1.0, 0.0], [0.0, 1.0]]), {}, [0.0, 1.0]),
    ("binary_concrete", torch.tensor([-0.1, 0.1]), {}, [0.0, 1.0]),
    ("gumbel_sigmoid", torch.tensor([-0.4, -0.3]), {"threshold": 0.42}, [0.0, 1.0]),  # CosineGate: σ(z) > 0.42
    ("bernoulli", torch.tensor([0.3, 0.9]), {}, [0.0, 1.0]),
    ("topk", torch.tensor([[0.1, 0.9, 0.5]]), {"k": 2}, [[0.0, 1.0, 1.0]]),
])
def test_eval_rules_are_hard_and_deterministic(name: str, value: torch.Tensor, params: dict, expected: list) -> None:
    assert relax(name, value, training=False, **params).tolist() == expected


def test_unknown_relaxation_is_a_clear_error() -> None:
    with pytest.raises(DynBenchError, match="binary_concrete"):
        relax("gumbel", torch.zeros(1), training=True)


def test_random_gate_keeps_its_rate() -> None:
    torch.manual_seed(0)
    x = torch.zeros(4000, 3)
    assert abs(RandomGate(0.3)(x).mean() - 0.3) < 0.03
    assert RandomGate(0.5, channels=7)(x).shape == (4000, 7)
    with pytest.raises(DynBenchError):
        RandomGate(1.5)


@pytest.mark.parametrize("relaxation", ["ste", "gumbel_softmax2", "binary_concrete", "gumbel_sigmoid", "bernoulli"])
def test_linear_gate_shapes_in_train_and_eval(relaxation: str) -> None:
    gate = LinearGate(lambda x: x.mean((2, 3)), 4, relaxation=relaxation)
    x = torch.randn(5, 4, 3, 3)
    assert gate(x).shape == (5,)
    gate.eval()
    assert set(gate(x).unique().tolist()) <= {0.0, 1.0}
    channels = LinearGate(lambda x: x.mean((2, 3)), 4, units=6, relaxation=relaxation)
    assert channels(x).shape == (5, 6)


def test_trace_records_decisions_and_extras_only_while_recording() -> None:
    record("blocks.0", torch.ones(2))  # outside a recording: dropped
    with GateTrace.recording() as trace:
        record("blocks.0", torch.tensor([1.0, 0.0]))
        record("blocks.0", torch.tensor([1.0]))
        record("blocks.1", torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
        record_extra("blocks.0", "p", torch.tensor([0.9, 0.2]))
    assert trace.stacked("blocks.0").tolist() == [1.0, 0.0, 1.0]
    assert trace.executed_fraction("blocks.1").tolist() == [0.5]
    assert trace.exec_rate_per_unit() == pytest.approx({"blocks.0": 2 / 3, "blocks.1": 0.5})
    assert trace.extra("blocks.0", "p").tolist() == pytest.approx([0.9, 0.2])
    with pytest.raises(DynBenchError, match="recording"):
        trace.stacked("blocks.7")
