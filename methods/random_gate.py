"""Random-gate control, trained variant (methods.md §7): every block is kept with a fixed per-block rate
p̂_u, drawn independently per sample, in training (stochastic-depth style) and at evaluation. It asks
whether a learned, input-conditioned gate beats matched random dropping.

Rates, one of:
- `keep_rate`: the same rate for every block;
- `rates`: one rate per block, in block order;
- `match_record`: a trained method's run record (a path, or a spec hash under `results/runs/`) whose
  `val_exec_rate_per_unit` gives the rates; blocks that method left ungated keep rate 1.
The gate is `bench.gates.RandomGate` (no parameters, 0 MACs); the composition defaults to the design's
block gate y = ReLU(s + g·F) — set `composition` to the compared method's (skipnet, no_act).
Evaluation is stochastic by design (seeded by the run's gate seed): repeat seeds for the spread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.blockgates import check_choice, check_fraction, gate_blocks, require_blocks
from bench.gates import GateTrace, RandomGate
from bench.method import Method
from bench.records import load_record
from bench.registry import register_method
from bench.wrappers import COMPOSITIONS, BlockGate

RESULTS_RUNS = Path("results") / "runs"  # where a bare spec hash is looked up


def record_rates(reference: str) -> dict[str, float]:
    """Per-unit validation execution rates of the run record `reference` (path or spec hash)."""
    path = Path(reference)
    if not path.is_file():
        path = RESULTS_RUNS / f"{reference}.json"
    if not path.is_file():
        raise DynBenchError(f"random_gate: match_record '{reference}' is neither a record file nor a spec hash "
                            f"under {RESULTS_RUNS}; run the method to match first")
    rates = load_record(path).metrics.get("val_exec_rate_per_unit")
    if not rates:
        raise DynBenchError(f"random_gate: record {path} has no gated units (val_exec_rate_per_unit is empty)")
    return {unit: float(rate) for unit, rate in rates.items()}


@register_method
class RandomGateControl(Method):
    """Options: keep_rate (fraction 0–1), rates (list or None), match_record (path / spec hash or None),
    composition (aig | skipnet | no_act)."""

    name = "random_gate"
    description = "control: blocks kept at random with fixed per-block rates, in training and at eval (§7)"
    options = {"keep_rate": 0.5, "rates": None, "match_record": None, "composition": "aig"}
    presets = {"default": {}, **{f"keep{round(100 * p)}": {"keep_rate": p} for p in (0.25, 0.5, 0.75)}}

    def validate(self) -> None:
        c = self.config
        check_fraction(self.name, "keep_rate", c["keep_rate"])
        check_choice(self.name, "composition", c["composition"], tuple(COMPOSITIONS))
        if c["rates"] is not None and c["match_record"] is not None:
            raise DynBenchError(f"{self.name}: give rates or match_record, not both")
        for rate in c["rates"] or []:
            check_fraction(self.name, "rates", rate)
        if c["match_record"] is not None:
            for rate in record_rates(c["match_record"]).values():
                check_fraction(self.name, "match_record rates", rate)

    def block_rates(self, names: list[str]) -> dict[str, float]:
        c = self.config
        if c["rates"] is not None:
            if len(c["rates"]) != len(names):
                raise DynBenchError(f"{self.name}: rates has {len(c['rates'])} entries for {len(names)} blocks")
            return dict(zip(names, map(float, c["rates"])))
        if c["match_record"] is not None:
            matched = record_rates(c["match_record"])
            unknown = sorted(set(matched) - set(names))
            if unknown:
                raise DynBenchError(f"{self.name}: the matched record gates units {unknown} that this backbone lacks")
            return {name: matched.get(name, 1.0) for name in names}
        return {name: float(c["keep_rate"]) for name in names}

    def build(self, backbone: nn.Module) -> nn.Module:
        self.rates = self.block_rates(require_blocks(backbone, self.name).block_names())

        def make(name: str, block: ResidualBlock) -> BlockGate:
            return BlockGate(block, RandomGate(self.rates[name]), name, self.config["composition"])

        return gate_blocks(backbone, self.name, make)

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        return {"random_gate_rates": dict(self.rates)}
