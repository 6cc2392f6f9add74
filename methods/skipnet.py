"""SkipNet — Wang, Yu, Dou, Darrell & Gonzalez, "SkipNet: Learning Dynamic Routing in Convolutional
Networks", ECCV 2018 (code ucbdrive/skipnet). Follows methods.md §2.

A gate reads the activations leaving block b−1 and decides whether block b runs (§2.2). Block b−1's
output *is* block b's input, so the gate of block b sits on block b's input: every block but the
first is wrapped, and no gate follows the last block. A skipped block outputs its raw shortcut:
y = g·ReLU(s(x) + F(x)) + (1 − g)·s(x) (§0.1, composition "skipnet").

Gates (§2.3, `gate=rnn|ff1|ff2`):
- rnn (default): per block pool(x) → linear C→10 (a 1×1 conv on the GAP map), then one LSTM(10, 10)
  shared by all gates — its state is zeroed when the first gated block runs, i.e. once per forward —
  and a shared linear 10→1 → sigmoid gives p.
- ff1 / ff2 (images): [maxpool 2 → conv3×3 C→C, BN, ReLU →] conv3×3 stride 2 C→C, BN, ReLU → GAP →
  linear C→2 → softmax, p = P(class 1). Vector and text blocks [ADAPT, §2.8]: pooled x → linear C→C/2,
  BN, ReLU → linear →2 for both (pooling first keeps text gates independent of padding).

Training is one loop with the method's own phases (§2.4–2.5):
- SP (supervised pre-training): g = 1[p > 0.5] forward, ∂g/∂p := 1 backward (`sp_relax=ste`; `soft`
  uses g = p); loss = CE only.
- HRL (hybrid RL), the last `hrl_fraction` of the epochs [PROPOSED 0.3; the repo runs HRL as a separate
  fine-tuning at lr 1e-4 — here the cosine schedule's tail supplies the low learning rate]:
  g ~ Bernoulli(p) with no pathwise gradient; the backbone keeps CE; the gates get REINFORCE with
  r_i = (α/N)(1 − g_i), terminal r_T = −CE_n (`terminal_reward=ce`, CIFAR script) or −(α/N)·CE_n
  (`scaled_ce`, ImageNet script), returns R_i = Σ_{j≥i} r_j + r_T (γ = 1), and
  L = CE + w_rl · mean_n Σ_i −R_{n,i} log π(g_{n,i}), w_rl = 0.01; `rl_baseline=batch_mean` subtracts
  the batch mean of R_i (a variance fix, off by default).
- Eval: g = 1[p > 0.5], deterministic.

What the RNN gate learns on ResNet-8 (full MNIST, 5 epochs; `gate_probability` in every record holds the
eval distribution of p per gate): after SP, p ≈ 0.96 with little spread across inputs (p05–p95 0.82–0.99),
and HRL at α = 0.1 or 1 leaves every block on. HRL from the first epoch (`hrl_fraction=1`) keeps p within
±0.015 of one value for every input: the policy learns a rate, not a per-input choice.
Per-input decisions need the batch-mean baseline and w_rl = 1 (with w_rl = 0.01 the gates' step is 1 % of
the backbone's): presets `baseline_alpha*` [PROPOSED]. HRL from the first epoch with the baseline skips every
block (an untrained net loses nothing by skipping).

Presets chosen on validation (full MNIST, ResNet-20, `standard`, 5 epochs, seed 0; rule and candidates fixed
before any ran: results/sweeps/skipnet_presets/README.md, scripts/choose_skipnet_presets.py):
- `baseline_alpha0.75` (of α 0.5, 0.6, 0.75, 1): the largest validation MAC saving, 57.3 %, among candidates
  within 0.5 points of dense's validation accuracy (99.05 % against 99.43 %) with a gate conditional on
  validation. One of its eight gates decides per input (the last block, on for 82 % of inputs); the others keep
  or drop their block for every input. α 1 saves 65.9 % at 98.47 %, under the floor.
- `hrl_only_alpha0.35` (of α 0.25, 0.3, 0.35): the mean validation execution rate closest to 0.5 — at 0.996 it
  is nowhere near it: on ResNet-20 these α keep (nearly) every block for every input (0.3 % MAC saving), where
  on ResNet-8 α 0.3 put the learned rate on 0.5. A near-dense point, kept as the family's documented outcome.
The other α are presets too, so that the sweep's records stay current; they are not reported.

MACs (§2.7): every gate (projection, its LSTM step and head; or the FF gate) runs for every sample and is
declared as overhead; the shared LSTM and head are counted once with all their steps (4·h·(i+h) per
step). Paper-style metric: computation % = (ungated blocks + Σ_i rate_i) / blocks, i.e. (1 + Σ rate)/(N+1).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.blockgates import (Scratch, block_modality, check_choice, check_fraction, gate_blocks, in_width, live_values,
                              require_blocks)
from bench.gating.gates import GateTrace, bernoulli_sample, record_extra, ste_threshold
from bench.method import Method, StepContext
from bench.registry import register_method
from bench.gating.wrappers import BlockGate, gated_units

RNN_HIDDEN = 10  # §2.3: projection C→10, LSTM(10, 10)
EPS = 1e-6  # keeps log π finite for p at 0 or 1


class RecurrentPolicy(nn.Module):
    """The LSTM(10, 10) and linear 10→1 shared by all RNN gates; one step per gated block."""

    def __init__(self, hidden: int = RNN_HIDDEN) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden)
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=math.sqrt(2 / hidden))  # std √(2/(out·in)) [code]
        nn.init.zeros_(self.head.bias)  # the RL model zeroes linear biases [code]
        self.scratch = Scratch()

    def forward(self, features: torch.Tensor, restart: bool) -> torch.Tensor:
        state = None if restart else self.scratch["state"]  # None = zero state: reset once per forward
        out, self.scratch["state"] = self.lstm(features.unsqueeze(0), state)
        return torch.sigmoid(self.head(out[0])).squeeze(1)


class RNNGateProbability(nn.Module):
    """p for one block: pool(x) → linear C→10 → shared LSTM step → linear 10→1 → sigmoid."""

    def __init__(self, pool: Any, c_in: int, policy: RecurrentPolicy, restart: bool) -> None:
        super().__init__()
        self.pool, self.policy, self.restart = pool, policy, restart
        self.project = nn.Linear(c_in, RNN_HIDDEN)
        nn.init.normal_(self.project.weight, std=math.sqrt(2 / RNN_HIDDEN))  # He init of the 1×1 conv [code]
        nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy(self.project(self.pool(x)), self.restart)


class FFGateProbability(nn.Module):
    """Feed-forward gate: FFGate-I (`ff1`) or FFGate-II (`ff2`) on images, the §2.8 MLP form otherwise."""

    def __init__(self, block: ResidualBlock, kind: str) -> None:
        super().__init__()
        c = in_width(block)
        self.pool = block.pool
        if block_modality(block) == "image":
            layers: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if kind == "ff1" else []
            if kind == "ff1":
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            layers += [nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 2)]
            self.pool = nn.Identity()  # the conv gate reads the feature map itself
        else:
            layers = [nn.Linear(c, max(1, c // 2)), nn.BatchNorm1d(max(1, c // 2)), nn.ReLU(), nn.Linear(max(1, c // 2), 2)]
        self.net = nn.Sequential(*layers)
        for module in self.net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.net(self.pool(x)), dim=-1)[:, 1]


class SkipNetGate(nn.Module):
    """Decisions from p: STE threshold (or p itself) in SP, Bernoulli(p) in HRL, 1[p > 0.5] at eval."""

    def __init__(self, unit: str, probability: nn.Module, sp_relax: str) -> None:
        super().__init__()
        self.unit, self.probability, self.sp_relax = unit, probability, sp_relax
        self.phase = "sp"
        self.scratch = Scratch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probability(x)
        if not self.training:
            g = (p > 0.5).to(p.dtype)
        elif self.phase == "hrl":
            g = bernoulli_sample(p)
        else:
            g = ste_threshold(p) if self.sp_relax == "ste" else p
        self.scratch.update(p=p, g=g)
        record_extra(self.unit, "p", p)
        return g


def reinforce_loss(p: torch.Tensor, g: torch.Tensor, task_loss: torch.Tensor, alpha: float,
                   terminal_reward: str = "ce", baseline: str = "none") -> torch.Tensor:
    """mean_n Σ_i −R_{n,i} · log π(g_{n,i}) for gate probabilities `p` and decisions `g` [N, gates in
    execution order] and per-sample task losses [N] (§2.5); rewards carry no gradient."""
    gates = p.shape[1]
    step_reward = (alpha / gates) * (1 - g.detach())  # r_i: reward for every skipped block
    terminal = -task_loss.detach() * (alpha / gates if terminal_reward == "scaled_ce" else 1.0)
    returns = step_reward.flip(1).cumsum(1).flip(1) + terminal[:, None]  # R_i = Σ_{j≥i} r_j + r_T
    if baseline == "batch_mean":
        returns = returns - returns.mean(0, keepdim=True)
    log_pi = g * (p + EPS).log() + (1 - g) * (1 - p + EPS).log()
    return (-returns * log_pi).sum(1).mean()


@register_method
class SkipNet(Method):
    """Options:
    - gate: rnn (default, released models) | ff1 | ff2.
    - sp_relax: ste (code) | soft — SP-phase relaxation.
    - hrl_fraction: fraction 0–1 of the epochs, at the end, trained with HRL [PROPOSED 0.3]; 0 = SP only.
    - alpha: skip reward α (CIFAR 0.1; repo grid 0.1 / 0.01 / 0.001).
    - w_rl: weight of the REINFORCE loss (0.01).
    - terminal_reward: ce (CIFAR: −CE) | scaled_ce (ImageNet: −(α/N)·CE).
    - rl_baseline: none (faithful) | batch_mean.
    - hrl_freeze_bn: keep the backbone's BN statistics frozen during HRL [PROPOSED, off].
    """

    name = "skipnet"
    description = "SkipNet (Wang et al., ECCV'18): RNN/FF gates on the previous block's output, SP then hybrid RL"
    options = {"gate": "rnn", "sp_relax": "ste", "hrl_fraction": 0.3, "alpha": 0.1, "w_rl": 0.01,
               "terminal_reward": "ce", "rl_baseline": "none", "hrl_freeze_bn": False}
    presets = {"default": {}, "sp_only": {"hrl_fraction": 0.0},
               **{f"alpha{a:g}": {"alpha": a} for a in (0.01, 0.1, 0.5, 1.0, 2.0)},
               "ff1": {"gate": "ff1"}, "ff2": {"gate": "ff2"}, "batch_baseline": {"rl_baseline": "batch_mean"},
               # the validation sweeps that chose among these: results/sweeps/skipnet_presets/README.md
               **{f"hrl_only_alpha{a:g}": {"hrl_fraction": 1.0, "alpha": a} for a in (0.25, 0.3, 0.35)},
               **{f"baseline_alpha{a:g}": {"rl_baseline": "batch_mean", "w_rl": 1.0, "alpha": a}
                  for a in (0.5, 0.6, 0.75, 1.0)}}

    def validate(self) -> None:
        c = self.config
        check_choice(self.name, "gate", c["gate"], ("rnn", "ff1", "ff2"))
        check_choice(self.name, "sp_relax", c["sp_relax"], ("ste", "soft"))
        check_choice(self.name, "terminal_reward", c["terminal_reward"], ("ce", "scaled_ce"))
        check_choice(self.name, "rl_baseline", c["rl_baseline"], ("none", "batch_mean"))
        check_fraction(self.name, "hrl_fraction", c["hrl_fraction"])
        if c["alpha"] < 0 or c["w_rl"] < 0:
            raise DynBenchError(f"{self.name}: alpha and w_rl must be >= 0, not {c['alpha']}, {c['w_rl']}")

    def build(self, backbone: nn.Module) -> nn.Module:
        names = require_blocks(backbone, self.name).block_names()
        gated = names[1:]  # the first block always runs: no gate precedes it (§2.2)
        policy = RecurrentPolicy() if self.config["gate"] == "rnn" else None

        def make(name: str, block: ResidualBlock) -> BlockGate | None:
            if name not in gated:
                return None
            if policy is not None:
                probability = RNNGateProbability(block.pool, in_width(block), policy, restart=name == gated[0])
            else:
                probability = FFGateProbability(block, self.config["gate"])
            return BlockGate(block, SkipNetGate(name, probability, self.config["sp_relax"]), name, "skipnet")

        return gate_blocks(backbone, self.name, make)

    def hrl_start_epoch(self, num_epochs: int) -> int:
        return num_epochs - round(self.config["hrl_fraction"] * num_epochs)

    def on_epoch_start(self, model: nn.Module, epoch: int, num_epochs: int) -> None:
        phase = "hrl" if epoch >= self.hrl_start_epoch(num_epochs) else "sp"
        gates = [unit.gate for unit in gated_units(model)]
        for gate in gates:
            gate.phase = phase
        if phase == "hrl" and self.config["hrl_freeze_bn"]:  # model.train() ran before this hook
            in_gates = {id(m) for gate in gates for m in gate.modules()}
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and id(module) not in in_gates:
                    module.eval()

    def extra_losses(self, model: nn.Module, step: StepContext) -> dict[str, torch.Tensor]:
        gates = [unit.gate for unit in gated_units(model)]
        if not gates or gates[0].phase != "hrl":
            return {}
        p = torch.stack(list(live_values(model, "p").values()), 1)
        g = torch.stack(list(live_values(model, "g").values()), 1)
        c = self.config
        loss = reinforce_loss(p, g, step.per_sample_loss, c["alpha"], c["terminal_reward"], c["rl_baseline"])
        return {"reinforce": c["w_rl"] * loss}

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        """The paper's computation % and, per gate, the eval distribution of p: its spread across inputs
        shows whether the gate decides per input or has learned one rate."""
        rates = trace.exec_rate_per_unit()
        blocks = len(model.blocks)
        probability = {}
        for unit in gated_units(model):
            p = trace.extra(unit.name, "p").double()
            low, mid, high = torch.quantile(p, torch.tensor([0.05, 0.5, 0.95], dtype=p.dtype)).tolist()
            probability[unit.name] = {"mean": float(p.mean()), "p05": low, "p50": mid, "p95": high,
                                      "undecided": float(((p > 0.05) & (p < 0.95)).double().mean())}
        return {"paper_metric": {"name": "computation % ((ungated blocks + sum of gate rates) / blocks)",
                                 "value": (blocks - len(rates) + sum(rates.values())) / blocks},
                "gate_probability": probability}
