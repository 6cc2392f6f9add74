"""Performance benchmarks with targets (pytest-benchmark). Run: pytest -m perf --benchmark-enable tests/benchmarks.

Timings are wall-clock medians on a shared machine: expect noise. Dense and gated passes alternate
every repeat so drift affects both alike. One intra-op thread throughout (stated in extra_info).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.backbones import build_backbone
from bench.gating.gates import LinearGate
from bench.measure.latency import fixed_threads, interleaved_medians, random_gated, time_model
from bench.gating.wrappers import BlockGate, wrap_blocks
from bench.measure.execution import execution

pytestmark = pytest.mark.perf

THREADS = 1
OVERHEAD_TARGET = 1.10  # gated (all open) / dense train step
REALIZED_TARGET = 0.8  # latency saving / MAC saving at 50 % blocks skipped
TRAIN_BATCH = 128


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_gate_overhead_on_a_train_step(benchmark) -> None:  # noqa: ANN001 (pytest-benchmark fixture)
    """ResNet-20, batch 128: every block wrapped with a learned gate (GAP -> linear -> hard binary
    concrete, bias +10 so all gates are open), compute-all-then-multiply, vs the dense backbone."""
    torch.manual_seed(0)
    dense = build_backbone("resnet20", (3, 32, 32), 10)
    gated = wrap_blocks(copy.deepcopy(dense), lambda name, block: BlockGate(
        block, LinearGate(block.pool, block.first[0].in_channels), name))
    for module in gated.modules():
        if isinstance(module, LinearGate):
            torch.nn.init.constant_(module.linear.bias, 10.0)
    x, y = torch.randn(TRAIN_BATCH, 3, 32, 32), torch.randint(0, 10, (TRAIN_BATCH,))
    steps = {name: (model, torch.optim.SGD(model.parameters(), lr=0.01)) for name, model in
             (("dense", dense.train()), ("gated", gated.train()))}
    with fixed_threads(THREADS):
        medians = interleaved_medians({name: (lambda m=m, o=o: _train_step(m, o, x, y)) for name, (m, o) in steps.items()},
                                      repeats=7, warmup=2)
        benchmark.pedantic(_train_step, args=(gated, steps["gated"][1], x, y), rounds=3, iterations=1)
    ratio = medians["gated"] / medians["dense"]
    benchmark.extra_info.update(threads=THREADS, batch_size=TRAIN_BATCH, dense_seconds=medians["dense"],
                                gated_seconds=medians["gated"], overhead_ratio=ratio, target=OVERHEAD_TARGET)
    print(f"\ntrain step, ResNet-20, batch {TRAIN_BATCH}, {THREADS} thread: dense {medians['dense']:.3f} s, "
          f"gated (all open) {medians['gated']:.3f} s, ratio {ratio:.3f} (target <= {OVERHEAD_TARGET})")
    assert ratio <= OVERHEAD_TARGET


@pytest.mark.parametrize("batch_size", [1, 256])
def test_realized_latency_saving_at_half_the_blocks_skipped(benchmark, batch_size: int) -> None:  # noqa: ANN001
    """ResNet-56 with Bernoulli(0.5) block gates: realized latency saving ÷ MAC saving (the boards' protocol,
    `time_model`), batch 1 (32 samples one by one) and batch 256."""
    torch.manual_seed(0)
    model = random_gated(build_backbone("resnet56", (3, 32, 32), 10), "block", keep_rate=0.5)
    inputs = model.example_input(256, torch.Generator().manual_seed(0))
    result = time_model(model, inputs, batch_sizes=(batch_size,), threads=THREADS, b1_samples=32, budget_s=10.0)
    report = result["batches"][str(batch_size)]
    with fixed_threads(THREADS), torch.no_grad(), execution(model.eval(), "skip"):
        benchmark.pedantic(model, args=(inputs[:batch_size],), rounds=3, iterations=1)
    benchmark.extra_info.update(report, target=REALIZED_TARGET)
    print(f"\nbatch {batch_size}: latency saving {100 * report['saving']:.1f} % [{100 * report['saving_ci'][0]:.1f}, "
          f"{100 * report['saving_ci'][1]:.1f}] vs MAC saving {100 * report['mac_saving']:.1f} %: realized "
          f"{report['realized']:.2f} (target >= {REALIZED_TARGET})")
    assert report["realized_ci"][1] >= REALIZED_TARGET  # missed only when the whole interval lies below it


ALL_ON_TARGET = 0.05  # gates forced on vs dense, eval (issue 19)
METHODS = ["convnet_aig", "skipnet", "cosinegate:realizable", "batch_shaping", "midl", "random_gate"]


@pytest.mark.parametrize("entry", METHODS)
@pytest.mark.parametrize("batch_size", [1, 128])
def test_all_on_overhead_of_each_method(benchmark, entry: str, batch_size: int) -> None:  # noqa: ANN001
    """Each method's gated ResNet-20 (untrained; every gate forced on) against its dense copy at eval."""
    from bench import registry

    name, _, preset = entry.partition(":")
    torch.manual_seed(0)
    model = registry.get_method(name)(preset or "default").build(build_backbone("resnet20", (3, 32, 32), 10))
    inputs = torch.randn(128, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = time_model(model, inputs, batch_sizes=(batch_size,), threads=THREADS, budget_s=10.0)
    report = result["batches"][str(batch_size)]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(all_on_overhead=report["all_on_overhead"], ci=report["all_on_overhead_ci"],
                                compiled_gates=report["compiled_gates"], traced_gates=report["traced_gates"],
                                target=ALL_ON_TARGET)
    print(f"\n{entry}, batch {batch_size}: all-on overhead {100 * report['all_on_overhead']:.1f} % "
          f"[{100 * report['all_on_overhead_ci'][0]:.1f}, {100 * report['all_on_overhead_ci'][1]:.1f}] "
          f"(target <= {100 * ALL_ON_TARGET:.0f} %)")
    assert report["all_on_overhead_ci"][0] <= ALL_ON_TARGET  # missed only when the whole interval lies above it
