"""Really-skipping eval executions of the gated wrappers, the paths latency is timed on.

Records never depend on this module: every metric and MAC count of a run comes from the masked
execution (`bench.gating.wrappers`). These paths must give the masked outputs (tests check it on every
backbone family and unit kind), and only their speed is measured here.

- blocks: batch 1 takes a real branch; a batch gathers the samples whose gate is on, runs the branch
  on them and scatters the result back;
- channels / neurons: batch 1 runs the kept channels only (sliced convolutions); a batch groups the
  samples by mask and runs each group on its kept channels.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from bench import DynBenchError
from bench.gating.gates import record
from bench.gating.pruning import first_sliced, second_sliced
from bench.gating.wrappers import BlockGate, ChannelGate, GatedUnit, gated_units

EXECUTIONS = ("masked", "skip")


def check_hard(g: torch.Tensor | float, name: str) -> None:
    hard = g in (0.0, 1.0) if isinstance(g, float) else bool(((g == 0) | (g == 1)).all())
    if not hard:
        raise DynBenchError(f"unit '{name}': physical skipping needs hard 0/1 decisions (eval-mode gates)")


def skip_block(unit: BlockGate, x: torch.Tensor) -> torch.Tensor:
    g = unit.decide(x)
    record(unit.name, g)
    block = unit.block  # local names: this path runs per sample at batch 1, where Python overhead counts
    s = block.shortcut(x)
    if len(x) == 1:  # a real branch; one scalar read decides and checks it
        on = g.item()
        if on == 1.0:
            return unit.compose.full(s, block.second(block.first(x)), unit.act)
        check_hard(on, unit.name)
        return unit.compose.skipped(s, unit.act)
    check_hard(g, unit.name)
    out = unit.compose.skipped(s, unit.act)
    index = g.nonzero().squeeze(1)
    if index.numel():  # gather the samples whose gate is on, run the branch, scatter back
        with block.context.narrowed(index):
            r = unit.branch(x.index_select(0, index))
        if out is s:  # the skipped form passed the shortcut (maybe the block input) through: do not write into it
            out = out.clone()
        out.index_copy_(0, index, unit.compose.full(s.index_select(0, index), r, unit.act))
    return out


def sliced_branch(unit: ChannelGate, x: torch.Tensor, channels: torch.Tensor, s: torch.Tensor,
                  light: torch.Tensor | None) -> torch.Tensor:
    """The residual branch computing only the kept channels of h (all samples share `channels`);
    `light` is the light path's output for these samples (None without a light path)."""
    if light is None:
        h = first_sliced(unit.block.first, x, channels) if channels.numel() else None
        return second_sliced(unit.block.second, h, channels, s)
    if channels.numel():
        light = light.index_copy(1, channels, first_sliced(unit.block.first, x, channels))
    return unit.block.second(light)


def skip_channels(unit: ChannelGate, x: torch.Tensor) -> torch.Tensor:
    g = unit.decide(x)
    record(unit.name, g)
    if g.shape[1] != unit.width:
        raise DynBenchError(f"unit '{unit.name}': the gate gave {g.shape[1]} decisions per sample for {unit.width} units")
    check_hard(g, unit.name)
    s = unit.block.shortcut(x)
    light = unit.light(x) if unit.light is not None else None  # once for the batch: it may read gate state
    if len(x) == 1:
        return unit.act(s + sliced_branch(unit, x, g[0].nonzero().squeeze(1), s, light))
    out = torch.empty_like(s)
    patterns, group = torch.unique(g, dim=0, return_inverse=True)
    for i, pattern in enumerate(patterns):  # samples with the same mask run together
        index = (group == i).nonzero().squeeze(1)
        s_group = s.index_select(0, index)
        light_group = light.index_select(0, index) if light is not None else None
        with unit.block.context.narrowed(index):
            r = sliced_branch(unit, x.index_select(0, index), pattern.nonzero().squeeze(1), s_group, light_group)
        out.index_copy_(0, index, unit.act(s_group + r))
    return out


def fast_path_of(unit: GatedUnit):
    return skip_block if isinstance(unit, BlockGate) else skip_channels


@contextlib.contextmanager
def execution(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Run every wrapper of `model` in `mode` inside the block: "masked" (as in training and every record)
    or "skip" (really skipping; eval mode only)."""
    if mode not in EXECUTIONS:
        raise DynBenchError(f"unknown execution '{mode}': choose one of {', '.join(EXECUTIONS)}")
    units = gated_units(model)
    saved = [unit.fast_path for unit in units]
    for unit in units:
        unit.fast_path = fast_path_of(unit) if mode == "skip" else None
    try:
        yield model
    finally:
        for unit, previous in zip(units, saved):
            unit.fast_path = previous
