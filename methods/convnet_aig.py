"""ConvNet-AIG — Veit & Belongie, "Convolutional Networks with Adaptive Inference Graphs", ECCV 2018
(code andreasveit/convnet-aig). Follows methods.md §3.

Each gated block has a tiny gate on its input: pooled x → linear C→16 (bias) → BN → ReLU → linear 16→2
(bias) → logits (z_off, z_on) (§3.3; a 1×1 conv on the GAP map is this linear). Training samples a hard
Gumbel-softmax over the two logits, τ = 1, straight-through (§3.4); eval takes the deterministic argmax
(`stochastic_eval=true` keeps the noise, as the official code does). The block is y = ReLU(s(x) + g·F(x))
(§0.1, composition "aig"). The target-rate loss pulls each gated layer's batch execution rate toward t:
L = λ · mean over gated layers l with t_l < 1 of (t_l − ḡ_l)² (§3.5).

Gated blocks: all of them on classification backbones (CIFAR: "including the first and the two
downsampling blocks", §3.2); on segmentation the stem, the first block of each stage and the head stay
ungated (§3.8). A per-block `targets` list overrides t; a block with t_l = 1 is ungated (README intent,
`keep_gate_on_fixed=false`, §3.2).

MACs: the gate module is an always-running overhead (≈16·C + 32 per block); the residual branch scales
with g (§3.7). Paper-style metric: mean execution rate of the gated layers.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.blockgates import (Scratch, check_fraction, gate_blocks, in_width, live_values, require_blocks,
                             stage_openers)
from bench.gating.gates import GateTrace, gumbel_softmax2, record_extra
from bench.method import Method, StepContext
from bench.registry import register_method
from bench.gating.wrappers import BlockGate

GATE_HIDDEN = 16  # §3.3
INIT_STD = 0.001  # last layer weights [code]
INIT_BIAS = (0.1, 2.0)  # (z_off, z_on): P(on) ≈ 0.87 at the start [code]


class AIGGate(nn.Module):
    """pool(x) → linear C→16 → BN → ReLU → linear 16→2; hard Gumbel-softmax (τ) in training, argmax at eval."""

    def __init__(self, unit: str, pool: Any, c_in: int, tau: float, stochastic_eval: bool) -> None:
        super().__init__()
        self.unit, self.pool = unit, pool
        self.hidden = nn.Sequential(nn.Linear(c_in, GATE_HIDDEN), nn.BatchNorm1d(GATE_HIDDEN), nn.ReLU())
        self.logits = nn.Linear(GATE_HIDDEN, 2)
        nn.init.normal_(self.logits.weight, std=INIT_STD)
        with torch.no_grad():
            self.logits.bias.copy_(torch.tensor(INIT_BIAS))
        self.tau, self.stochastic_eval = tau, stochastic_eval
        self.scratch = Scratch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(self.hidden(self.pool(x)))
        if self.training or self.stochastic_eval:
            g = gumbel_softmax2(z, self.tau)  # one fresh noise sample per input and layer
        else:
            g = (z[:, 1] > z[:, 0]).to(z.dtype)
        self.scratch["gate"] = g
        record_extra(self.unit, "p_on", F.softmax(z, dim=-1)[:, 1])
        return g


def target_rate_loss(gates: list[torch.Tensor], targets: list[float], weight: float) -> torch.Tensor:
    """λ · mean over layers of (t_l − ḡ_l)², ḡ_l the batch mean of layer l's hard (straight-through) gate (§3.5)."""
    terms = [(t - g.mean()) ** 2 for g, t in zip(gates, targets, strict=True)]
    return weight * torch.stack(terms).mean()


@register_method
class ConvNetAIG(Method):
    """Options:
    - target: per-layer target execution rate t, fraction 0–1 (CIFAR default 0.6 [code]).
    - targets: optional list of one rate per block overriding `target`; 1 = that block is ungated.
    - weight: λ of the target-rate loss (2 on CIFAR, 1 on ImageNet [code]).
    - tau: Gumbel-softmax temperature (1, fixed in the code).
    - stochastic_eval: keep Gumbel noise at eval (official code); default deterministic argmax.
    """

    name = "convnet_aig"
    description = "ConvNet-AIG (Veit & Belongie, ECCV'18): per-block Gumbel-softmax gates with a target-rate loss"
    options = {"target": 0.6, "targets": None, "weight": 2.0, "tau": 1.0, "stochastic_eval": False}
    presets = {"default": {}, **{f"t{round(100 * t)}": {"target": t} for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)}}

    def validate(self) -> None:
        check_fraction(self.name, "target", self.config["target"])
        for t in self.config["targets"] or []:
            check_fraction(self.name, "targets", t)
        if self.config["weight"] < 0 or self.config["tau"] <= 0:
            raise DynBenchError(f"{self.name}: weight must be >= 0 and tau > 0, not {self.config['weight']}, {self.config['tau']}")

    def block_targets(self, backbone: nn.Module) -> dict[str, float]:
        """Target rate per block name; 1 = ungated."""
        names = backbone.block_names()
        targets = self.config["targets"]
        if targets is None:
            ungated = stage_openers(backbone) if backbone.family.startswith("segnet") else set()  # §3.8
            return {name: 1.0 if name in ungated else self.config["target"] for name in names}
        if len(targets) != len(names):
            raise DynBenchError(f"{self.name}: targets has {len(targets)} rates but {backbone.family} has {len(names)} blocks")
        return dict(zip(names, map(float, targets)))

    def build(self, backbone: nn.Module) -> nn.Module:
        require_blocks(backbone, self.name)
        self.targets = {name: t for name, t in self.block_targets(backbone).items() if t < 1.0}

        def make(name: str, block: ResidualBlock) -> BlockGate | None:
            if name not in self.targets:
                return None
            gate = AIGGate(name, block.pool, in_width(block), self.config["tau"], self.config["stochastic_eval"])
            return BlockGate(block, gate, name, "aig")

        return gate_blocks(backbone, self.name, make)

    def extra_losses(self, model: nn.Module, step: StepContext) -> dict[str, torch.Tensor]:
        gates = live_values(model, "gate")
        return {"target_rate": target_rate_loss(list(gates.values()), [self.targets[n] for n in gates], self.config["weight"])}

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        rates = trace.exec_rate_per_unit()
        return {"paper_metric": {"name": "mean execution rate of gated layers",
                                 "value": sum(rates.values()) / max(len(rates), 1)}}
