"""Statistics of an eval gate trace that channel and neuron methods report next to the MAC saving
(methods.md §4.9, §6.6, §9): how many gates are always on, conditional or always off, the fraction of
active channels/neurons, and how much masks overlap between samples (static-mask collapse).

Every function reads the hard eval decisions recorded in a `GateTrace` ([N] per block unit, [N, C]
masks per channel/neuron unit); a unit of kind "block" counts as one gate of width 1.
"""
from __future__ import annotations

import torch

from bench.gating.gates import GateTrace

ALWAYS_ON = 0.99  # a gate on for more than 99 % of the samples is "always on" (BAS paper, §4.9)
ALWAYS_OFF = 0.01  # ... on for fewer than 1 % is "always off"
IOU_MAX_SAMPLES = 1024  # pairwise IoU is O(N²): the first 1024 samples of the split give a stable mean
HISTOGRAM_BINS = 10


def per_gate_rates(trace: GateTrace, unit: str) -> torch.Tensor:
    """Execution rate (fraction 0–1 of the samples) of every gate of `unit`: shape [C] ([1] for a block)."""
    decisions = trace.stacked(unit)
    return decisions.reshape(len(decisions), -1).mean(0)


def gate_categories(rates: torch.Tensor) -> dict[str, float]:
    """Shares (fractions 0–1) of gates that are always on (> 99 %), conditional, always off (< 1 %)."""
    on, off = (rates > ALWAYS_ON).float().mean(), (rates < ALWAYS_OFF).float().mean()
    return {"always_on": float(on), "conditional": float(1 - on - off), "always_off": float(off)}


def mean_pairwise_iou(masks: torch.Tensor, max_samples: int = IOU_MAX_SAMPLES) -> float:
    """Mean IoU |A∩B| / |A∪B| over all pairs of distinct samples' 0/1 masks [N, C] (1.0 = one static
    mask for every input; two empty masks count as identical)."""
    masks = masks[:max_samples].reshape(min(len(masks), max_samples), -1).double()
    n = len(masks)
    if n < 2:
        return 1.0
    inter = masks @ masks.T
    sizes = masks.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    return float((iou.sum() - iou.diagonal().sum()) / (n * (n - 1)))


def channel_report(trace: GateTrace, iou: bool = False) -> dict[str, object]:
    """The paper-style gate report of a channel/neuron-gated model from its eval trace:
    `gate_share_{always_on,conditional,always_off}` over all gates of all units, `active_fraction`
    (mean over samples and all gates of the 0/1 decision), per-unit categories and a histogram of the
    per-gate rates; with `iou`, the mean pairwise mask IoU per unit and over units (§6.6)."""
    units = trace.units()
    rates = {unit: per_gate_rates(trace, unit) for unit in units}
    pooled = torch.cat(list(rates.values()))
    report: dict[str, object] = {f"gate_share_{k}": v for k, v in gate_categories(pooled).items()}
    report["active_fraction"] = float(pooled.mean())  # every gate is seen by every sample: mean of rates
    report["gate_categories_per_unit"] = {unit: gate_categories(r) for unit, r in rates.items()}
    report["gate_rate_histogram"] = torch.histc(pooled, bins=HISTOGRAM_BINS, min=0.0, max=1.0).int().tolist()
    if iou:
        per_unit = {unit: mean_pairwise_iou(trace.stacked(unit)) for unit in units}
        report["mask_iou_per_unit"] = per_unit
        report["mask_iou_mean"] = sum(per_unit.values()) / len(per_unit)
    return report


def input_dependence(trace: GateTrace) -> dict[str, object]:
    """Does computation depend on the input? From an eval trace (the validation split's, so that presets
    may be chosen on it): per gate, the share of inputs for which it is on; over all gates of all units
    (a block gate counts as one gate) the shares of always-on / conditional / always-off gates; per input
    the number of executed gates (its spread over inputs); and `static`: every gate decides the same for
    every input (a pruned network, not conditional computation). A trace with no gated unit is static.
    Each gate's own on-share is `per_gate_rates` (records keep it as `val_exec_rate_per_gate`)."""
    units = trace.units()
    if not units:
        return {"gates": 0, "gate_share_always_on": 0.0, "gate_share_conditional": 0.0, "gate_share_always_off": 0.0,
                "static": True, "executed_gates": {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}}
    rates = {unit: per_gate_rates(trace, unit) for unit in units}
    pooled = torch.cat(list(rates.values()))
    per_input = sum(trace.stacked(unit).reshape(len(trace.stacked(unit)), -1).sum(1) for unit in units).double()
    shares = gate_categories(pooled)
    return {
        "gates": len(pooled),
        **{f"gate_share_{k}": v for k, v in shares.items()},
        "static": bool(((pooled == 0) | (pooled == 1)).all()),  # strict: not one input differs from the rest
        "executed_gates": {"mean": float(per_input.mean()), "std": float(per_input.std(unbiased=False)),
                           "min": float(per_input.min()), "max": float(per_input.max())},
    }
