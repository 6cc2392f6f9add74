"""input_dependence: per-gate on-shares, always-on / conditional / always-off shares over all gates (block
gates included), per-input executed-gate spread, and the strict *static* flag."""
from __future__ import annotations

import pytest
import torch

from bench.gating.gate_stats import input_dependence, per_gate_rates
from bench.gating.gates import GateTrace


def trace_of(**units: torch.Tensor) -> GateTrace:
    trace = GateTrace()
    for unit, decisions in units.items():
        half = len(decisions) // 2  # recorded in two batches, as evaluation does
        trace.add(unit, decisions[:half])
        trace.add(unit, decisions[half:])
    return trace


def test_gates_on_or_off_for_every_input_are_static():
    trace = trace_of(block0=torch.ones(8), block1=torch.zeros(8), channels=torch.tensor([[1.0, 0.0, 1.0]] * 8))
    report = input_dependence(trace)
    assert report["static"] is True and report["gates"] == 5
    assert report["gate_share_always_on"] == pytest.approx(3 / 5)
    assert report["gate_share_always_off"] == pytest.approx(2 / 5)
    assert report["gate_share_conditional"] == pytest.approx(0.0, abs=1e-6)  # float32 shares
    assert report["executed_gates"] == {"mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0}


def test_a_gate_that_differs_between_inputs_makes_it_conditional():
    block = torch.tensor([1.0, 0.0, 1.0, 1.0])
    channels = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    report = input_dependence(trace_of(block=block, channels=channels))
    assert report["static"] is False
    trace = trace_of(block=block, channels=channels)
    assert {unit: per_gate_rates(trace, unit).tolist() for unit in trace.units()} == {"block": [0.75], "channels": [1.0, 0.25]}
    assert report["gate_share_conditional"] == pytest.approx(2 / 3)
    assert report["gate_share_always_on"] == pytest.approx(1 / 3)
    per_input = torch.tensor([3.0, 1.0, 2.0, 2.0])  # executed gates of each input
    assert report["executed_gates"]["mean"] == pytest.approx(2.0)
    assert report["executed_gates"]["std"] == pytest.approx(float(per_input.std(unbiased=False)))
    assert (report["executed_gates"]["min"], report["executed_gates"]["max"]) == (1.0, 3.0)


def test_a_gate_on_for_all_but_one_input_is_not_static_though_always_on_by_the_99_percent_rule():
    decisions = torch.ones(200)
    decisions[7] = 0.0
    report = input_dependence(trace_of(block=decisions))
    assert report["gate_share_always_on"] == 1.0 and report["static"] is False


def test_an_ungated_model_is_static_with_no_gates():
    report = input_dependence(GateTrace())
    assert report["gates"] == 0 and report["static"] is True
