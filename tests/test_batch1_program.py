"""Batch 1 as one TorchScript program (`bench.measure.execution.batch1_program`): it decides and computes as the eager skipping
path (block gates, and channel gates on their kept channels), it is built only for what it can hold, the check catches a gate whose trace freezes its state, and
`time_model` times programs at batch 1 only where they hold (how fast: tests/benchmarks)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.gating.gates import GateTrace
from bench.gating.wrappers import BlockGate, Composition, dense_copy, gated_units, wrap_blocks
from bench.measure.execution import batch1_program, execution, fold_batchnorm, same_as_eager
from bench.measure.latency import random_gated, time_model
from tests.models import as_double, gated, small_backbone


def samples_of(model: nn.Module, n: int = 12) -> list[torch.Tensor]:
    x = model.example_input(n, torch.Generator().manual_seed(1))
    return [x[i:i + 1].to(next(model.parameters()).dtype) for i in range(n)]


@pytest.mark.parametrize("family", ["resnet_cifar", "resmlp"])
@torch.no_grad()
def test_a_block_gated_backbone_runs_as_one_program_with_the_eager_decisions_and_outputs(family):
    model, _ = as_double(gated(family, "block"), torch.zeros(1))
    samples = samples_of(model)
    program = batch1_program(model, samples[0])
    assert program is not None and same_as_eager(program, model, samples, seed=0)
    with execution(model, "skip"), GateTrace.recording() as trace:
        for x in samples:
            model(x)
    decided = torch.cat([trace.stacked(unit) for unit in trace.units()])
    assert 0 < decided.mean() < 1  # both branches of the program ran
    output, decisions = program(samples[0], 1.0)
    assert decisions == [1.0] * len(gated_units(model))  # forced on: the gates still run, their decisions replaced
    dense = dense_copy(model).eval()
    dense_program = batch1_program(dense, samples[0])
    assert dense_program is not None and same_as_eager(dense_program, dense, samples, seed=0)


@pytest.mark.parametrize("family", ["resnet_cifar", "resmlp"])
@pytest.mark.parametrize("kind", ["channel", "neuron"])
@torch.no_grad()
def test_channel_gates_run_their_kept_channels_in_the_program(family, kind):
    """With batch norms folded (as timing does), a channel gate without a light path runs sliced weights."""
    model, _ = as_double(fold_batchnorm(gated(family, kind)), torch.zeros(1))
    samples = samples_of(model)
    program = batch1_program(model, samples[0])
    assert program is not None and same_as_eager(program, model, samples, seed=0)
    counts = [c for x in samples for c in program(x)[1]]
    widths = [unit.width for unit in gated_units(model)]
    assert any(0 < c < w for c, w in zip(counts, widths * len(samples)))  # the sliced path ran
    assert program(samples[0], 1.0)[1] == [float(w) for w in widths] and program(samples[0], 0.0)[1] == [0.0] * len(widths)


@torch.no_grad()
def test_units_a_program_cannot_hold_keep_the_eager_path():
    x = small_backbone("resnet_cifar").example_input(1)
    assert batch1_program(gated("resnet_cifar", "channel"), x) is None  # batch norms not folded
    assert batch1_program(fold_batchnorm(gated("resnet_cifar", "neuron_light")), x) is None  # a light path
    text = gated("textcnn", "block")  # per-sample padding context
    assert batch1_program(text, text.example_input(1)) is None
    segmentation = gated("segnet", "block")  # a flow of its own (the head reads the input size)
    assert batch1_program(segmentation, segmentation.example_input(1)) is None
    own = Composition(lambda s, r, g, act: s + g * r, lambda s, r, act: s + r, lambda s, act: s)
    custom = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, OnGate(), name, compose=own))
    assert batch1_program(custom.eval(), x) is None


class OnGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x))


class Counting(nn.Module):
    """Decides from a call counter: a trace freezes the count."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.full((len(x),), float(self.calls % 2))


@torch.no_grad()
def test_a_gate_with_state_across_calls_fails_the_check():
    model = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, Counting(), name)).eval()
    samples = samples_of(model, 4)
    program = batch1_program(model, samples[0])
    assert program is not None and not same_as_eager(program, model, samples, seed=0)


@torch.no_grad()
def test_random_gates_draw_in_the_program_as_in_the_eager_path():
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.5).eval()
    samples = samples_of(model)
    program = batch1_program(model, samples[0])
    assert program is not None and same_as_eager(program, model, samples, seed=3)


def test_time_model_times_batch_1_as_programs_only_where_they_hold():
    quick = {"min_rounds": 6, "max_rounds": 6, "b1_samples": 3, "warmup": 0}
    model = random_gated(small_backbone("resnet_cifar"), "block", keep_rate=0.5)
    result = time_model(model, model.example_input(4), batch_sizes=(1, 4), **quick)
    assert result["batches"]["1"]["path"] == "torchscript" and result["batches"]["4"]["path"] == "eager"
    assert result["batches"]["1"]["traced_gates"] == [unit.name for unit in gated_units(model)]
    assert 0 < result["batches"]["1"]["mac_saving"] < 1
    channels = random_gated(small_backbone("resnet_cifar"), "channel", keep_rate=0.5)
    assert time_model(channels, channels.example_input(2), batch_sizes=(1,), **quick)["batches"]["1"]["path"] == "torchscript"
    text = random_gated(small_backbone("textcnn"), "block", keep_rate=0.5)
    assert time_model(text, text.example_input(2), batch_sizes=(1,), **quick)["batches"]["1"]["path"] == "eager"
    stateful = wrap_blocks(small_backbone("resnet_cifar"), lambda name, block: BlockGate(block, Counting(), name))
    assert time_model(stateful, stateful.example_input(3), batch_sizes=(1,), **quick)["batches"]["1"]["path"] == "eager"
