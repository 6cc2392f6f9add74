"""Generic gated wrappers of a residual block, the unit each declares for MAC accounting, and their
three executions.

- `BlockGate`:   y = compose(shortcut(x), second(first(x)), g, act), g [N] (SkipNet, ConvNet-AIG,
                 CosineGate, random gates); `compose` names one of COMPOSITIONS (methods.md §0.1) or is
                 a `Composition` (its mixed, g = 1 and g = 0 forms).
- `ChannelGate`: y = act(shortcut(x) + second(G ⊙ first(x))), G [N, C] (batch-shaping).
- `NeuronGate`:  y = act(shortcut(x) + second(M ⊙ first(x) + (1−M) ⊙ light(x))), M [N, C] (MID-L);
                 without `light` the unselected units output 0 and it reads like a channel gate. The
                 mix happens on h (after first's norm and activation): a method that wants MID-L's
                 pre-activation mix puts that activation into its light path.

A gate is any module mapping the block input x to decisions ([N] or [N, C]; hard 0/1 in eval, relaxed
in training, see `bench.gating.gates.relax`); it may pool with `block.pool(x)` (GAP, masked mean for text).
Wrap a backbone with `wrap_blocks(backbone, lambda name, block: BlockGate(block, MyGate(...), name))`.
Each wrapper calls `gate(x)` (the block input) on every sample, records the decision in the active
`GateTrace` under its `name`, and executes:
- masked (training, and the eval reference): compute everything, multiply by the gate (§0.3);
- skip (eval only, `execution(model, "skip")`): batch 1 takes real branches; a batch gathers the
  samples whose block gate is on (or groups samples by channel mask) and slices channels;
- `pruned(decision)`: a static module for one sample's decision — skipped branches removed, gated
  channels sliced out — that fvcore counts to check the accounting of `bench.measure.macs`.
`unit()` declares the modules whose MACs scale with the executed fraction and the always-running
overhead modules (gate, light path).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock
from bench.gating.gates import full_precision, record
from bench.gating.pruning import check_sliceable, sliced_copy, width_of

Act = nn.Module


@dataclass(frozen=True)
class Composition:
    """How a block gate g combines shortcut s and residual r (methods.md §0.1): `mixed` for a per-sample
    g (masked execution), and the exact forms it takes for g = 1 (`full`) and g = 0 (`skipped`, r not
    computed) — masked and skipping execution give identical outputs because 1·r = r and 0·r = 0."""

    mixed: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Act], torch.Tensor]
    full: Callable[[torch.Tensor, torch.Tensor, Act], torch.Tensor]
    skipped: Callable[[torch.Tensor, Act], torch.Tensor]  # returns s itself or a new tensor, never a view of s


COMPOSITIONS: dict[str, Composition] = {
    # ConvNet-AIG [code], the design's block gate: y = act(s + g·r)
    # (addcmul fuses s + g·r into one pass over the activations: the masked training step stays cheap)
    "aig": Composition(lambda s, r, g, act: act(torch.addcmul(s, g, r)), lambda s, r, act: act(s + r),
                       lambda s, act: act(s)),
    # SkipNet [code]: y = g·act(s + r) + (1 − g)·s, a skipped block outputs the raw shortcut
    "skipnet": Composition(lambda s, r, g, act: g * act(s + r) + (1 - g) * s, lambda s, r, act: act(s + r),
                           lambda s, act: s),
    # CosineGate notebook: y = s + g·r, no activation after the addition
    "no_act": Composition(lambda s, r, g, act: torch.addcmul(s, g, r), lambda s, r, act: s + r, lambda s, act: s),
}


@dataclass(frozen=True)
class UnitSpec:
    """A gated unit for MAC accounting: `scaled` modules run in proportion to the executed fraction
    (kept channels / `width`; a block has width 1); `overhead` modules run for every sample."""

    name: str
    kind: str  # "block" | "channel" | "neuron"
    scaled: tuple[nn.Module, ...]
    overhead: tuple[nn.Module, ...]
    width: int


def tie(y: torch.Tensor, *anchors: torch.Tensor) -> torch.Tensor:
    """y + 0·Σ anchors: keeps a gate whose output decides nothing in a static pruned net inside the
    jit trace (fvcore drops ops whose outputs do not reach the result); adds exactly 0."""
    for anchor in anchors:
        y = y + 0.0 * anchor.sum()
    return y


def _per_sample(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[N] or [N, C] decisions shaped to broadcast over `like` ([N, C, ...])."""
    return g.reshape(*g.shape, *[1] * (like.dim() - g.dim()))


def _not_inplace(act: nn.Module) -> nn.Module:
    """`act` without in-place mode: a skipped block applies it to the shortcut, which may be the block
    input itself (identity shortcut) and is still read by the gather path."""
    if not getattr(act, "inplace", False):
        return act
    act = copy.copy(act)
    act.inplace = False
    return act


class GatedUnit(nn.Module):
    """Base of the wrappers. Subclasses implement `masked`, `pruned` and `unit`."""

    kind: ClassVar[str]

    def __init__(self, block: ResidualBlock, gate: nn.Module, name: str) -> None:
        super().__init__()
        self.block = block
        self.gate = gate
        self.name = name
        self.forced: float | None = None  # a constant decision replacing the gate's (`gates_forced`)
        self.fast_path: Callable[[GatedUnit, torch.Tensor], torch.Tensor] | None = None  # bench.measure.execution
        self.act = _not_inplace(block.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_path is not None:
            if self.training:
                raise DynBenchError(f"unit '{self.name}': physical skipping is for eval only (methods.md §0.3)")
            return self.fast_path(self, x)
        g = self.decide(x)
        record(self.name, g)
        return self.masked(x, g)

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's decisions on x as [N] (blocks) or [N, C], or the forced constant."""
        g = full_precision(self.gate, x)
        if g.dim() != (1 if self.kind == "block" else 2):  # whatever the gate's layout
            g = g.reshape(len(x)) if self.kind == "block" else g.reshape(len(x), -1)
        return g if self.forced is None else torch.full_like(g, self.forced)

    def masked(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pruned(self, decision: torch.Tensor) -> nn.Module:
        """Static module computing this unit for one sample whose decision is `decision` ([] or [C])."""
        raise NotImplementedError

    def unit(self) -> UnitSpec:
        raise NotImplementedError


class BlockGate(GatedUnit):
    """Block gate: the residual branch runs (g = 1) or not (g = 0), per sample."""

    kind = "block"

    def __init__(self, block: ResidualBlock, gate: nn.Module, name: str, compose: str | Composition = "aig") -> None:
        super().__init__(block, gate, name)
        if isinstance(compose, str) and compose not in COMPOSITIONS:
            raise DynBenchError(f"unknown block composition '{compose}': choose one of {', '.join(COMPOSITIONS)}")
        self.compose = COMPOSITIONS[compose] if isinstance(compose, str) else compose

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.second(self.block.first(x))

    def masked(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        s, r = self.block.shortcut(x), self.branch(x)
        return self.compose.mixed(s, r, _per_sample(g, r), self.act)

    def pruned(self, decision: torch.Tensor) -> nn.Module:
        return PrunedBlock(self.block, self.gate, self.act, self.compose, bool(decision))

    def unit(self) -> UnitSpec:
        return UnitSpec(self.name, self.kind, (self.block.first, self.block.second), (self.gate,), 1)


class ChannelGate(GatedUnit):
    """Channel gate on h = first(x): G ⊙ h feeds second; off channels save both layers' MACs."""

    kind = "channel"

    def __init__(self, block: ResidualBlock, gate: nn.Module, name: str) -> None:
        super().__init__(block, gate, name)
        check_sliceable(block.first)
        check_sliceable(block.second)
        self.light: nn.Module | None = None
        self.width = width_of(block.first)

    def hidden(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if g.shape[1] != self.width:
            raise DynBenchError(f"unit '{self.name}': the gate gave {g.shape[1]} decisions per sample for {self.width} units")
        h = self.block.first(x)
        m = _per_sample(g, h)
        return m * h if self.light is None else m * h + (1 - m) * self.light(x)

    def masked(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.act(self.block.shortcut(x) + self.block.second(self.hidden(x, g)))

    def pruned(self, decision: torch.Tensor) -> nn.Module:
        return PrunedHidden(self.block, self.gate, self.act, self.light, decision.nonzero().squeeze(1))

    def unit(self) -> UnitSpec:
        if self.light is None:
            return UnitSpec(self.name, self.kind, (self.block.first, self.block.second), (self.gate,), self.width)
        # the light path feeds every unit of h, so `second` reads all of them: no downstream saving (§6.6)
        return UnitSpec(self.name, self.kind, (self.block.first,), (self.gate, self.light), self.width)


class NeuronGate(ChannelGate):
    """Neuron gate (MID-L, methods.md §6): selected units of `first` take the full path, the others the
    optional cheap `light` path (a module mapping x to h's shape), else 0."""

    kind = "neuron"

    def __init__(self, block: ResidualBlock, gate: nn.Module, name: str, light: nn.Module | None = None) -> None:
        super().__init__(block, gate, name)
        self.light = light


class PrunedBlock(nn.Module):
    """One sample's block: the branch kept or removed; the gate still runs (every sample pays it, §0.4)."""

    def __init__(self, block: ResidualBlock, gate: nn.Module, act: nn.Module, compose: Composition, on: bool) -> None:
        super().__init__()
        self.shortcut, self.act, self.gate, self.compose, self.on = block.shortcut, act, gate, compose, on
        self.first, self.second = (block.first, block.second) if on else (None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        anchor = self.gate(x)
        s = self.shortcut(x)
        y = self.compose.full(s, self.second(self.first(x)), self.act) if self.on else self.compose.skipped(s, self.act)
        return tie(y, anchor)


class PrunedHidden(nn.Module):
    """One sample's channel/neuron-gated block with the gated channels sliced out of first (and of
    second when there is no light path)."""

    def __init__(self, block: ResidualBlock, gate: nn.Module, act: nn.Module, light: nn.Module | None,
                 channels: torch.Tensor) -> None:
        super().__init__()
        self.shortcut, self.act, self.gate, self.light = block.shortcut, act, gate, light
        self.register_buffer("channels", channels.clone())
        self.first = sliced_copy(block.first, out_index=channels) if channels.numel() else None
        if light is not None:
            self.second = block.second
        elif channels.numel():
            self.second = sliced_copy(block.second, in_index=channels)
        else:  # nothing kept: second's weighted layer is gone, the norm still shifts
            if block.second[0].bias is not None:
                raise DynBenchError("pruning all channels of a second layer with a bias is not supported")
            self.second = nn.Sequential(*list(block.second)[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        anchor = self.gate(x)
        s = self.shortcut(x)
        if self.light is not None:
            h = self.light(x)
            if self.first is not None:
                h = h.index_copy(1, self.channels, self.first(x))
            r = self.second(h)
        else:
            r = self.second(self.first(x) if self.first is not None else torch.zeros_like(s))
        return tie(self.act(s + r), anchor)


# ---- model-level helpers ------------------------------------------------------------------------------

def gated_units(model: nn.Module) -> list[GatedUnit]:
    return [m for m in model.modules() if isinstance(m, GatedUnit)]


def wrap_blocks(backbone: Backbone, make: Callable[[str, ResidualBlock], nn.Module | None]) -> Backbone:
    """Replace each block by `make(name, block)` (None keeps the block ungated); returns the backbone.
    Wrappers take the backbone's train/eval mode."""
    for i, name in enumerate(backbone.block_names()):
        wrapped = make(name, backbone.blocks[i])
        if wrapped is not None:
            backbone.blocks[i] = wrapped.train(backbone.training)
    return backbone


def _replace_units(model: nn.Module, replace: Callable[[GatedUnit], nn.Module]) -> None:
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, GatedUnit):
                setattr(parent, child_name, replace(child))


def dense_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with every wrapper replaced by its plain block (gates, light paths removed)."""
    dense = copy.deepcopy(model)
    _replace_units(dense, lambda unit: unit.block)  # the block's own act: numerically the same as the wrapper's
    return dense


def pruned_copy(model: nn.Module, decisions: dict[str, torch.Tensor]) -> nn.Module:
    """A physically pruned copy of `model` for one sample: `decisions[unit name]` is that sample's
    decision ([] for a block, [C] mask for channels/neurons)."""
    pruned = copy.deepcopy(model)
    missing = [u.name for u in gated_units(pruned) if u.name not in decisions]
    if missing:
        raise DynBenchError(f"no decision given for unit(s) {', '.join(missing)}")
    _replace_units(pruned, lambda unit: unit.pruned(decisions[unit.name].reshape(-1).squeeze(0) if unit.kind == "block"
                                                      else decisions[unit.name].reshape(-1)))
    return pruned


@contextlib.contextmanager
def gates_forced(model: nn.Module, value: float = 1.0) -> Iterator[nn.Module]:
    """Every unit of `model` decides `value` for every input (1.0: the all-on control of methods.md §7,
    the trained weights without the gating); the gates still run, so their state advances as usual."""
    units = gated_units(model)
    for unit in units:
        unit.forced = value
    try:
        yield model
    finally:
        for unit in units:
            unit.forced = None
