"""MAC counting with fvcore, under the suite's counting rule.

Rule (printed under every table): MACs = multiply-accumulates of conv, linear, matmul/bmm, einsum and
LSTM cells; fvcore calls them "flops" (one fused multiply-add = 1). Batch norm, activations, adds,
pooling, upsampling, biases and sorting count 0. Any op that is neither counted nor listed as free
below is an error, so no op passes silently.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

with warnings.catch_warnings():  # fvcore's imports call the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from bench.gates import GateTrace

COUNTING_RULE = ("MACs: multiply-accumulates of conv, linear, matmul/bmm, einsum and LSTM cells (fvcore; "
                 "1 fused multiply-add = 1). Batch norm, activations, additions, pooling, upsampling, biases "
                 "and sorting count 0. Executed MACs include every gate's own cost.")

# Ops that cost 0 MACs under the rule. Some have fvcore default handles that count them (batch norm,
# pooling, upsampling); fvcore's set_op_handle(op=None) keeps an existing handle, so these get a handle
# that returns an empty count instead.
FREE_OPS = [
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler", "aten::adaptive_avg_pool1d", "aten::adaptive_max_pool2d", "aten::max_pool2d",
    "aten::max_pool1d", "aten::avg_pool2d", "aten::avg_pool1d", "aten::relu", "aten::relu_", "aten::add",
    "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::rsub", "aten::div", "aten::mean",
    "aten::sum", "aten::softmax", "aten::sigmoid", "aten::gt", "aten::lt", "aten::ge", "aten::embedding",
    "aten::topk", "aten::sort", "aten::gather", "aten::scatter", "aten::where", "aten::cat", "aten::stack",
    "aten::pad", "aten::constant_pad_nd", "aten::masked_fill", "aten::clamp", "aten::max", "aten::amax",
    "aten::norm", "aten::linalg_vector_norm", "aten::sqrt", "aten::exp", "aten::log", "aten::neg",
    "aten::tanh", "aten::gelu", "aten::dropout", "aten::ones_like", "aten::zeros_like", "aten::expand_as",
    "aten::type_as", "aten::clone", "aten::abs", "aten::pow", "aten::reciprocal", "aten::index",
    "aten::index_select", "aten::argmax", "aten::eq", "aten::ne", "aten::fill_", "aten::copy_",
]


def _zero_macs(inputs: list, outputs: list) -> Counter:
    return Counter()


class UncountedOpError(RuntimeError):
    """fvcore met an op that the counting rule does not cover."""


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


def mac_analysis(model: nn.Module, example: torch.Tensor) -> FlopCountAnalysis:
    """fvcore analysis of `model` on `example` (a batch of one) with the suite's op handles."""
    analysis = FlopCountAnalysis(model, example)
    analysis.set_op_handle(**{op: _zero_macs for op in FREE_OPS})
    analysis.tracer_warnings("all")
    analysis.unsupported_ops_warnings(False)  # raised as UncountedOpError below instead
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_macs(model: nn.Module, example: torch.Tensor, by_module: bool = False) -> int | dict[str, int]:
    """MACs of one forward pass of `model` on `example` (batch of one) — total, or per module name."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            analysis = mac_analysis(model, example)
            total = analysis.total()
            unsupported = analysis.unsupported_ops()
            by_name = analysis.by_module() if by_module else None
    finally:
        model.train(was_training)
    if unsupported:
        raise UncountedOpError(f"fvcore cannot count {dict(unsupported)}: add a handle (bench.macs) or list it as free")
    return dict(by_name) if by_name is not None else int(total)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def executed_macs(model: nn.Module, example: torch.Tensor, trace: GateTrace, dense_macs: int) -> MacSummary:
    """Per-sample executed MACs of `model` over the samples recorded in `trace`, against `dense_macs`."""
    if not trace.units():
        macs = float(count_macs(model, example))
        return MacSummary(dense_macs, macs, 0.0, macs, macs)
    raise NotImplementedError("executed MACs of gated units need the unit table of bench.macs")
