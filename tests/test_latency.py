"""Real-skipping latency: reports, modes and errors (timings themselves are in tests/benchmarks)."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.measure.latency import fixed_threads, measure_latency, random_gated
from bench.gating.wrappers import gated_units
from tests.models import small_backbone


@pytest.mark.parametrize("mode, batch_size", [("skip-b1", 1), ("gather", 6), ("masked", 6)])
def test_measure_latency_reports_mode_batch_and_mac_saving(mode: str, batch_size: int) -> None:
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.0).train()
    report = measure_latency(model, model.example_input(6), mode, repeats=1, warmup=0, threads=1, max_samples_b1=3)
    assert (report.mode, report.batch_size, report.threads, report.device) == (mode, batch_size, 1, "cpu")
    assert report.dense_seconds > 0 and report.dynamic_seconds > 0
    assert 0.5 < report.mac_saving < 1  # every branch skipped: only stem, projections and head remain
    assert report.to_dict()["latency_saving"] == report.latency_saving
    assert mode in report.format() and "MAC saving" in report.format()
    assert all(unit.fast_path is None for unit in gated_units(model)) and model.training


def test_channel_gates_can_be_timed_too() -> None:
    model = random_gated(small_backbone("textcnn"), "channel", keep_rate=0.5)
    report = measure_latency(model, model.example_input(4), "gather", repeats=1, warmup=0)
    assert 0 < report.mac_saving < 1


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with fixed_threads(2) as used:
        assert used == torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_bad_latency_arguments_are_clear_errors() -> None:
    model = random_gated(small_backbone("resmlp"), "block")
    with pytest.raises(DynBenchError, match="skip-b1"):
        measure_latency(model, model.example_input(2), "fast")
    with pytest.raises(DynBenchError, match="repeats"):
        measure_latency(model, model.example_input(2), repeats=0)
    with pytest.raises(DynBenchError, match="block or channel"):
        random_gated(small_backbone("resmlp"), "neuron")
