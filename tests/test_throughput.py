"""Throughput accounting (bench.measure.throughput) on a tiny backbone: the numbers, not the speed."""
from __future__ import annotations

import functools
import math

import pytest
import torch

from bench import DynBenchError
from bench.backbones import build_backbone
from bench.measure.macs import count_macs
from bench.measure.throughput import (TRAIN_MACS_PER_FORWARD, eval_throughput, make_train_step, matmul_ceiling,
                              parallel_train_throughput, synthetic_batch, train_step_throughput,
                              train_step_throughputs)

IN_SHAPE, NUM_CLASSES = (3, 16, 16), 10
# oneDNN (torch 2.14.1) corrupts the heap in the weight gradient of a 1x1 stride-2 NHWC convolution with
# fewer than 8 input channels on one thread of an AVX2-only CPU (AMD EPYC, 2026-12-02): no narrower test nets
NARROWEST_SAFE_WIDTH = 8


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("resnet8", IN_SHAPE, NUM_CLASSES, width=NARROWEST_SAFE_WIDTH)


def test_train_macs_per_second_is_images_per_second_times_three_forward_macs() -> None:
    model = tiny()
    forward = count_macs(model, torch.zeros(1, *IN_SHAPE))
    result = train_step_throughput(model, IN_SHAPE, NUM_CLASSES, batch_size=8, steps=2, warmup=1, threads=1)
    assert result.forward_macs_per_image == forward > 0
    assert result.macs_per_image == TRAIN_MACS_PER_FORWARD * forward == 3 * forward
    assert result.images_per_second == pytest.approx(8 / result.seconds_per_step)
    assert result.macs_per_second == pytest.approx(result.images_per_second * 3 * forward)
    assert result.threads == 1 and result.batch_size == 8 and result.steps == 2
    assert result.to_dict()["macs_per_second"] == pytest.approx(result.macs_per_second)


def test_a_train_step_updates_the_weights() -> None:
    model = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    inputs, targets = synthetic_batch(IN_SHAPE, NUM_CLASSES, 4)
    make_train_step(model, inputs, targets)()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bf16_autocast_train_and_eval_run_and_give_finite_numbers() -> None:
    train = train_step_throughput(tiny(), IN_SHAPE, NUM_CLASSES, batch_size=8, steps=1, warmup=1, threads=1,
                                  autocast_dtype=torch.bfloat16)
    evaluation = eval_throughput(tiny(), IN_SHAPE, batch_size=16, steps=1, warmup=0, threads=1,
                                 autocast_dtype=torch.bfloat16, channels_last=False)
    for result in (train, evaluation):
        assert math.isfinite(result.images_per_second) and result.images_per_second > 0
        assert math.isfinite(result.macs_per_second) and result.macs_per_second > 0
    assert evaluation.macs_per_image == evaluation.forward_macs_per_image  # eval: forward only
    assert evaluation.batch_size == 16


def test_interleaved_configurations_are_reported_by_label_with_their_own_precision() -> None:
    results = train_step_throughputs({"fp32": tiny(), "bf16": tiny()}, IN_SHAPE, NUM_CLASSES, batch_size=8, steps=1,
                                     warmup=0, threads=1, autocast_dtypes={"bf16": torch.bfloat16})
    assert [r.label for r in results] == ["fp32", "bf16"]
    assert results[0].macs_per_image == results[1].macs_per_image  # same MACs, run in another precision
    assert all(math.isfinite(r.macs_per_second) and r.macs_per_second > 0 for r in results)


def test_matmul_ceiling_is_positive_for_fp32_and_bf16() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        rate = matmul_ceiling(dtype, size=64, threads=1, repeats=2, warmup=1)
        assert math.isfinite(rate) and rate > 0


def test_bad_counts_are_refused() -> None:
    with pytest.raises(DynBenchError, match="steps and batch_size"):
        train_step_throughput(tiny(), IN_SHAPE, NUM_CLASSES, batch_size=8, steps=0)
    with pytest.raises(DynBenchError, match="size and repeats"):
        matmul_ceiling(size=0)


@pytest.mark.slow
def test_two_worker_processes_each_report_their_throughput() -> None:
    build = functools.partial(build_backbone, "resnet8", IN_SHAPE, NUM_CLASSES, width=NARROWEST_SAFE_WIDTH)
    workers = parallel_train_throughput(build, IN_SHAPE, NUM_CLASSES, workers=2, threads_per_worker=1, batch_size=8,
                                        steps=2, warmup=1)
    assert len(workers) == 2
    for worker in workers:
        assert worker["threads"] == 1 and worker["images_per_second"] > 0
        assert worker["macs_per_second"] == pytest.approx(worker["images_per_second"] * worker["macs_per_image"])
