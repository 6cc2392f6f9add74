"""Batch-shaping channel gating (BAS): Ehteshami Bejnordi, Blankevoort, Welling, "Batch-Shaping for
Learning Conditional Channel Gated Networks", ICLR 2020. Spec: methods.md §4 (official code covers the
loss only; gate module and schedule follow the CIFAR reimplementations the spec cites).

Gated residual block (§0.1, §4.2): y = ReLU(s(x) + BN2(conv2(G ⊙ h))), h = ReLU(BN1(conv1(x))), one gate
per channel of h (hidden unit of the first linear for the residual MLP, conv1d channel for text, §4.8).
Gate module (§4.3): pool(x) -> linear C_in->16 (no bias) -> BN -> ReLU -> linear 16->C (bias) -> logits z.
Training: hard binary concrete, τ = 2/3, straight-through (§4.4); eval: G = 1[σ(z) > 0.5].

Loss (§4.5): L = CE + γ(e)·L_BS + λ(e)·L_L0 with
- L_BS: per gate, the Cramér–von Mises distance between the empirical CDF of its noise-free σ(z) over
  the batch and the CDF of the Beta(0.6, 0.4) prior, (1/N) Σ_i (i/(N+1) − F*(x_(i)))²; the gradient
  through F* uses the Beta pdf clipped to [1e-3, 100] (as the official loss code); reduced as the mean
  over a layer's gates summed over layers (`bs_reduce=layer_mean_sum`) or summed over all gates (`sum`);
- L_L0: mean of σ(z) over all gates and samples (expected fraction of active channels);
- curriculum: γ = 0.75·(1 − e/100) until epoch 100 of 500, λ ramps linearly from 0 at epoch 100 to its
  value at epoch 300; here as fractions of the run (0.2 and 0.6), so every profile keeps the shape.

Options: tau, gate_hidden, prior_a, prior_b, bs_weight (γ at the start), bs_end_frac, l0_weight (λ),
l0_start_frac, l0_full_frac, bs_reduce, bs_memory (detached gate values of the last K batches added
to each gate's sample, §4.8; 0 for classification), batch_shaping (false = the L0-only ablation, which
§4.9 expects to collapse to always-on/always-off gates).
Presets: `lambda_<λ>` for the spec's sweep λ ∈ {0, 0.05, 0.1, 0.2, 0.3, 0.5} (default λ = 0.2), and
`l0_only` (batch_shaping=false, λ = 0.2).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from scipy.special import betainc
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.gate_stats import channel_report
from bench.gating.gates import GateTrace, record_extra, relax
from bench.method import Method, StepContext
from bench.registry import register_method
from bench.gating.units import wrap_hidden_units
from bench.gating.wrappers import ChannelGate, gated_units

PDF_CLIP = (1e-3, 100.0)  # the Beta(a, b < 1) pdf diverges at 0 and 1 (official loss code clips it)
BS_REDUCTIONS = ("layer_mean_sum", "sum")
L0_SWEEP = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)  # §4.5 [PROPOSED] trade-off sweep


CDF_TABLE_SIZE = 65536  # intervals of the tabulated CDF: max error ~1e-5 (checked in the tests)


@functools.lru_cache(maxsize=8)
def beta_cdf_table(a: float, b: float) -> torch.Tensor:
    """Beta(a, b) CDF (scipy's regularised incomplete beta) on a grid x = (1 − cos πt)/2, t uniform: the
    grid is dense at 0 and 1, where the CDF of a, b < 1 is steepest. Per-element betainc is ~200 ns, too
    slow to call on every gate every step."""
    t = torch.linspace(0, 1, CDF_TABLE_SIZE + 1, dtype=torch.float64)
    return torch.from_numpy(betainc(a, b, ((1 - torch.cos(math.pi * t)) / 2).numpy()))


class BetaCDF(torch.autograd.Function):
    """F*(x) of Beta(a, b), interpolated in the table above in the forward pass, with the clipped pdf
    as its derivative."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.a, ctx.b = a, b
        table = beta_cdf_table(a, b).to(x.device)
        position = torch.arccos(1 - 2 * x.detach().double().clamp(0, 1)) / math.pi * CDF_TABLE_SIZE
        left = position.floor().long().clamp(max=CDF_TABLE_SIZE - 1)
        weight = position - left
        return (table[left] * (1 - weight) + table[left + 1] * weight).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad * beta_pdf(x, ctx.a, ctx.b).clamp(*PDF_CLIP), None, None


def beta_pdf(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """x^(a−1)·(1−x)^(b−1) / B(a, b); +inf at an endpoint where the exponent is negative."""
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    x64 = x.double()
    return ((a - 1) * x64.log() + (b - 1) * (1 - x64).log() + log_norm).exp().to(x.dtype)


def batch_shaping_loss(values: torch.Tensor, a: float, b: float, memory: torch.Tensor | None = None) -> torch.Tensor:
    """Per-gate CvM distance [C] between the batch distribution of `values` [N, C] (σ(z) in [0, 1]) and
    Beta(a, b) (§4.5). `memory` [M, C] adds detached values of earlier batches to the sample."""
    sample = values if memory is None else torch.cat([values, memory.detach()])
    n = len(sample)
    sorted_values = sample.sort(0).values  # sorting carries no gradient of its own; values flow to their slots
    ecdf = torch.arange(1, n + 1, dtype=values.dtype, device=values.device).div(n + 1).unsqueeze(1)
    return (ecdf - BetaCDF.apply(sorted_values, a, b)).pow(2).mean(0)


def curriculum(progress: float, bs_weight: float, bs_end_frac: float, l0_weight: float, l0_start_frac: float,
               l0_full_frac: float) -> tuple[float, float]:
    """(γ, λ) at `progress` (fraction 0–1 of the training steps), §4.5: γ decays linearly from
    `bs_weight` to 0 at `bs_end_frac`; λ is 0 before `l0_start_frac` and ramps to `l0_weight` at `l0_full_frac`."""
    gamma = bs_weight * max(0.0, 1.0 - progress / bs_end_frac) if bs_end_frac > 0 else 0.0
    if progress >= l0_full_frac:
        lam = l0_weight
    elif progress < l0_start_frac:
        lam = 0.0
    else:
        lam = l0_weight * (progress - l0_start_frac) / (l0_full_frac - l0_start_frac)
    return gamma, lam


class ChannelGateModule(nn.Module):
    """§4.3: pool(x) -> linear C_in->hidden (no bias) -> BN -> ReLU -> linear hidden->C -> logits z;
    hard binary concrete in training, 1[z > 0] at eval. Keeps the noise-free σ(z) of the last forward
    for the losses and records it in the trace as the extra "prob" (§0.5)."""

    def __init__(self, block: ResidualBlock, c_in: int, channels: int, name: str, hidden: int, tau: float) -> None:
        super().__init__()
        self.pool = block.pool
        self.reduce = nn.Linear(c_in, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.expand = nn.Linear(hidden, channels)
        self.name, self.tau = name, tau
        self.last_prob: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.expand(F.relu(self.norm(self.reduce(self.pool(x)))))
        self.last_prob = torch.sigmoid(z)
        record_extra(self.name, "prob", self.last_prob)
        return relax("binary_concrete", z, self.training, tau=self.tau)


@register_method
class BatchShaping(Method):
    name = "batch_shaping"
    description = "BAS channel gating (ICLR'20): binary-concrete channel gates, batch-shaping + L0 curriculum"
    options = {
        "tau": 2 / 3, "gate_hidden": 16, "prior_a": 0.6, "prior_b": 0.4,
        "bs_weight": 0.75, "bs_end_frac": 0.2, "l0_weight": 0.2, "l0_start_frac": 0.2, "l0_full_frac": 0.6,
        "bs_reduce": "layer_mean_sum", "bs_memory": 0, "batch_shaping": True,
    }
    presets = {"default": {}, **{f"lambda_{lam:g}": {"l0_weight": lam} for lam in L0_SWEEP},
               "l0_only": {"batch_shaping": False}}

    def __init__(self, preset: str = "default", **overrides: Any) -> None:
        super().__init__(preset, **overrides)
        self.memory: dict[str, list[torch.Tensor]] = {}

    def validate(self) -> None:
        c = self.config
        for key in ("bs_weight", "l0_weight"):
            if c[key] < 0:
                raise DynBenchError(f"batch_shaping: {key} must be >= 0 (a loss weight), not {c[key]}")
        if c["tau"] <= 0 or c["prior_a"] <= 0 or c["prior_b"] <= 0:
            raise DynBenchError(f"batch_shaping: tau, prior_a, prior_b must be > 0 "
                                f"(got {c['tau']}, {c['prior_a']}, {c['prior_b']})")
        if not 0 <= c["l0_start_frac"] <= c["l0_full_frac"] <= 1 or not 0 <= c["bs_end_frac"] <= 1:
            raise DynBenchError("batch_shaping: need 0 <= l0_start_frac <= l0_full_frac <= 1 and 0 <= bs_end_frac <= 1")
        if c["bs_reduce"] not in BS_REDUCTIONS:
            raise DynBenchError(f"batch_shaping: bs_reduce must be one of {', '.join(BS_REDUCTIONS)}, not {c['bs_reduce']!r}")
        if int(c["gate_hidden"]) < 1 or int(c["bs_memory"]) < 0:
            raise DynBenchError("batch_shaping: gate_hidden must be >= 1 and bs_memory >= 0")

    def build(self, backbone: nn.Module) -> nn.Module:
        c = self.config
        return wrap_hidden_units(backbone, lambda name, block, c_in, width: ChannelGate(
            block, ChannelGateModule(block, c_in, width, name, int(c["gate_hidden"]), c["tau"]), name), self.name)

    def extra_losses(self, model: nn.Module, step: StepContext) -> dict[str, torch.Tensor]:
        c = self.config
        gamma, lam = curriculum(step.step / max(step.total_steps, 1), c["bs_weight"] if c["batch_shaping"] else 0.0,
                                c["bs_end_frac"], c["l0_weight"], c["l0_start_frac"], c["l0_full_frac"])
        probs = {unit.name: unit.gate.last_prob for unit in gated_units(model)}
        losses = {"l0": lam * torch.cat([p.flatten() for p in probs.values()]).mean()}
        if c["batch_shaping"]:
            per_layer = [self.shaping(name, p) for name, p in probs.items()]
            reduce = torch.mean if c["bs_reduce"] == "layer_mean_sum" else torch.sum
            losses["batch_shaping"] = gamma * torch.stack([reduce(cvm) for cvm in per_layer]).sum()
        return losses

    def shaping(self, unit: str, prob: torch.Tensor) -> torch.Tensor:
        """CvM per gate of one unit, with the last `bs_memory` batches' values added to the sample."""
        memory = self.memory.setdefault(unit, [])
        cvm = batch_shaping_loss(prob, self.config["prior_a"], self.config["prior_b"],
                                 torch.cat(memory) if memory else None)
        if self.config["bs_memory"]:
            memory.append(prob.detach())
            del memory[:-int(self.config["bs_memory"])]
        return cvm

    def state_dict(self) -> dict[str, Any]:
        """The `bs_memory` batches of gate values kept across steps (and epochs)."""
        return {"memory": {unit: list(values) for unit, values in self.memory.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = {unit: list(values) for unit, values in state.get("memory", {}).items()}

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        """§4.9: shares of always-on / conditional / always-off channel gates and the active fraction."""
        return channel_report(trace)
