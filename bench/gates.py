"""Shared gate parts: the gate trace that records each gated unit's per-sample decision."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_active: list["GateTrace"] = []


class GateTrace:
    """Per gated unit, each sample's decision: shape [N] (block: 0/1) or [N, C] (channel/neuron mask).

    Gate modules call `record(unit, decision)` during a forward pass run inside `GateTrace.recording()`;
    outside a recording (e.g. while fvcore traces the model) nothing is stored.
    """

    def __init__(self) -> None:
        self.decisions: dict[str, list[torch.Tensor]] = {}

    @classmethod
    @contextlib.contextmanager
    def recording(cls) -> Iterator["GateTrace"]:
        trace = cls()
        _active.append(trace)
        try:
            yield trace
        finally:
            _active.remove(trace)

    def add(self, unit: str, decision: torch.Tensor) -> None:
        self.decisions.setdefault(unit, []).append(decision.detach().float().cpu())

    def units(self) -> list[str]:
        return list(self.decisions)

    def stacked(self, unit: str) -> torch.Tensor:
        """All recorded decisions of one unit, concatenated over batches."""
        return torch.cat(self.decisions[unit])

    def executed_fraction(self, unit: str) -> torch.Tensor:
        """Per sample, the fraction of the unit that ran (a mask is averaged over its channels)."""
        decision = self.stacked(unit)
        return decision if decision.dim() == 1 else decision.flatten(1).mean(1)

    def exec_rate_per_unit(self) -> dict[str, float]:
        return {unit: float(self.executed_fraction(unit).mean()) for unit in self.decisions}


def record(unit: str, decision: torch.Tensor) -> None:
    """Record a decision in the active trace, if any."""
    if _active:
        _active[-1].add(unit, decision)
