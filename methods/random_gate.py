"""Random-gate control, trained variant (methods.md §7): every unit is kept with a fixed rate p̂_u, drawn
independently per sample, in training (stochastic-depth style) and at evaluation. It asks whether a
learned, input-conditioned gate beats matched random dropping.

Units (`unit`): `block` — whole residual branches (the control of SkipNet, ConvNet-AIG, CosineGate);
`channel` — the hidden channels/units of each block's first layer (the control of batch-shaping, §4),
each channel kept with its own rate when the matched record has per-channel rates.
Rates, one of:
- `keep_rate`: the same rate for every unit (every channel);
- `rates`: one rate per gated block (block order), for blocks or for all channels of that block;
- `match_record`: a trained method's run record (a path, or a spec hash under `results/runs/`) whose
  *validation* execution rates give the rates (`val_exec_rate_per_gate` per channel where recorded,
  else `val_exec_rate_per_unit` per block or layer); units that method left ungated keep rate 1. The
  record must come from the same dataset and backbone; it is summarised in this run's record
  (`matched_record`), so the control goes stale when the matched run changes.
The gate is `bench.gating.gates.RandomGate` (no parameters, 0 MACs); the composition of block gates defaults to
the design's y = ReLU(s + g·F) — set `composition` to the compared method's (skipnet, no_act).
Evaluation is stochastic by design (seeded by the run's gate seed): repeat seeds for the spread.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.blockgates import check_choice, check_fraction, gate_blocks, require_blocks
from bench.gating.gates import GateTrace, RandomGate
from bench.matching import check_same_setting, load_matched, summary, val_rates
from bench.method import Method
from bench.records import RunSpec
from bench.registry import register_method
from bench.gating.pruning import width_of
from bench.gating.units import is_gateable, wrap_hidden_units
from bench.gating.wrappers import COMPOSITIONS, BlockGate, ChannelGate

UNITS = ("block", "channel")


@register_method
class RandomGateControl(Method):
    """Options: keep_rate (fraction 0–1), rates (list or None), match_record (path / spec hash or None),
    composition (aig | skipnet | no_act), unit (block | channel)."""

    name = "random_gate"
    description = "control: blocks kept at random with fixed per-block rates, in training and at eval (§7)"
    options = {"keep_rate": 0.5, "rates": None, "match_record": None, "composition": "aig", "unit": "block"}
    presets = {"default": {}, **{f"keep{round(100 * p)}": {"keep_rate": p} for p in (0.25, 0.5, 0.75)}}

    def validate(self) -> None:
        c = self.config
        check_fraction(self.name, "keep_rate", c["keep_rate"])
        check_choice(self.name, "composition", c["composition"], tuple(COMPOSITIONS))
        check_choice(self.name, "unit", c["unit"], UNITS)
        if c["rates"] is not None and c["match_record"] is not None:
            raise DynBenchError(f"{self.name}: give rates or match_record, not both")
        for rate in c["rates"] or []:
            check_fraction(self.name, "rates", rate)
        self.matched = load_matched(self.name, c["match_record"]) if c["match_record"] is not None else None
        if self.matched is not None:
            for rate in val_rates(self.name, self.matched).values():
                check_fraction(self.name, "match_record rates", rate)
            per_gate = self.matched.metrics.get("val_exec_rate_per_gate") or {}
            channel_record = any(len(rates) > 1 for rates in per_gate.values())
            if channel_record and c["unit"] == "block":
                raise DynBenchError(f"{self.name}: record {self.matched.spec_hash} ({self.matched.spec.get('method')}) "
                                    "gates channels: match it with unit=channel")

    def check_run(self, spec: RunSpec) -> None:
        if self.matched is not None:
            check_same_setting(self.name, self.matched, spec)

    def unit_rates(self, names: list[str], widths: dict[str, int]) -> dict[str, float | list[float]]:
        """The keep rate of every unit (a list of per-channel rates where the matched record has them)."""
        c = self.config
        if c["rates"] is not None:
            if len(c["rates"]) != len(names):
                raise DynBenchError(f"{self.name}: rates has {len(c['rates'])} entries for {len(names)} blocks")
            return dict(zip(names, map(float, c["rates"])))
        if self.matched is None:
            return {name: float(c["keep_rate"]) for name in names}
        matched = val_rates(self.name, self.matched)
        unknown = sorted(set(matched) - set(names))
        if unknown:
            raise DynBenchError(f"{self.name}: the matched record gates units {unknown} that this backbone lacks")
        per_gate = self.matched.metrics.get("val_exec_rate_per_gate") or {}
        rates: dict[str, float | list[float]] = {}
        for name in names:
            channel_rates = per_gate.get(name)
            if c["unit"] == "channel" and channel_rates is not None and len(channel_rates) == widths.get(name):
                rates[name] = [float(r) for r in channel_rates]
            else:
                rates[name] = matched.get(name, 1.0)
        return rates

    def build(self, backbone: nn.Module) -> nn.Module:
        blocks = require_blocks(backbone, self.name)
        if self.config["unit"] == "channel":
            return self.build_channels(blocks)
        self.rates = self.unit_rates(blocks.block_names(), {})

        def make(name: str, block: ResidualBlock) -> BlockGate:
            return BlockGate(block, RandomGate(self.rates[name]), name, self.config["composition"])

        return gate_blocks(backbone, self.name, make)

    def build_channels(self, backbone: nn.Module) -> nn.Module:
        """Random channel gates on the hidden units of every gateable block (batch-shaping's placement)."""
        widths = {name: width_of(block.first) for name, block in zip(backbone.block_names(), backbone.blocks)
                  if is_gateable(block)}
        self.rates = self.unit_rates(list(widths), widths)
        return wrap_hidden_units(backbone, lambda name, block, c_in, width: ChannelGate(
            block, RandomGate(self.rates[name], channels=width), name), self.name)

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        metrics: dict[str, Any] = {"random_gate_rates": dict(self.rates)}
        if self.matched is not None:
            metrics["matched_record"] = summary(self.matched)
        return metrics
