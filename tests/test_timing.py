"""The board's latency protocol (`bench.measure.latency.time_model`) and the quiet timing pass (`bench.timing`):
structure, intervals, the masked-execution probe, resume and bad input. Timings here are tiny (a few
rounds); how fast the paths are is measured in tests/benchmarks and scripts/latency_study.py."""
from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import binom
from torch import nn

from bench import DynBenchError
from bench.cli import main
from bench.data import resolve_data_root
from bench.gating.wrappers import BlockGate, wrap_blocks
from bench.measure import execution as execution_module
from bench.measure.latency import median_ci, random_gated, time_model
from bench.timing import LATENCY_DIR, is_current, time_runs
from bench.train import make_spec, run
from tests.models import small_backbone

QUICK = {"min_rounds": 6, "max_rounds": 6, "b1_samples": 3, "warmup": 0}


@pytest.mark.parametrize("n", [6, 10, 25, 60])
def test_the_median_interval_covers_95_percent_by_the_binomial(n):
    values = [float(v) for v in range(n)]
    median, low, high = median_ci(values)
    k = int(low)  # values are their ranks (0-based)
    assert low <= median <= high and high == n - 1 - k
    coverage = binom.cdf(n - 1 - k, n, 0.5) - binom.cdf(k, n, 0.5)  # P(low rank < median rank <= high)
    assert coverage >= 0.95 - 1e-9
    tighter = binom.cdf(n - 2 - k, n, 0.5) - binom.cdf(k + 1, n, 0.5)
    assert tighter < 0.95  # and it is the narrowest such interval


def test_few_rounds_give_no_interval():
    median, low, high = median_ci([1.0, 2.0, 3.0])
    assert median == 2.0 and low != low and high != high  # NaN


def test_time_model_reports_each_batch_with_paired_intervals_probes_and_the_anchor():
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.5)
    inputs = model.example_input(8)
    result = time_model(model, inputs, batch_sizes=(1, 8), **QUICK)
    assert result["threads"] == 1 and result["device"] == "cpu" and result["unit_kinds"] == ["block"]
    for key in ("1", "8"):
        batch = result["batches"][key]
        assert batch["rounds"] == 6
        low, high = batch["saving_ci"]
        assert low <= batch["saving"] <= high
        assert 0 < batch["mac_saving"] < batch["all_off_mac_saving"] < 1
        for name in ("dense", "dynamic", "all_on", "all_off", "anchor"):
            assert 0 < batch[name]["p50"] <= batch[name]["p95"]
        assert batch["anchor_ratio"] > 0
    assert result["batches"]["1"]["dense"]["samples_per_pass"] == 3
    assert result["batches"]["8"]["dense"]["samples_per_pass"] == 1


def test_a_path_that_computes_everything_is_flagged_as_masked_execution(monkeypatch):
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.5)
    real = time_model(model, model.example_input(8), batch_sizes=(8,), **{**QUICK, "min_rounds": 12, "max_rounds": 12})
    assert real["batches"]["8"]["skips_for_real"]  # by mechanism; whether time falls is a timing, not tested here

    def compute_then_multiply(unit, x):  # what the official SkipNet code does at eval (ucbdrive/skipnet#11)
        return unit.masked(x, unit.decide(x))

    monkeypatch.setattr(execution_module, "fast_path_of", lambda unit: compute_then_multiply)
    masked = time_model(model, model.example_input(8), batch_sizes=(8,), **{**QUICK, "min_rounds": 12, "max_rounds": 12})
    assert not masked["batches"]["8"]["skips_for_real"]


class HalfGate(nn.Module):
    def forward(self, x):
        return torch.full((len(x),), 0.5)


def test_soft_decisions_cannot_be_timed_as_skipping():
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, HalfGate(), name))
    with pytest.raises(DynBenchError, match="hard 0/1 decisions"):
        time_model(model, model.example_input(4), batch_sizes=(4,), **QUICK)


def test_a_batch_larger_than_the_inputs_is_a_clear_error():
    model = random_gated(small_backbone("resnet_cifar"), "block")
    with pytest.raises(DynBenchError, match="batch 16 needs 16 inputs, got 4"):
        time_model(model, model.example_input(4), batch_sizes=(16,), **QUICK)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_time_model_on_cuda_uses_the_device():
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.5).cuda()
    result = time_model(model, model.example_input(8).cuda(), batch_sizes=(1, 8), **QUICK)
    assert result["device"].startswith("cuda") and result["threads"] is None
    assert result["batches"]["8"]["dense"]["p50"] > 0


def test_cuda_timing_on_a_machine_without_cuda_says_what_to_do(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["time", "--results", str(tmp_path), "--device", "cuda"]) == 2
    assert "has no CUDA device" in capsys.readouterr().err


def test_the_timing_pass_times_one_seed_per_row_once_and_keeps_its_records(tmp_path, capsys):
    specs = [make_spec("random_gate", "digits", profile="smoke", seed=seed, max_test_examples=200) for seed in (0, 1)]
    records = [run(spec, resolve_data_root(None), tmp_path, progress=False)[0] for spec in specs]
    dense = make_spec("dense", "digits", profile="smoke", max_test_examples=200)
    run(dense, resolve_data_root(None), tmp_path, progress=False)
    assert time_runs(tmp_path, resolve_data_root(None), **QUICK) == 0
    timed = sorted((tmp_path / LATENCY_DIR).glob("*.json"))
    assert len(timed) == 1 and timed[0].name.startswith(records[0].spec_hash)  # seed 0 only; dense has no gates
    data = json.loads(timed[0].read_text())
    assert data["kind"] == "latency" and data["training_code_hash"] == records[0].code_hash
    assert set(data["latency"]["batches"]) == {"1", "128"} and data["load_before"] >= 0
    assert is_current(timed[0], records[0].code_hash)
    capsys.readouterr()
    assert time_runs(tmp_path, resolve_data_root(None), **QUICK) == 0  # nothing left to time
    assert "[time" not in capsys.readouterr().out
    assert time_runs(tmp_path, resolve_data_root(None), all_seeds=True, **QUICK) == 0
    assert len(list((tmp_path / LATENCY_DIR).glob("*.json"))) == 2
    (tmp_path / "models" / f"{records[1].spec_hash}.pt").unlink()  # a model that is gone: said, not fatal
    assert time_runs(tmp_path, resolve_data_root(None), records=[records[1].spec_hash], force=True, **QUICK) == 1
    assert "no trained model" in capsys.readouterr().err
    path = tmp_path / "runs" / f"{records[0].spec_hash}.json"
    path.write_text(path.read_text().replace(records[0].code_hash, "0123456789abcdef"))  # made by other code
    assert time_runs(tmp_path, resolve_data_root(None), force=True, **QUICK) == 1  # seed 1 left, its model gone
    assert "1 stale record(s) not timed" in capsys.readouterr().err



def test_two_cpu_models_of_one_architecture_get_separate_latency_records(monkeypatch):
    """Latency depends on the CPU model (an AVX2 EPYC and an AVX-512 Xeon are both "x86_64, 2 cores"):
    the machine key and the record's hardware name it."""
    import bench.measure.latency as latency_module
    from bench.measure.latency import timing_hardware
    from bench.reporting.latency_figures import machine_label
    from bench.timing import machine_key

    cpu = torch.device("cpu")
    monkeypatch.setattr(latency_module, "cpu_model", lambda: "AMD EPYC")
    epyc, hardware = machine_key(cpu, 1), timing_hardware(cpu)
    monkeypatch.setattr(latency_module, "cpu_model", lambda: "Intel(R) Xeon(R) Platinum 8488C")
    assert machine_key(cpu, 1) != epyc and hardware["cpu_model"] == "AMD EPYC"
    assert machine_label("cpu", hardware).startswith("cpu: AMD EPYC")
