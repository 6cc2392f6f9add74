"""Checks every block-gating method must pass (methods.md §9), a tiny toy training loop, and access to
plugin modules (loaded by the registry under a private namespace)."""
from __future__ import annotations

import sys
from types import ModuleType

import torch
from torch import nn

from bench import registry
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs, unit_table
from bench.method import Method, StepContext
from bench.train import task_loss
from bench.gating.wrappers import gated_units, pruned_copy
from bench.measure.execution import execution
from tests.models import as_double, small_backbone

N_SAMPLES = 32


def plugin(name: str) -> ModuleType:
    """The module of method plugin `name` (for its loss functions and gate classes)."""
    return sys.modules[registry.get_method(name).__module__]


def built(name: str, family: str, preset: str = "default", seed: int = 0, **options) -> tuple[Method, nn.Module]:
    method = registry.get_method(name)(preset, **options)
    return method, method.build(small_backbone(family, seed)).eval()


def eval_trace(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, GateTrace]:
    model.eval()
    with torch.no_grad(), GateTrace.recording() as trace:
        logits = model(x)
    return logits, trace


def check_masked_equals_skip(model: nn.Module, x: torch.Tensor, batch1: bool = True) -> None:
    """Identical logits for masked and physically skipping eval, batched and batch 1 (float64). Each
    pass starts from the same seed (random gates); `batch1=False` where draws depend on the batch."""
    model, x = as_double(model, x)
    torch.manual_seed(0)
    masked, _ = eval_trace(model, x)
    with torch.no_grad(), execution(model, "skip"):
        torch.manual_seed(0)
        torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=0)
        if batch1:
            one_by_one = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
            torch.testing.assert_close(one_by_one, masked, atol=1e-5, rtol=0)


def check_macs_match_pruned(model: nn.Module, x: torch.Tensor, samples: int = 3) -> torch.Tensor:
    """Executed MACs of the unit table equal fvcore on the physically pruned copy; returns per-sample MACs."""
    model, x = as_double(model, x)
    _, trace = eval_trace(model, x)
    per_sample = unit_table(model, x[:1]).per_sample(trace)
    for n in range(samples):
        pruned = pruned_copy(model, {unit: trace.stacked(unit)[n] for unit in trace.units()})
        assert count_macs(pruned, x[n:n + 1]) == per_sample[n].item()
    return per_sample


def check_eval_hard_and_deterministic(model: nn.Module, x: torch.Tensor) -> None:
    first, trace = eval_trace(model, x)
    second, again = eval_trace(model, x)
    assert torch.equal(first, second)
    for unit in trace.units():
        decisions = trace.stacked(unit)
        assert decisions.shape == (len(x),)
        assert bool(((decisions == 0) | (decisions == 1)).all())
        assert torch.equal(decisions, again.stacked(unit))


def force_gates(model: nn.Module, value: float) -> None:
    """Replace every unit's gate by a constant decision (all-on / all-off checks)."""
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x),), value, dtype=x.dtype if x.is_floating_point() else torch.float32)

    for unit in gated_units(model):
        unit.gate = Constant()


def separable_data(n: int = 128, features: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A linearly separable 2-class toy problem for the `resmlp` test backbone."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, generator=generator)
    return x, (x @ w > 0).long()


def toy_train(method: Method, model: nn.Module, epochs: int = 4, steps_per_epoch: int = 8, lr: float = 0.01,
              seed: int = 0) -> nn.Module:
    """The training loop of `bench.train` in miniature (same hooks and StepContext), Adam, full batches."""
    x, y = separable_data(seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    torch.manual_seed(seed)
    total, step = epochs * steps_per_epoch, 0
    for epoch in range(epochs):
        model.train()
        method.on_epoch_start(model, epoch, epochs)
        for _ in range(steps_per_epoch):
            with GateTrace.recording() as trace:
                logits = model(x)
            per_sample = task_loss(logits, y, reduction="none")
            extra = method.extra_losses(model, StepContext(x, y, logits, per_sample, trace, epoch, epochs, step, total))
            loss = per_sample.mean() + sum(extra.values(), torch.zeros(()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


def mean_eval_rate(model: nn.Module) -> float:
    x, _ = separable_data(seed=1)
    _, trace = eval_trace(model, x)
    rates = trace.exec_rate_per_unit()
    return sum(rates.values()) / len(rates)
