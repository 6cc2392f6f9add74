"""MID-L, the Matrix-Interpolated Dropout Layer: Shaeri, Middel, arXiv 2505.11416 (NeurIPS 2025 ScaleOPT
workshop). Spec: methods.md §6 — no code or equations were available, so the layer is the spec's
reconstruction [PROPOSED].

Layer (§6.2), for the first layer of each residual branch (input x ∈ R^d, m output units):
- code u = V x (V: r×d), scores a = σ(S u + e) ∈ (0, 1)^m (S: m×r);
- mask M = TopK(a, k), k = round(ρ·m), straight-through in training: M̃ = M + a − sg(a);
- output M̃ ⊙ h_f + (1 − M̃) ⊙ h_ℓ, h_f = the host layer (linear/conv + norm + activation) computed for
  the selected units only at inference, h_ℓ the light path: act(U u + c) (`light=lowrank`) or 0
  (`light=zero`, pure dynamic dropout that also thins the next layer's input).
Train and eval are the same deterministic top-k; k may anneal linearly from m to ρm over the first
`k_warmup_frac` of the epochs. Loss: CE only (the budget is fixed by k).

Placement (§6.4): hidden units of the first linear of every residual-MLP block; for conv blocks
(CIFAR ResNet, segmentation encoder, text) [ADAPT] the output channels of conv1, with scores from the
pooled block input (GAP; masked mean over valid tokens for text) via linear C_in->r->C_out and the
light path 1×1 conv C_in->r (conv1's stride) -> 1×1 conv r->C_out -> conv1's activation.

Where this departs from §6.2 by construction of the shared wrapper (`bench.gating.wrappers.NeuronGate`):
the mix happens after the host layer's norm and activation, so the light path carries the activation
itself; with hard masks the forward pass is identical, the straight-through gradient of a score is
h_f − h_ℓ after instead of before the activation.

MACs (§6.3) come from `bench.measure.macs`: the selected rows of the host layer scale with k/m; the score
network (V, S) and the light path run for every sample and are declared overhead; with `light=zero`
the next layer reads only the k selected units, so its MACs scale with k/m as well, while with
`light=lowrank` it reads all m (no downstream saving, §6.6). On vectors V runs once (the light path
reads the gate's code): r·d + 2·r·m + k·d per layer as in §6.3. On maps the gate's code is V·GAP(x)
and the light path has its own 1×1 convolutions, as the §6.4 row describes.

Options: rho (ρ ∈ (0, 1]), k (a fixed count for every layer instead of ρ·m), rank (r; default
max(4, round(m/32))), light (lowrank | zero), k_warmup_frac, selection (learned | random: the control of
methods.md §7 — k units drawn uniformly at random per input, in training and at eval, with the same k,
light path and schedule; the score layer S does not run). Presets: default (ρ = 0.45, lowrank),
zero (light=zero), rho_0.25 and rho_0.65 (a budget sweep: the default's ρ ∓ 0.2, a grid fixed in advance;
no score chose these values — an earlier note here tied rho_0.25 to a test figure, and that reason is
withdrawn), random_topk (the default's random control).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.gate_stats import channel_report
from bench.gating.gates import GateTrace, relax
from bench.method import Method
from bench.gating.pruning import NORMS
from bench.registry import register_method
from bench.gating.units import wrap_hidden_units
from bench.gating.wrappers import NeuronGate, gated_units

LIGHT_PATHS = ("lowrank", "zero")
SELECTIONS = ("learned", "random")


def default_rank(width: int) -> int:
    """§6.2: r = max(4, round(m/32))."""
    return max(4, round(width / 32))


class ScoreGate(nn.Module):
    """u = V·pool(x), a = σ(S u + e), decisions TopK(a, k) (straight-through in training). Keeps the code
    u of the last forward for a light path that reads it."""

    def __init__(self, block: ResidualBlock, d: int, m: int, rank: int, k: int, random: bool = False) -> None:
        super().__init__()
        self.random = random
        self.pool = block.pool
        self.code = nn.Linear(d, rank, bias=False)
        self.score = nn.Linear(rank, m)
        self.k, self.k_final = k, k  # k anneals during warm-up (Midl.on_epoch_start)
        self.last_code: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_code = self.code(self.pool(x))
        if self.random:  # the random top-k control: uniform scores, so any k of the m units are equally likely
            return relax("topk", torch.rand(len(x), self.score.out_features, device=x.device), self.training, k=self.k)
        return relax("topk", torch.sigmoid(self.score(self.last_code)), self.training, k=self.k)


def activation_tail(block: ResidualBlock) -> nn.Sequential:
    """The host layer's channel-wise tail after its norm (ReLU; text: also the padding mask), shared."""
    return nn.Sequential(*[layer for layer in list(block.first)[1:] if not isinstance(layer, NORMS)])


class CodeLight(nn.Module):
    """Light path on vectors: h_ℓ = act(U u + c), u the gate's code (V runs once, inside the gate)."""

    def __init__(self, gate: ScoreGate, block: ResidualBlock, rank: int, m: int) -> None:
        super().__init__()
        self.source = (gate,)  # a tuple, not a submodule: V and its MACs belong to the gate
        self.up = nn.Linear(rank, m)
        self.tail = activation_tail(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.up(self.source[0].last_code))


class ConvLight(nn.Module):
    """Light path on maps (§6.4): 1×1 conv C_in->r with conv1's stride -> 1×1 conv r->C_out -> activation."""

    def __init__(self, block: ResidualBlock, rank: int) -> None:
        super().__init__()
        conv = block.first[0]
        Conv = nn.Conv2d if isinstance(conv, nn.Conv2d) else nn.Conv1d
        self.down = Conv(conv.in_channels, rank, 1, stride=conv.stride, bias=False)
        self.up = Conv(rank, conv.out_channels, 1)
        self.tail = activation_tail(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.up(self.down(x)))


@register_method
class Midl(Method):
    name = "midl"
    description = "MID-L (arXiv 2505.11416): per-input top-k neurons take the full path, the rest a low-rank one"
    options = {"rho": 0.45, "k": None, "rank": None, "light": "lowrank", "k_warmup_frac": 0.1, "selection": "learned"}
    presets = {"default": {}, "zero": {"light": "zero"}, "rho_0.25": {"rho": 0.25}, "rho_0.65": {"rho": 0.65},
               "random_topk": {"selection": "random"}}

    def validate(self) -> None:
        c = self.config
        if not 0 < c["rho"] <= 1:
            raise DynBenchError(f"midl: rho (fraction of units on the full path) must lie in (0, 1], not {c['rho']}")
        for key in ("k", "rank"):
            if c[key] is not None and (not isinstance(c[key], int) or c[key] < 1):
                raise DynBenchError(f"midl: {key} must be a positive integer or None, not {c[key]!r}")
        if c["light"] not in LIGHT_PATHS:
            raise DynBenchError(f"midl: light must be one of {', '.join(LIGHT_PATHS)}, not {c['light']!r}")
        if c["selection"] not in SELECTIONS:
            raise DynBenchError(f"midl: selection must be one of {', '.join(SELECTIONS)}, not {c['selection']!r}")
        if not 0 <= c["k_warmup_frac"] <= 1:
            raise DynBenchError(f"midl: k_warmup_frac must lie in [0, 1], not {c['k_warmup_frac']}")

    def layer_sizes(self, name: str, d: int, m: int) -> tuple[int, int]:
        """(k, r) of the layer `name` with input width d and m units; too large a k or r is an error."""
        c = self.config
        k = c["k"] if c["k"] is not None else max(1, round(c["rho"] * m))
        rank = c["rank"] if c["rank"] is not None else default_rank(m)
        if k > m:
            raise DynBenchError(f"midl: k={k} exceeds the {m} units of {name}; lower k or use rho")
        if rank > min(d, m):
            raise DynBenchError(f"midl: rank={rank} is not low-rank for {name} ({d} inputs, {m} units)")
        return k, rank

    def build(self, backbone: nn.Module) -> nn.Module:
        def make(name: str, block: ResidualBlock, d: int, m: int) -> NeuronGate:
            k, rank = self.layer_sizes(name, d, m)
            gate = ScoreGate(block, d, m, rank, k, random=self.config["selection"] == "random")
            light = None
            if self.config["light"] == "lowrank":
                light = CodeLight(gate, block, rank, m) if isinstance(block.first[0], nn.Linear) else ConvLight(block, rank)
            return NeuronGate(block, gate, name, light=light)

        return wrap_hidden_units(backbone, make, self.name)

    def on_epoch_start(self, model: nn.Module, epoch: int, num_epochs: int) -> None:
        """§6.2 k warm-up: k falls linearly from m to ρm over the first k_warmup_frac of the epochs."""
        warmup_epochs = round(self.config["k_warmup_frac"] * num_epochs)
        for unit in gated_units(model):
            gate, m = unit.gate, unit.width
            progress = epoch / warmup_epochs if epoch < warmup_epochs else 1.0
            gate.k = round(m - (m - gate.k_final) * progress)

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        """§6.6: gate categories, active fraction (k/m), mean pairwise mask IoU (1.0 = static masks)."""
        return {**channel_report(trace, iou=True), "k_per_unit": {unit.name: unit.gate.k for unit in gated_units(model)}}
