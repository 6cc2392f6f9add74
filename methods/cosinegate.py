"""CosineGate — Y. R. Thota, "CosineGate: ..." (arXiv 2512.22206, 2025; author notebook
thotayogeswarreddy/CosineGate). Follows methods.md §5.

A block is skipped for an input when its residual adds little new direction to the identity path
(§5.3). Per block b and sample:
- CIR = 1 − cos(vec s(x), vec F(x)) ∈ [0, 2] (text: padded positions zeroed in both, §5.7);
- controller c(x): pool(x) → linear C→64 → ReLU → linear 64→32 → ReLU → linear 32→1;
- logit z = s_b·(CIR + c(x)), s_b a learnable scalar initialised to −2.2 (the notebook's "gate bias");
- training: g = σ((z + Γ)/τ), one Gumbel sample Γ, τ = 0.6, soft (no straight-through);
- eval: g = 1[σ(z) > 0.42], no noise.
Block output y = s(x) + g·F(x), no ReLU after the addition (`composition=no_act`, the notebook's
block; `aig` keeps the backbone's ReLU). DynBench runs it on the suite's backbones (`cifar_resnet`
choice of §5.2); the notebook's 8-block backbone is not built here.

Losses (§5.4): CE + λ_cons·consistency + FLOPs.
- consistency: MSE between L2-normalised vec(s + F) (the fully executed block) and L2-normalised
  vec(y), per block; mean over blocks (`cons_blocks=all`, [PROPOSED] fix) or the last block only
  (`last`, the notebook's loop overwrite). `cons_type=input_noise` instead penalises ‖f(x) − f(x+ε)‖²
  on the logits, ε ~ N(0, 0.01²) [PROPOSED]. In a no_act block the term comes from the per-sample |s|, |r|,
  ⟨s, r⟩ that the training CIR reduces anyway (no extra pass over the maps; the map form where the residual
  nearly cancels the shortcut).
- FLOPs: r = mean over blocks of the batch-mean soft g; L_F = λ_F·π(e)·max(0, r − r*)², π(e) =
  min(1, (e/E)/0.16) (`flops_ramp_fraction`, e the 0-based epoch of E): the notebook's min(1, e/40) over its
  250 epochs, as a fraction of the run so that short runs get the compute term too (in absolute epochs
  a 15-epoch run never passed 0.35 and the term stayed 0). `flops_grad=false` detaches r, as the
  notebook's `.item()` does (then the term has no gradient, §5.8).

MACs — the central caveat (§5.6): the gate needs F(x) to decide whether to skip F(x), so every
branch runs for every sample. The unit declares the whole branch (first, second) *and* the gate as
always-running overhead: executed MACs = dense + controllers + CIR (the CIR's three dot products are
written as bmm so the counting rule counts their multiply-adds), a saving ≤ 0. `extra_metrics` adds
`macs_nominal` = A + Σ_b 1[σ(z) > 0.42]·M_b (as if skipped blocks were not computed, comparable with
the paper's claim) and the notebook's FLOPs ratio over the whole eval set as `paper_metric`.

Realizable variant `cosinegate_r` [ADAPT] (`realizable=true`, presets `realizable*`): a CIR predictor
q(x) = pool(x) → linear C→16 → ReLU → linear 16→1 → 2·sigmoid, trained with 0.1·MSE(q(x), sg(CIR));
training still uses the true CIR; at eval z = s_b·(q(x) + c(x)) and F(x) runs only where g = 1, so its
executed MACs (branch scaled by g, gate as overhead) are real.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError
from bench.backbones.base import ResidualBlock
from bench.gating.blockgates import Scratch, check_choice, check_fraction, gate_blocks, in_width, live_values
from bench.gating.gates import GateTrace, full_precision, gumbel_sigmoid, record, record_extra
from bench.measure.macs import count_macs, unit_table
from bench.method import Method, StepContext
from bench.registry import register_method
from bench.gating.wrappers import COMPOSITIONS, BlockGate, UnitSpec, dense_copy, gated_units

SCALE_INIT = -2.2  # s_b [code]
PREDICTOR_WEIGHT = 0.1  # cosinegate_r: 0.1·MSE(q(x), sg(CIR)) (§5.6)
NOISE_STD = 0.01  # cons_type=input_noise (§5.4)
NORM_EPS = 1e-8
NORMALIZE_EPS = 1e-12  # F.normalize's
CANCELLATION = 1e-3  # |s + r|² below this share of |s|² + |r|²: the consistency term is computed on the maps
RAMP_FRACTION = 40 / 250  # the notebook ramps λ_F over 40 of its 250 epochs (§5.4, §5.5)
OPERATING_POINTS = {"balanced": {}, "aggressive": {"target": 0.60, "flops_weight": 5.0},
                    "conservative": {"target": 0.90, "flops_weight": 1.0}}  # §5.5; aggressive/conservative [PROPOSED]


def cosine_incompatibility(s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """CIR = 1 − cos(vec s, vec r) per sample [N]. Dot products as bmm: counted as N·D MACs each."""
    a, b = s.flatten(1).unsqueeze(1), r.flatten(1).unsqueeze(1)
    dot = torch.bmm(a, b.transpose(1, 2))
    norms = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(b, b.transpose(1, 2))).sqrt()
    return 1 - (dot / norms.clamp(min=NORM_EPS)).flatten()


def branch_reductions(s: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample |s|, |r| and ⟨s, r⟩, reduced in the maps' own memory layout (`flatten` copies an NHWC map,
    and bmm over N single vectors is slow)."""
    dims = tuple(range(1, s.dim()))
    return torch.linalg.vector_norm(s, dim=dims), torch.linalg.vector_norm(r, dim=dims), (s * r).sum(dims)


def incompatibility(norm_s: torch.Tensor, norm_r: torch.Tensor, dot: torch.Tensor) -> torch.Tensor:
    return 1 - dot / (norm_s * norm_r).clamp(min=NORM_EPS)


def cosine_incompatibility_fast(s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The same CIR from per-sample reductions. Training only: eval, where MACs are counted, keeps the bmm
    form that fvcore counts."""
    return incompatibility(*branch_reductions(s, r))


class CosineIncompatibility(nn.Module):
    """CIR as a module of the gate, so fvcore books its MACs to the gate's overhead."""

    def forward(self, s: torch.Tensor, r: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            s, r = s * mask, r * mask
        return cosine_incompatibility_fast(s, r) if self.training else cosine_incompatibility(s, r)

    def with_reductions(self, s: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Training CIR of unmasked maps, and the reductions it came from (the consistency term reuses them)."""
        reductions = branch_reductions(s, r)
        return incompatibility(*reductions), reductions


class CosineGateModule(nn.Module):
    """z = s_b·(CIR + c(x)); soft single-Gumbel sigmoid in training, σ(z) > threshold at eval. With a CIR
    predictor (realizable), `forward(x)` decides from x alone."""

    def __init__(self, unit: str, pool: Any, c_in: int, tau: float, threshold: float, realizable: bool) -> None:
        super().__init__()
        self.unit, self.pool, self.tau, self.threshold = unit, pool, tau, threshold
        self.controller = nn.Sequential(nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
        self.scale = nn.Parameter(torch.tensor(SCALE_INIT))
        self.cir = CosineIncompatibility()
        self.predictor = (nn.Sequential(nn.Linear(c_in, 16), nn.ReLU(), nn.Linear(16, 1)) if realizable else None)
        self.scratch = Scratch()

    def decide(self, pooled: torch.Tensor, cir: torch.Tensor) -> torch.Tensor:
        z = self.scale * (cir + self.controller(pooled).squeeze(1))
        p = torch.sigmoid(z)
        g = gumbel_sigmoid(z, self.tau) if self.training else (p > self.threshold).to(p.dtype)
        record_extra(self.unit, "p", p)
        record_extra(self.unit, "cir", cir)
        self.scratch["g"] = g
        return g

    def predicted_cir(self, pooled: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(self.predictor(pooled).squeeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realizable eval decision from x alone: CIR replaced by its prediction q(x)."""
        pooled = self.pool(x)
        return self.decide(pooled, self.predicted_cir(pooled))

    def from_branch(self, x: torch.Tensor, s: torch.Tensor, r: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Decision from the true CIR of (s(x), F(x)); padded positions (text `mask`) excluded. In training on
        unmasked maps, the reductions behind the CIR stay in the scratch as `reductions`."""
        pooled = self.pool(x)
        if self.training and mask is None:
            cir, self.scratch["reductions"] = self.cir.with_reductions(s, r)
        else:
            cir = self.cir(s, r, mask)
        if self.predictor is not None and self.training:
            self.scratch.update(cir=cir, cir_predicted=self.predicted_cir(pooled))
        return self.decide(pooled, cir)


class CosineBlock(BlockGate):
    """y = compose(s(x), F(x), g), g from the CIR of the computed branch. Faithful: the branch always
    runs, so the physically skipping execution is the masked one. Realizable at eval: a plain block
    gate on x (the branch is skipped for real). In training it leaves its consistency term in the gate's
    scratch unless `keeps_consistency` is off (`cons_type=input_noise`)."""

    keeps_consistency = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate.predictor is not None and not self.training:
            return super().forward(x)
        s, r = self.block.shortcut(x), self.branch(x)
        g = full_precision(self.gate.from_branch, x, s, r, self.block.context.mask)
        if self.forced is not None:  # the all-on control (`gates_forced`): this path bypasses `decide`
            g = torch.full_like(g, self.forced)
        record(self.name, g)
        y = self.compose.mixed(s, r, g.view(-1, *[1] * (r.dim() - 1)), self.act)
        reductions = self.gate.scratch.pop("reductions", None)
        if self.training and self.keeps_consistency:  # from the CIR's reductions where they suffice
            term = (no_act_consistency(*reductions, g, r[0].numel())
                    if reductions is not None and self.compose is COMPOSITIONS["no_act"] else None)
            if term is None:
                term = normalized_mse(self.compose.full(s, r, self.act), y)
            self.gate.scratch["consistency"] = term
        if y.requires_grad and is_channels_last(y):  # without a ReLU after the addition, y's gradient keeps the
            y.register_hook(channels_last)  # layout the next block's pooling gave it (NCHW): batch norm's backward
            # and the gradient sums run several times slower on it
        return y

    def pruned(self, decision: torch.Tensor) -> nn.Module:
        return super().pruned(decision) if self.gate.predictor is not None else self  # faithful: all of it runs

    def unit(self) -> UnitSpec:
        if self.gate.predictor is not None:
            return super().unit()
        # §5.6: the gate reads F(x), so the whole branch runs for every sample: overhead, not a scaled unit
        return UnitSpec(self.name, self.kind, (), (self.gate, self.block.first, self.block.second), 1)


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def consistency_loss(terms: list[torch.Tensor], blocks: str = "all") -> torch.Tensor:
    """Mean over blocks (or the last block) of the per-block MSE(normalise(vec full), normalise(vec gated)) (§5.4)."""
    return terms[-1] if blocks == "last" else torch.stack(terms).mean()


def no_act_consistency(norm_s: torch.Tensor, norm_r: torch.Tensor, dot: torch.Tensor, g: torch.Tensor,
                       per_sample_size: int) -> torch.Tensor | None:
    """`normalized_mse(s + r, s + g·r)` from the per-sample |s|, |r|, ⟨s, r⟩ the CIR already computed (a
    no_act block), with no pass over the maps forward or backward: |s + r|² = |s|² + 2⟨s,r⟩ + |r|²,
    |s + g·r|² = |s|² + 2g⟨s,r⟩ + g²|r|², ⟨s + r, s + g·r⟩ = |s|² + (1 + g)⟨s,r⟩ + g|r|². None where the
    residual nearly cancels the shortcut for some sample (a norm below 1/30 of its parts' norm): there these
    sums lose the digits the map form keeps."""
    ss, rr = norm_s ** 2, norm_r ** 2
    full = ss + 2 * dot + rr
    gated = ss + 2 * g * dot + g * g * rr
    if bool((full < CANCELLATION * (ss + rr)).any() | (gated < CANCELLATION * (ss + g * g * rr)).any()):
        return None
    m_full, m_gated = full.clamp(min=NORMALIZE_EPS ** 2), gated.clamp(min=NORMALIZE_EPS ** 2)
    cross = ss + (1 + g) * dot + g * rr
    per_sample = full / m_full + gated / m_gated - 2 * cross / (m_full.sqrt() * m_gated.sqrt())
    return per_sample.sum() / (len(g) * per_sample_size)


def normalized_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """F.mse_loss(F.normalize(a.flatten(1)), F.normalize(b.flatten(1))) without the flattened, normalised
    copies: per sample ‖â − b̂‖² = |a|²/m_a² + |b|²/m_b² − 2 a·b/(m_a m_b), m = max(|·|, 1e-12) as F.normalize."""
    dims = tuple(range(1, a.dim()))
    norm_a, norm_b = torch.linalg.vector_norm(a, dim=dims), torch.linalg.vector_norm(b, dim=dims)
    m_a, m_b = norm_a.clamp(min=NORMALIZE_EPS), norm_b.clamp(min=NORMALIZE_EPS)
    per_sample = (norm_a / m_a) ** 2 + (norm_b / m_b) ** 2 - 2 * (a * b).sum(dims) / (m_a * m_b)
    return per_sample.sum() / a.numel()


def flops_loss(gates: list[torch.Tensor], target: float, weight: float, progress: float, ramp_fraction: float,
               grad: bool = True) -> torch.Tensor:
    """λ_F·π·max(0, r − r*)², r = mean over blocks of the batch-mean gate, π = min(1, progress/ramp_fraction)
    with `progress` the fraction 0–1 of the run at the start of the epoch (§5.4)."""
    rate = torch.stack([g.mean() for g in gates]).mean()
    if not grad:
        rate = rate.detach()  # the notebook's float(r): no gradient reaches the gates
    ramp = 1.0 if ramp_fraction <= 0 else min(1.0, progress / ramp_fraction)
    return weight * ramp * torch.clamp(rate - target, min=0) ** 2


@register_method
class CosineGate(Method):
    """Options:
    - target: r*, target mean gate value, fraction 0–1 (balanced 0.72 [code]).
    - flops_weight: λ_F (2.5 [code]); flops_ramp_fraction: ramp length as a fraction of the run (0.16 =
      the notebook's 40 of 250 epochs [code]; 0 = none).
    - flops_grad: keep r a tensor (true, DynBench) or detach it (false, notebook).
    - cons_weight: λ_cons (0.05); cons_blocks: all | last; cons_type: gated_vs_full | input_noise.
    - tau: Gumbel temperature (0.6); threshold: eval threshold on σ(z) (0.42).
    - composition: no_act (notebook block) | aig (keep the post-addition ReLU).
    - realizable: cosinegate_r — CIR predictor at eval, real skipping (§5.6) [ADAPT].
    """

    name = "cosinegate"
    description = "CosineGate (Thota, 2025): cosine-incompatibility block gates; faithful (no real saving) or realizable"
    options = {"target": 0.72, "flops_weight": 2.5, "flops_ramp_fraction": RAMP_FRACTION, "flops_grad": True,
               "cons_weight": 0.05, "cons_blocks": "all", "cons_type": "gated_vs_full", "tau": 0.6, "threshold": 0.42,
               "composition": "no_act", "realizable": False}
    presets = {"default": {}, **OPERATING_POINTS, "notebook_exact": {"cons_blocks": "last", "flops_grad": False},
               "realizable": {"realizable": True},
               **{f"realizable_{k}": {**v, "realizable": True} for k, v in OPERATING_POINTS.items() if k != "balanced"}}

    def validate(self) -> None:
        c = self.config
        check_fraction(self.name, "target", c["target"])
        check_fraction(self.name, "threshold", c["threshold"])
        check_choice(self.name, "cons_blocks", c["cons_blocks"], ("all", "last"))
        check_choice(self.name, "cons_type", c["cons_type"], ("gated_vs_full", "input_noise"))
        check_choice(self.name, "composition", c["composition"], ("no_act", "aig"))
        if min(c["flops_weight"], c["cons_weight"]) < 0 or c["tau"] <= 0:
            raise DynBenchError(f"{self.name}: flops_weight, cons_weight must be >= 0 and tau > 0")
        check_fraction(self.name, "flops_ramp_fraction", c["flops_ramp_fraction"])

    def build(self, backbone: nn.Module) -> nn.Module:
        c = self.config

        def make(name: str, block: ResidualBlock) -> CosineBlock:
            gate = CosineGateModule(name, block.pool, in_width(block), c["tau"], c["threshold"], c["realizable"])
            unit = CosineBlock(block, gate, name, c["composition"])
            unit.keeps_consistency = c["cons_type"] == "gated_vs_full"
            return unit

        return gate_blocks(backbone, self.name, make)

    def extra_losses(self, model: nn.Module, step: StepContext) -> dict[str, torch.Tensor]:
        c = self.config
        losses = {"flops": flops_loss(list(live_values(model, "g").values()), c["target"], c["flops_weight"],
                                      step.epoch / step.num_epochs, c["flops_ramp_fraction"], c["flops_grad"])}
        if c["realizable"]:
            predicted, cir = live_values(model, "cir_predicted").values(), live_values(model, "cir").values()
            losses["cir_predictor"] = PREDICTOR_WEIGHT * torch.stack(
                [F.mse_loss(q, target.detach()) for q, target in zip(predicted, cir)]).mean()
        if c["cons_type"] == "gated_vs_full":
            terms = list(live_values(model, "consistency").values())  # per block, in block order
            losses["consistency"] = c["cons_weight"] * consistency_loss(terms, c["cons_blocks"])
        else:  # a second forward pass: after the terms above, which read this step's gate values
            if not step.inputs.is_floating_point():
                raise DynBenchError(f"{self.name}: cons_type=input_noise needs float inputs (not token ids)")
            noisy = model(step.inputs + NOISE_STD * torch.randn_like(step.inputs))
            losses["consistency"] = c["cons_weight"] * F.mse_loss(noisy, step.logits)
        return losses

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        """`macs_nominal` (§5.6 item 1), the notebook's FLOPs ratio over the eval set, and s_b per block."""
        units = gated_units(model)
        by_module = count_macs(model, example[:1], by_module=True)
        names = {id(m): n for n, m in model.named_modules()}
        nominal = torch.full(trace.stacked(units[0].name).shape, float(unit_table(model, example[:1]).always_on),
                             dtype=torch.float64)  # A: stem, head, shortcuts
        for unit in units:
            branch = sum(by_module.get(names[id(m)], 0) for m in (unit.block.first, unit.block.second))
            nominal += trace.stacked(unit.name).double() * branch
        dense = count_macs(dense_copy(model), example[:1])
        soft = [trace.extra(unit.name, "p").mean() for unit in units]
        return {"macs_nominal": {"mean": float(nominal.mean()), "saving": 1 - float(nominal.mean()) / dense},
                "paper_metric": {"name": "notebook FLOPs ratio: mean over blocks of mean soft σ(z), whole eval set",
                                 "value": float(torch.stack(soft).mean())},
                "gate_scale_per_unit": {unit.name: unit.gate.scale.item() for unit in units}}
