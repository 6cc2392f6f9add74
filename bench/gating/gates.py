"""Shared gate parts: the relaxations of methods.md §0.2, hard decisions at eval, simple gate modules,
and the gate trace that records each gated unit's per-sample decision.

A gate module maps a block input `x` to decisions: [N] for a block gate, [N, C] for channel/neuron
gates; in training they may be relaxed (straight-through or soft), in eval they are hard 0/1. The
wrappers of `bench.gating.wrappers` call the gate and record its decision under the unit's name.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError

_active: list["GateTrace"] = []
NOISE_EPS = 1e-6  # keeps log(u) and log(1-u) finite for u ~ U(0, 1)


class GateTrace:
    """Per gated unit, each sample's decision: shape [N] (block: 0/1) or [N, C] (channel/neuron mask).

    Wrappers call `record(unit, decision)` during a forward pass run inside `GateTrace.recording()`;
    outside a recording (e.g. while fvcore traces the model) nothing is stored. Methods may store other
    per-sample values (gate probabilities, §0.5) with `record_extra`; they never count as decisions.
    """

    def __init__(self) -> None:
        self.decisions: dict[str, list[torch.Tensor]] = {}
        self.extras: dict[str, dict[str, list[torch.Tensor]]] = {}

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

    def add_extra(self, unit: str, key: str, value: torch.Tensor) -> None:
        self.extras.setdefault(unit, {}).setdefault(key, []).append(value.detach().float().cpu())

    def units(self) -> list[str]:
        return list(self.decisions)

    def stacked(self, unit: str) -> torch.Tensor:
        """All recorded decisions of one unit, concatenated over batches."""
        if unit not in self.decisions:
            raise DynBenchError(f"gate trace has no decisions for unit '{unit}' (recorded: {', '.join(self.decisions) or 'none'})"
                                "; run the forward pass inside GateTrace.recording()")
        return torch.cat(self.decisions[unit])

    def extra(self, unit: str, key: str) -> torch.Tensor:
        return torch.cat(self.extras[unit][key])

    def executed_fraction(self, unit: str) -> torch.Tensor:
        """Per sample, the fraction of the unit that ran (a mask is averaged over its channels)."""
        decision = self.stacked(unit)
        return decision if decision.dim() == 1 else decision.flatten(1).mean(1)

    def exec_rate_per_unit(self) -> dict[str, float]:
        return {unit: float(self.executed_fraction(unit).mean()) for unit in self.decisions}


@contextlib.contextmanager
def recording_suspended() -> Iterator[None]:
    """No trace records inside the block (MAC counting runs forward passes that are not evaluation)."""
    saved = _active[:]
    _active.clear()
    try:
        yield
    finally:
        _active[:] = saved


def record(unit: str, decision: torch.Tensor) -> None:
    """Record a decision in the active trace, if any."""
    if _active:
        _active[-1].add(unit, decision)


def record_extra(unit: str, key: str, value: torch.Tensor) -> None:
    """Record a per-sample side value (e.g. the gate probability) in the active trace, if any."""
    if _active:
        _active[-1].add_extra(unit, key, value)


# ---- relaxations (methods.md §0.2) -------------------------------------------------------------------

class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad


def full_precision(fn: Callable[..., torch.Tensor], *args: torch.Tensor | None) -> torch.Tensor:
    """fn(*args), in fp32 when a bf16 autocast is on (training with `precision="bf16"`): gates decide in
    full precision, since a bf16 sigmoid or cosine is coarse near the decision threshold."""
    device = next(a for a in args if a is not None).device.type
    if not torch.is_autocast_enabled(device):
        return fn(*args)
    with torch.autocast(device, enabled=False):
        return fn(*(a.float() if a is not None and a.is_floating_point() else a for a in args))


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Forward exactly `hard` (hard + soft − sg(soft) rounds to 0.99999994), backward through `soft`."""
    return _StraightThrough.apply(hard, soft)


def logistic_noise(like: torch.Tensor) -> torch.Tensor:
    """L = log u − log(1−u), u ~ U(0, 1): the difference of two Gumbel(0, 1) samples."""
    u = torch.rand_like(like).clamp(NOISE_EPS, 1 - NOISE_EPS)
    return u.log() - (1 - u).log()


def gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(like).clamp(NOISE_EPS, 1 - NOISE_EPS)
    return -(-u.log()).log()


def ste_threshold(p: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """STE-threshold (SkipNet SP): forward 1[p > threshold], backward ∂g/∂p := 1."""
    return straight_through((p > threshold).to(p.dtype), p)


def gumbel_softmax2(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Hard Gumbel-softmax over two logits [..., 2] (ConvNet-AIG): forward one-hot(argmax), backward
    through softmax((z+Γ)/τ); the gate is component 1."""
    soft = F.softmax((logits + gumbel_noise(logits)) / tau, dim=-1)
    return straight_through((soft.argmax(-1) == 1).to(soft.dtype), soft[..., 1])


def binary_concrete(logit: torch.Tensor, tau: float = 2 / 3) -> torch.Tensor:
    """Hard binary concrete (BAS): forward 1[z+L > 0], backward through σ((z+L)/τ)."""
    noisy = logit + logistic_noise(logit)
    return straight_through((noisy > 0).to(logit.dtype), torch.sigmoid(noisy / tau))


def gumbel_sigmoid(logit: torch.Tensor, tau: float = 0.6) -> torch.Tensor:
    """Single-Gumbel sigmoid (CosineGate notebook): soft σ((z+Γ)/τ), one Gumbel sample, biased toward on."""
    return torch.sigmoid((logit + gumbel_noise(logit)) / tau)


def bernoulli_sample(p: torch.Tensor) -> torch.Tensor:
    """g ~ Bernoulli(p) without a pathwise gradient (SkipNet HRL trains it with REINFORCE)."""
    return torch.bernoulli(p.detach())


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Hard mask [N, m] with ones at each row's k largest scores (torch.topk: deterministic on CPU)."""
    index = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


def topk_ste(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k + STE (MID-L): forward the hard top-k mask M, backward M + a − sg(a)."""
    return straight_through(topk_mask(scores, k), scores)


@dataclass(frozen=True)
class Relaxation:
    """A training relaxation and its deterministic eval rule, applied to the same gate output."""

    train: Callable[..., torch.Tensor]
    eval: Callable[..., torch.Tensor]
    input: str  # what the gate output must be: a probability, a logit, a pair of logits, scores


RELAXATIONS: dict[str, Relaxation] = {
    "ste": Relaxation(lambda p, threshold=0.5, **_: ste_threshold(p, threshold),
                      lambda p, threshold=0.5, **_: (p > threshold).to(p.dtype), "probability"),
    "gumbel_softmax2": Relaxation(lambda z, tau=1.0, **_: gumbel_softmax2(z, tau),
                                  lambda z, **_: (z.argmax(-1) == 1).to(z.dtype), "pair of logits [..., 2]"),
    "binary_concrete": Relaxation(lambda z, tau=2 / 3, **_: binary_concrete(z, tau),
                                  lambda z, **_: (z > 0).to(z.dtype), "logit"),
    "gumbel_sigmoid": Relaxation(lambda z, tau=0.6, **_: gumbel_sigmoid(z, tau),
                                 lambda z, threshold=0.5, **_: (torch.sigmoid(z) > threshold).to(z.dtype), "logit"),
    "bernoulli": Relaxation(lambda p, **_: bernoulli_sample(p),
                            lambda p, threshold=0.5, **_: (p > threshold).to(p.dtype), "probability"),
    "topk": Relaxation(lambda a, k, **_: topk_ste(a, k), lambda a, k, **_: topk_mask(a, k), "scores [N, m]"),
}


def relax(name: str, value: torch.Tensor, training: bool, **params: float) -> torch.Tensor:
    """Decisions from a gate output with relaxation `name` (training) or its hard eval rule.
    Parameters: `tau`, `threshold` (eval threshold on p or σ(z)), `k` (top-k)."""
    if name not in RELAXATIONS:
        choices = ", ".join(f"{key} (input: {rule.input})" for key, rule in RELAXATIONS.items())
        raise DynBenchError(f"unknown relaxation '{name}': choose one of {choices}")
    rule = RELAXATIONS[name]
    return (rule.train if training else rule.eval)(value, **params)


# ---- simple gate modules (random-gate controls, tests, latency runs) ---------------------------------

class RandomGate(nn.Module):
    """Input-independent Bernoulli decisions per sample (and per channel when `channels`): the random-gate
    control of methods.md §7. `keep_rate` is one rate, or one rate per channel (a sequence of `channels`
    fractions). Draws from the global generator; no parameters, 0 MACs."""

    def __init__(self, keep_rate: float | Sequence[float], channels: int | None = None) -> None:
        super().__init__()
        per_channel = not isinstance(keep_rate, (int, float))
        rates = torch.as_tensor(keep_rate if per_channel else [keep_rate], dtype=torch.float32)
        if not bool(((rates >= 0) & (rates <= 1)).all()):
            raise DynBenchError(f"keep_rate must lie in [0, 1], not {keep_rate}")
        if per_channel and (channels is None or len(rates) != channels):
            raise DynBenchError(f"{len(rates)} per-channel keep rates given for {channels} channels")
        self.keep_rate = float(rates.mean()) if per_channel else float(keep_rate)
        self.channels = channels
        self.register_buffer("channel_rates", rates if per_channel else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_rates is not None:
            return torch.bernoulli(self.channel_rates.to(x.device).expand(x.shape[0], -1))
        shape = (x.shape[0],) if self.channels is None else (x.shape[0], self.channels)
        return torch.empty(shape, device=x.device).bernoulli_(self.keep_rate)


class LinearGate(nn.Module):
    """pool(x) -> linear -> relaxation: a minimal learned gate. `units=None` gives a block gate ([N]),
    `units=C` a channel/neuron gate ([N, C]). `pool` is the block's `pool` (GAP / masked mean / vector)."""

    def __init__(self, pool: Callable[[torch.Tensor], torch.Tensor], c_in: int, units: int | None = None,
                 relaxation: str = "binary_concrete", **params: float) -> None:
        super().__init__()
        self.pool = pool
        self.units = units
        outputs = 2 if relaxation == "gumbel_softmax2" else 1
        self.linear = nn.Linear(c_in, (units or 1) * outputs)
        self.relaxation, self.params, self.outputs = relaxation, params, outputs
        if relaxation not in RELAXATIONS:
            relax(relaxation, torch.zeros(1), False)  # raises the error that lists the relaxations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(self.pool(x))
        if self.relaxation in ("ste", "bernoulli"):
            z = torch.sigmoid(z)
        if self.outputs == 2:
            z = z.unflatten(-1, (-1, 2))
        g = relax(self.relaxation, z, self.training, **self.params)
        return g.reshape(g.shape[0], -1) if self.units else g.reshape(g.shape[0])
