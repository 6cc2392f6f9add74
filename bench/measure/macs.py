"""MAC counting with fvcore under the suite's counting rule, the unit table of a gated model, and
per-sample executed MACs from a gate trace (methods.md §0.4).

Rule (printed under every table): MACs = multiply-accumulates of conv, linear, matmul/bmm, einsum and
LSTM cells; fvcore calls them "flops" (one fused multiply-add = 1). Batch norm, activations, adds,
pooling, upsampling, biases and sorting count 0. Any op that is neither counted nor listed as free
below is an error, so no op passes silently. fvcore has no LSTM handle: `aten::lstm` gets one here
(4·h·(i+h) per step, §0.4); `nn.LSTMCell` traces as two linears, which fvcore counts.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

with warnings.catch_warnings():  # fvcore's imports call the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

from bench import DynBenchError
from bench.gating.gates import GateTrace, recording_suspended
from bench.gating.wrappers import gated_units

COUNTING_RULE = ("MACs: multiply-accumulates of conv, linear, matmul/bmm, einsum and LSTM cells (fvcore; "
                 "1 fused multiply-add = 1). Batch norm, activations, additions, pooling, upsampling, biases "
                 "and sorting count 0. Executed MACs include every gate's own cost.")

# Ops that count 0 under the rule. Some have fvcore default handles (batch norm, pooling, upsampling):
# they get an explicit zero handle, because set_op_handle(op=None) leaves a default handle in force.
FREE_OPS = [
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler", "aten::adaptive_avg_pool1d", "aten::adaptive_max_pool2d", "aten::max_pool2d",
    "aten::max_pool1d", "aten::avg_pool2d", "aten::avg_pool1d", "aten::relu", "aten::relu_", "aten::add",
    "aten::add_", "aten::addcmul", "aten::mul", "aten::mul_", "aten::sub", "aten::rsub", "aten::div", "aten::mean",
    "aten::sum", "aten::softmax", "aten::sigmoid", "aten::gt", "aten::lt", "aten::ge", "aten::embedding",
    "aten::topk", "aten::sort", "aten::gather", "aten::scatter", "aten::scatter_", "aten::where", "aten::cat",
    "aten::stack", "aten::pad", "aten::constant_pad_nd", "aten::masked_fill", "aten::clamp", "aten::max",
    "aten::amax", "aten::norm", "aten::linalg_vector_norm", "aten::sqrt", "aten::exp", "aten::log", "aten::neg",
    "aten::tanh", "aten::tanh_", "aten::sigmoid_", "aten::unsafe_chunk", "aten::sin", "aten::cos", "aten::gelu",
    "aten::dropout", "aten::ones_like", "aten::zeros_like", "aten::expand_as",
    "aten::type_as", "aten::clone", "aten::abs", "aten::pow", "aten::reciprocal", "aten::index",
    "aten::index_select", "aten::index_copy", "aten::argmax", "aten::eq", "aten::ne", "aten::fill_",
    "aten::copy_", "aten::full", "aten::bernoulli", "aten::bernoulli_", "aten::rand", "aten::rand_like", "aten::log_softmax",
    "aten::unflatten",
]


class UncountedOpError(RuntimeError):
    """fvcore met an op that the counting rule does not cover."""


def _free(inputs: list[Any], outputs: list[Any]) -> Counter:
    return Counter()


def lstm_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    4·h·(i_l + h) MACs per step, sample, layer and direction (i_l = input size, then directions·h)."""
    shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
    num_layers, bidirectional, batch_first = (inputs[i].toIValue() for i in (4, 7, 8))
    directions = 2 if bidirectional else 1
    hidden = out_shape[-1] // directions
    steps, batch = (shape[1], shape[0]) if batch_first else (shape[0], shape[1] if len(shape) == 3 else 1)
    per_step = sum(4 * hidden * ((shape[-1] if layer == 0 else directions * hidden) + hidden)
                   for layer in range(num_layers))
    return batch * steps * directions * per_step


def mac_analysis(model: nn.Module, example: torch.Tensor) -> FlopCountAnalysis:
    """fvcore analysis of `model` on `example` with the suite's op handles."""
    analysis = FlopCountAnalysis(model, example)
    analysis.set_op_handle(**{op: _free for op in FREE_OPS})
    analysis.set_op_handle("aten::lstm", lstm_handle)
    analysis.tracer_warnings("all")
    analysis.unsupported_ops_warnings(False)  # raised as UncountedOpError below instead
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_macs(model: nn.Module, example: torch.Tensor, by_module: bool = False) -> int | dict[str, int]:
    """MACs of one forward pass of `model` on `example` — total, or per module name (summed over the batch)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), recording_suspended():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            analysis = mac_analysis(model, example)
            total = analysis.total()
            unsupported = analysis.unsupported_ops()
            by_name = analysis.by_module() if by_module else None
    finally:
        model.train(was_training)
    if unsupported:
        raise UncountedOpError(f"fvcore cannot count {dict(unsupported)}: add a handle (bench.measure.macs) or list it as free")
    return {name: int(v) for name, v in by_name.items()} if by_name is not None else int(total)


def flop_counter_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs by torch.utils.flop_counter (it reports 2 FLOPs per MAC): the independent cross-check of fvcore."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recording_suspended(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class MacSummary:
    """Per-sample executed MACs of a model over an evaluation set (MACs, not FLOPs)."""

    dense: int  # the same backbone with gates removed / all units executed
    mean: float
    std: float
    p50: float
    p95: float

    @property
    def saving(self) -> float:
        """Fraction (0-1) of the dense MACs saved on average."""
        return 1.0 - self.mean / self.dense

    @classmethod
    def from_samples(cls, dense: int, per_sample: torch.Tensor) -> "MacSummary":
        values = per_sample.double()
        return cls(dense, float(values.mean()), float(values.std(unbiased=False)),
                   float(values.quantile(0.5)), float(values.quantile(0.95)))


@dataclass(frozen=True)
class UnitCost:
    """One gated unit: `macs` at full execution (per sample), over `width` channels/neurons (block: 1)."""

    name: str
    kind: str
    macs: int
    width: int
    modules: tuple[str, ...]


@dataclass(frozen=True)
class UnitTable:
    """Per-sample MAC costs of a gated model: MACs_n = always_on + gates + Σ_u f_{n,u}·M_u (§0.4)."""

    total: int  # every unit executed, gates included
    always_on: int  # stem, head, shortcuts, ungated blocks
    gates: dict[str, int]  # each overhead module's own MACs (gate modules, light paths), run for every sample
    units: tuple[UnitCost, ...]

    def per_sample(self, trace: GateTrace) -> torch.Tensor:
        """Executed MACs of every sample recorded in `trace` (float64 [N]; exact integers for hard gates)."""
        if not self.units:
            raise DynBenchError("the model has no gated units: its executed MACs are the constant `total`")
        macs = None
        for unit in self.units:
            decision = trace.stacked(unit.name).double()
            kept = decision if decision.dim() == 1 else decision.flatten(1).sum(1)
            term = kept * unit.macs / unit.width  # kept·M/width stays an exact integer for 0/1 masks
            if macs is not None and len(term) != len(macs):
                raise DynBenchError(f"unit '{unit.name}' recorded {len(term)} samples, others {len(macs)}")
            macs = term if macs is None else macs + term
        return macs + (self.always_on + sum(self.gates.values()))

    def format(self, dense: int | None = None) -> str:
        """The table as aligned text, with the counting rule underneath."""
        dense = dense or self.total
        rows = [("always-on (stem, head, shortcuts, ungated)", "-", "-", self.always_on)]
        rows += [(f"gate {name}", "overhead", "-", macs) for name, macs in self.gates.items()]
        rows += [(u.name, u.kind, str(u.width), u.macs) for u in self.units]
        lines = [f"{'unit':<44} {'kind':<9} {'width':>5} {'MACs':>15} {'% dense':>8}"]
        lines += [f"{name:<44} {kind:<9} {width:>5} {macs:>15,d} {100 * macs / dense:>7.2f}%" for name, kind, width, macs in rows]
        lines.append(f"{'total (all units executed)':<44} {'':<9} {'':>5} {self.total:>15,d} {100 * self.total / dense:>7.2f}%")
        return "\n".join(lines + ["", COUNTING_RULE])


def unit_table(model: nn.Module, example: torch.Tensor) -> UnitTable:
    """Count `model` once with fvcore (every wrapper in masked execution, so every gate is open and every
    unit runs) and split its MACs into always-on, gate overheads and units. `example`: a batch of one."""
    if len(example) != 1:
        raise DynBenchError(f"unit_table needs a batch of one sample, got {len(example)}")
    by_module = count_macs(model, example, by_module=True)
    names = {id(module): name for name, module in model.named_modules()}
    units, gates = [], {}
    for wrapper in gated_units(model):
        spec = wrapper.unit()
        if wrapper.fast_path is not None:
            raise DynBenchError(f"count units in masked execution; '{spec.name}' is in a really-skipping one")
        modules = tuple(names[id(m)] for m in spec.scaled)
        units.append(UnitCost(spec.name, spec.kind, sum(by_module.get(n, 0) for n in modules), spec.width, modules))
        # an overhead module shared by several units counts once; a module called from several gates
        # (SkipNet's one LSTM) is attributed by fvcore to its first name: the per-gate split shifts, the sum holds
        for module in spec.overhead:
            gates[names[id(module)]] = by_module.get(names[id(module)], 0)
    total = by_module[""]
    always_on = total - sum(u.macs for u in units) - sum(gates.values())
    if always_on < 0:
        raise DynBenchError("unit modules overlap: their MACs exceed the model's total")
    return UnitTable(total, always_on, gates, tuple(units))


def executed_macs(model: nn.Module, example: torch.Tensor, trace: GateTrace, dense_macs: int) -> MacSummary:
    """Per-sample executed MACs of `model` over the samples recorded in `trace`, against `dense_macs`
    (the backbone without gates). A model without gated units executes a constant amount."""
    example = example[:1]
    if not gated_units(model):
        macs = float(count_macs(model, example))
        return MacSummary(dense_macs, macs, 0.0, macs, macs)
    return MacSummary.from_samples(dense_macs, unit_table(model, example).per_sample(trace))


def describe_backbone(backbone: nn.Module, example: torch.Tensor) -> str:
    """Per-block cost table of a plain backbone: each block's residual branch (first + second: the unit a
    block gate skips) and shortcut, plus stem, head, totals, parameters, and the FlopCounterMode check."""
    example = example[:1]
    by_module = count_macs(backbone, example, by_module=True)
    total = by_module[""]
    params = {name: count_params(module) for name, module in backbone.named_children()}
    lines = [f"{'module':<12} {'params':>11} {'shortcut MACs':>15} {'branch MACs':>15} {'% dense':>8}",
             f"{'stem':<12} {params['stem']:>11,d} {'':>15} {by_module.get('stem', 0):>15,d} "
             f"{100 * by_module.get('stem', 0) / total:>7.2f}%"]
    for i, block in enumerate(backbone.blocks):
        name = f"blocks.{i}"
        branch = by_module.get(f"{name}.first", 0) + by_module.get(f"{name}.second", 0)
        lines.append(f"{name:<12} {count_params(block):>11,d} {by_module.get(f'{name}.shortcut', 0):>15,d} "
                     f"{branch:>15,d} {100 * branch / total:>7.2f}%")
    lines.append(f"{'head':<12} {params['head']:>11,d} {'':>15} {by_module.get('head', 0):>15,d} "
                 f"{100 * by_module.get('head', 0) / total:>7.2f}%")
    lines.append(f"{'total':<12} {count_params(backbone):>11,d} {'':>15} {total:>15,d} {100.0:>7.2f}%")
    lines.append(f"FlopCounterMode cross-check: {flop_counter_macs(backbone, example):,d} MACs")
    return "\n".join(lines + ["", COUNTING_RULE])
