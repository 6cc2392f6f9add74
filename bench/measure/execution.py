"""Really-skipping eval executions of the gated wrappers, the paths latency is timed on.

Records never depend on this module: every metric and MAC count of a run comes from the masked
execution (`bench.gating.wrappers`). These paths must give the masked outputs (tests check it on every
backbone family and unit kind), and only their speed is measured here.

- blocks: batch 1 takes a real branch; a batch gathers the samples whose gate is on, runs the branch
  on them and scatters the result back;
- channels / neurons: batch 1 runs the kept channels only (sliced convolutions); a batch groups the
  samples by mask when few masks occur, else runs the union of the kept channels once, masked per sample.
Batch 1 also runs as one TorchScript program (`batch1_program`): the stem, every block's shortcut, branch
and activation, every gate and the head traced, one scripted loop taking each block's real branch from its
gate's decision; the dense copy becomes the same kind of program. In eager PyTorch the gates' small
operators and the wrappers' Python calls cost as much as a fifth to most of a dense ResNet-20 at batch 1;
in a program that interpreter cost is gone. Channel gates without a light path run their kept channels
only (sliced weights) inside the program. A program is timed only where it decides and computes as the
eager skipping path on the timed samples (`same_as_eager`); neuron gates with a light path, a method's own
composition, per-sample context (text) and a gate with state across blocks (its trace freezes the state)
keep the eager path.
"""
from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from bench import DynBenchError
from bench.backbones.base import Backbone
from bench.gating.gates import GateTrace, record
from bench.gating.pruning import first_sliced, second_sliced
from bench.gating.wrappers import COMPOSITIONS, BlockGate, ChannelGate, GatedUnit, gated_units, gates_forced

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
    on = g == 1
    kept = int(on.sum())  # the one read of the decisions per block
    if kept == len(x):  # every sample runs the branch: no gather, no scatter
        return unit.compose.full(s, block.second(block.first(x)), unit.act)
    check_hard(g, unit.name)
    out = unit.compose.skipped(s, unit.act)
    if kept:  # gather the samples whose gate is on, run the branch, scatter back
        index = on.nonzero().squeeze(1)
        with block.context.narrowed(index):
            r = unit.branch(gather(x, index))
        if out is s:  # the skipped form passed the shortcut (maybe the block input) through: do not write into it
            out = out.clone()
        scatter_(out, index, unit.compose.full(gather(s, index), r, unit.act))
    return out


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x.index_select(0, index)` in x's memory format. A channels-last tensor is gathered through its
    contiguous NHWC view: several times faster than index_select on it, which also drops the format."""
    if _channels_last(x):
        return x.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
    return x.index_select(0, index)


def scatter_(out: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`out.index_copy_(0, index, values)`, through NHWC views for channels-last tensors."""
    if _channels_last(out) and _channels_last(values):
        out.permute(0, 2, 3, 1).index_copy_(0, index, values.permute(0, 2, 3, 1))
        return out
    return out.index_copy_(0, index, values)


def sliced_branch(unit: ChannelGate, x: torch.Tensor, channels: torch.Tensor, s: torch.Tensor,
                  light: torch.Tensor | None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The residual branch computing only the kept channels of h (`channels`, shared by the samples);
    `mask` ([N, len(channels)], optional) zeroes the channels a sample does not keep among them;
    `light` is the light path's output for these samples (None without a light path)."""
    if not channels.numel():
        return second_sliced(unit.block.second, None, channels, s) if light is None else unit.block.second(light)
    h = first_sliced(unit.block.first, x, channels)
    if mask is not None:
        m = mask.reshape(*mask.shape, *[1] * (h.dim() - 2))
        h = m * h if light is None else m * h + (1 - m) * light.index_select(1, channels)
    if light is None:
        return second_sliced(unit.block.second, h, channels, s)
    return unit.block.second(light.index_copy(1, channels, h))


GROUPS_MAX = 4  # more distinct masks in a batch than this: run the union of kept channels once instead


def skip_channels(unit: ChannelGate, x: torch.Tensor) -> torch.Tensor:
    """Batch 1: the kept channels only. A batch: samples grouped by mask when there are few distinct masks
    (each group runs its own kept channels); otherwise the union of the kept channels runs once for the
    whole batch, each sample's other channels masked out — never more channels than dense."""
    g = unit.decide(x)
    record(unit.name, g)
    if g.shape[1] != unit.width:
        raise DynBenchError(f"unit '{unit.name}': the gate gave {g.shape[1]} decisions per sample for {unit.width} units")
    check_hard(g, unit.name)
    s = unit.block.shortcut(x)
    if bool(g.all()):  # every channel of every sample kept: the plain branch, no slicing, no light path
        return unit.act(s + unit.block.second(unit.block.first(x)))
    light = unit.light(x) if unit.light is not None else None  # once for the batch: it may read gate state
    if len(x) == 1:
        return unit.act(s + sliced_branch(unit, x, g[0].nonzero().squeeze(1), s, light))
    patterns, group = torch.unique(g, dim=0, return_inverse=True)
    if len(patterns) > GROUPS_MAX:
        kept = g.any(0)
        if bool(kept.all()):  # the union is every channel: the plain layers, masked per sample
            h = unit.block.first(x)
            m = g.reshape(*g.shape, *[1] * (h.dim() - 2))
            return unit.act(s + unit.block.second(m * h if light is None else m * h + (1 - m) * light))
        union = kept.nonzero().squeeze(1)
        return unit.act(s + sliced_branch(unit, x, union, s, light, mask=g.index_select(1, union)))
    if len(patterns) == 1:  # one mask for the whole batch: no gather, no scatter
        return unit.act(s + sliced_branch(unit, x, patterns[0].nonzero().squeeze(1), s, light))
    out = torch.empty_like(s)
    for i, pattern in enumerate(patterns):  # samples with the same mask run together
        index = (group == i).nonzero().squeeze(1)
        s_group = gather(s, index)
        light_group = gather(light, index) if light is not None else None
        with unit.block.context.narrowed(index):
            r = sliced_branch(unit, gather(x, index), pattern.nonzero().squeeze(1), s_group, light_group)
        scatter_(out, index, unit.act(s_group + r))
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


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode deployment transform, applied alike to the dense and the gated model before timing: each
    batch norm right after a convolution or linear layer in an `nn.Sequential` is folded into that
    layer's weights and bias (and replaced by Identity), as inference engines do. In place; returns
    `model`. Gate modules are left as they are (their decisions stay exactly the trained ones)."""
    gates = {id(m) for unit in gated_units(model) for m in unit.gate.modules()}
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential) and id(m) not in gates]:
        for i in range(len(seq) - 1):
            layer, norm = seq[i], seq[i + 1]
            conv = isinstance(layer, (nn.Conv1d, nn.Conv2d)) and isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d))
            linear = isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d)
            if (conv or linear) and norm.track_running_stats and norm.running_mean is not None:
                seq[i] = (fuse_conv_bn_eval if conv else fuse_linear_bn_eval)(layer.eval(), norm.eval())
                seq[i + 1] = nn.Identity()
    return model


@dataclass
class GateExecution:
    """How `compiled_gates` runs the gates: whether the traces decide exactly as the trained gates
    (`checked`) and which units' gates run traced (the others eagerly)."""

    checked: bool
    traced: list[str]


@contextlib.contextmanager
def compiled_gates(model: nn.Module, samples: list[torch.Tensor]) -> Iterator[GateExecution]:
    """Inside the block, each gate of `model` (eval) runs as a frozen TorchScript trace made on inputs of the
    shape of `samples` — the gates are tiny, so at batch 1 their per-operation Python overhead is most of
    their cost. Used only when the traced model decides exactly as the eager one on every sample (in
    sequence, so a gate with state across blocks, e.g. SkipNet's LSTM, is caught and stays eager), and per
    gate only where the trace is the faster; a mix of traced and eager gates is checked again."""
    units = gated_units(model)
    eager = [unit.gate for unit in units]
    chosen: list[nn.Module] = list(eager)
    checked = False
    try:
        inputs = inputs_of(model, units, samples[0])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values become constants: checked below
            traced = [torch.jit.freeze(torch.jit.trace(unit.gate, inputs[i], check_trace=False).eval())
                      for i, unit in enumerate(units)]
        reference = _decisions(model, samples)
        _install(units, traced)
        checked = _decisions(model, samples) == reference
        if checked:  # a trace that is not faster than its eager gate (e.g. a random draw) is not kept
            chosen = [traced[i] if _faster(traced[i], eager[i], inputs[i]) else eager[i] for i in range(len(units))]
            _install(units, chosen)
            if _decisions(model, samples) != reference:  # gates sharing state (one LSTM) must not be mixed
                chosen = traced
    except Exception:  # a gate TorchScript cannot trace runs eagerly, as trained  # noqa: BLE001
        chosen, checked = list(eager), False
    _install(units, chosen)
    try:
        yield GateExecution(checked, [unit.name for unit, gate, trained in zip(units, chosen, eager) if gate is not trained])
    finally:
        _install(units, eager)


def inputs_of(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The input each of `modules` (parts of `model`) receives, at its first call, when `model` runs on x."""
    inputs: dict[int, torch.Tensor] = {}
    hooks = [module.register_forward_pre_hook(lambda _, args, i=i: inputs.setdefault(i, args[0]))
             for i, module in enumerate(modules)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [inputs[i] for i in range(len(modules))]


def _install(units: list[GatedUnit], gates: list[nn.Module]) -> None:
    for unit, gate in zip(units, gates):
        unit.gate = gate


def _faster(traced: nn.Module, eager: nn.Module, x: torch.Tensor, calls: int = 15) -> bool:
    """Whether `traced` beats `eager` on x: medians of interleaved calls."""
    seconds: dict[int, list[float]] = {0: [], 1: []}
    with torch.inference_mode():
        for _ in range(calls):
            for key, gate in ((0, traced), (1, eager)):
                started = time.perf_counter()
                gate(x)
                seconds[key].append(time.perf_counter() - started)
    return statistics.median(seconds[0]) < statistics.median(seconds[1])


def _decisions(model: nn.Module, samples: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    torch.manual_seed(0)  # random gates draw the same in both passes
    with torch.no_grad(), GateTrace.recording() as trace:
        for x in samples:
            model(x)
    return [[d.tolist() for d in trace.decisions[unit]] for unit in trace.units()]


# ---- batch 1 as one TorchScript program ----

# (activation after a full block, activation after a skipped one) of each shared composition
FORMS = {"aig": (True, True), "skipnet": (True, False), "no_act": (False, False)}
OUTPUT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # traced and eager convolutions may round differently


class GatedStep(nn.Module):
    """One block gate: the gate decides (or `forced` >= 0 replaces its decision; the gate still runs, as in
    `gates_forced`), then the block runs its branch or only its shortcut."""

    def __init__(self, gate: nn.Module, shortcut: nn.Module, branch: nn.Module, act: nn.Module, form: str) -> None:
        super().__init__()
        self.gate, self.shortcut, self.branch, self.act = gate, shortcut, branch, act
        self.act_full, self.act_skipped = FORMS[form]

    def forward(self, x: torch.Tensor, forced: float, decisions: list[float]) -> torch.Tensor:
        g = self.gate(x)
        on = float(g.item()) if forced < 0.0 else forced
        decisions.append(on)
        s = self.shortcut(x)
        if on == 1.0:
            y = s + self.branch(x)
            return self.act(y) if self.act_full else y
        if on != 0.0:
            raise RuntimeError("physical skipping needs hard 0/1 decisions (eval-mode gates)")
        return self.act(s) if self.act_skipped else s


class ChannelStep(nn.Module):
    """One channel gate without a light path, on a block whose `first` is a weighted layer with a ReLU and
    whose `second` a weighted layer (batch norms folded): the gate decides a mask (or `forced` >= 0 replaces
    it), then only the kept hidden channels are computed: the kept rows of `first`'s weight, the kept columns
    of `second`'s. The decision kept is the number of kept channels (outputs are checked as well)."""

    def __init__(self, gate: nn.Module, shortcut: nn.Module, branch: nn.Module, act: nn.Module, first: nn.Module,
                 second: nn.Module) -> None:
        super().__init__()
        self.gate, self.shortcut, self.branch, self.act = gate, shortcut, branch, act
        self.width = int(first.weight.shape[0])
        self.conv = isinstance(first, nn.Conv2d)
        self.w1, self.b1 = first.weight.detach(), _bias(first)
        self.w2, self.b2 = second.weight.detach(), _bias(second)
        self.stride1, self.padding1 = _geometry(first)
        self.stride2, self.padding2 = _geometry(second)

    def forward(self, x: torch.Tensor, forced: float, decisions: list[float]) -> torch.Tensor:
        g = self.gate(x)
        if forced >= 0.0:
            g = torch.full_like(g, forced)
        kept = g.reshape(-1).nonzero().squeeze(1)
        decisions.append(float(kept.numel()))
        s = self.shortcut(x)
        if kept.numel() == self.width:
            return self.act(s + self.branch(x))
        if kept.numel() == 0:
            return self.act(s + self.b2.reshape([1, -1] + [1] * (s.dim() - 2)))
        w1, b1, w2 = self.w1.index_select(0, kept), self.b1.index_select(0, kept), self.w2.index_select(1, kept)
        if self.conv:
            h = torch.relu(torch.nn.functional.conv2d(x, w1, b1, self.stride1, self.padding1))
            return self.act(s + torch.nn.functional.conv2d(h, w2, self.b2, self.stride2, self.padding2))
        h = torch.relu(torch.nn.functional.linear(x, w1, b1))
        return self.act(s + torch.nn.functional.linear(h, w2, self.b2))


def _bias(layer: nn.Module) -> torch.Tensor:
    return layer.bias.detach() if layer.bias is not None else layer.weight.new_zeros(layer.weight.shape[0])


def _geometry(layer: nn.Module) -> tuple[list[int], list[int]]:
    if isinstance(layer, nn.Conv2d):
        return list(layer.stride), list(layer.padding)
    return [1, 1], [0, 0]


def _channel_layers(unit: ChannelGate) -> tuple[nn.Module, nn.Module] | None:
    """`first`'s and `second`'s weighted layers where the block is weighted layer + ReLU → weighted layer
    (norms folded, no light path, groups 1, no dilation); None otherwise."""
    first, second = list(unit.block.first), list(unit.block.second)
    passive = (nn.Identity, nn.Dropout)
    weighted = (nn.Conv2d, nn.Linear)
    if unit.light is not None or not isinstance(first[0], weighted) or type(second[0]) is not type(first[0]):
        return None
    if sum(isinstance(layer, nn.ReLU) for layer in first[1:]) != 1 \
            or not all(isinstance(layer, passive + (nn.ReLU,)) for layer in first[1:]) \
            or not all(isinstance(layer, passive) for layer in second[1:]):
        return None
    if isinstance(first[0], nn.Conv2d) and any(layer.groups != 1 or tuple(layer.dilation) != (1, 1)
                                               or layer.padding_mode != "zeros" for layer in (first[0], second[0])):
        return None
    return first[0], second[0]


class PlainStep(nn.Module):
    """An ungated block, traced whole."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, forced: float, decisions: list[float]) -> torch.Tensor:
        return self.block(x)


class Program(nn.Module):
    """stem → steps → head; returns the output and the decision of every gated block, in order."""

    def __init__(self, stem: nn.Module, steps: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem, self.steps, self.head = stem, nn.ModuleList(steps), head

    def forward(self, x: torch.Tensor, forced: float = -1.0) -> tuple[torch.Tensor, list[float]]:
        decisions: list[float] = []
        h = self.stem(x)
        for step in self.steps:
            h = step(h, forced, decisions)
        return self.head(h), decisions


def batch1_program(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule | None:
    """`model` (eval) as a frozen TorchScript `Program` traced on the one-sample input `x`, or None where it
    cannot be one: not a stem-blocks-head backbone, per-sample context, a unit other than a block gate of a
    shared composition or a channel gate on a folded weighted-ReLU-weighted block, or a part that does not
    trace."""
    if not isinstance(model, Backbone) or any(getattr(type(model), step) is not getattr(Backbone, step)
                                              for step in ("forward", "prepare", "after_block")):
        return None  # a backbone of its own flow (segmentation) or with per-sample context (text)
    if any(isinstance(block, GatedUnit) and not (isinstance(block, BlockGate) and form_of(block)
                                                  or isinstance(block, ChannelGate) and _channel_layers(block))
           for block in model.blocks):
        return None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values becoming constants: checked later
            *inputs, head_input = inputs_of(model, [*model.blocks, model.head], x)
            steps: list[nn.Module] = []
            for block, block_input in zip(model.blocks, inputs):
                if not isinstance(block, GatedUnit):
                    steps.append(PlainStep(_trace(block, block_input)))
                    continue
                parts = (_trace(block.gate, block_input), _trace(block.block.shortcut, block_input),
                         _trace(nn.Sequential(block.block.first, block.block.second), block_input),
                         _trace(block.act, block_input))
                steps.append(ChannelStep(*parts, *_channel_layers(block)) if isinstance(block, ChannelGate)
                             else GatedStep(*parts, form_of(block)))
            program = Program(_trace(model.stem, x), steps, _trace(model.head, head_input))
            return torch.jit.freeze(torch.jit.script(program.eval()))
    except Exception:  # a part TorchScript cannot trace or script: the eager path is timed  # noqa: BLE001
        return None


def form_of(unit: BlockGate) -> str | None:
    """The name of `unit`'s composition among the shared ones (a copied model holds equal copies of them)."""
    return next((name for name, composition in COMPOSITIONS.items() if composition == unit.compose), None)


def _trace(module: nn.Module, x: torch.Tensor) -> nn.Module:
    if isinstance(module, nn.Identity):  # a trace must not return its input unchanged
        return nn.Identity()
    return torch.jit.trace(module.eval(), x, check_trace=False)


def same_as_eager(program: torch.jit.ScriptModule, model: nn.Module, samples: list[torch.Tensor], seed: int) -> bool:
    """Whether `program` gives the eager skipping path's decisions and outputs on every sample, with the gates
    as trained, forced on and forced off; each pass starts from `seed` (random gates draw alike)."""
    units = [unit.name for unit in gated_units(model)]
    for forced in (None, 1.0, 0.0):
        torch.manual_seed(seed)
        with execution(model, "skip"), gates_forced(model, forced) if forced is not None else contextlib.nullcontext(), \
                GateTrace.recording() as trace:
            eager = [model(x) for x in samples]
        torch.manual_seed(seed)
        scripted = [program(x, -1.0 if forced is None else forced) for x in samples]
        for i, (expected, (output, decisions)) in enumerate(zip(eager, scripted)):
            if decisions != [float(trace.decisions[unit][i].sum()) for unit in units]:  # a block's 0/1, a mask's count
                return False
            if not torch.allclose(output, expected, **OUTPUT_TOLERANCE):
                return False
    return True
