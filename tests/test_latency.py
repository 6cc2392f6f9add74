"""Random-gated backbones for latency runs, thread control, and bad arguments (the protocol itself:
tests/test_timing.py; the paths: tests/test_execution.py; speed: tests/benchmarks)."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.gating.wrappers import gated_units
from bench.measure.latency import fixed_threads, random_gated, time_model
from tests.models import small_backbone


def test_channel_gates_can_be_timed_too() -> None:
    model = random_gated(small_backbone("textcnn"), "channel", keep_rate=0.5)
    result = time_model(model, model.example_input(4), batch_sizes=(1, 4), min_rounds=6, max_rounds=6, b1_samples=2)
    assert result["unit_kinds"] == ["channel"] and 0 < result["batches"]["4"]["mac_saving"] < 1
    assert all(unit.fast_path is None for unit in gated_units(model))  # the caller's model is left as it was


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with fixed_threads(2) as used:
        assert used == torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_bad_latency_arguments_are_clear_errors() -> None:
    with pytest.raises(DynBenchError, match="block or channel"):
        random_gated(small_backbone("resmlp"), "neuron")
