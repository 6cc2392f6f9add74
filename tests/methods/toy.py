"""Helpers for method tests: a plugin module by name, a method built on a small backbone, and a short
training run on a toy problem (a few dozen steps, seconds on a busy CPU)."""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import registry
from bench.gating.gates import GateTrace
from bench.method import Method, StepContext
from tests.models import small_backbone


def plugin(name: str) -> ModuleType:
    """The module of method plugin `name` (plugins load under a private namespace, not by import)."""
    return sys.modules[registry.get_method(name).__module__]


def build(name: str, family: str, preset: str = "default", seed: int = 0, **options: Any) -> tuple[Method, nn.Module]:
    method = registry.get_method(name)(preset, **options)
    torch.manual_seed(seed)
    return method, method.build(small_backbone(family, seed))


def xor_data(n: int, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors whose label is the sign of x0·x1: different inputs need different hidden units."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x, (x[:, 0] * x[:, 1] > 0).long()


def train_briefly(method: Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 40,
                  batch_size: int = 64, lr: float = 1e-2) -> None:
    """`steps` Adam steps of CE + the method's extra losses, the curriculum running over these steps."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(1)
    model.train()
    method.on_epoch_start(model, 0, 1)
    for step in range(steps):
        index = torch.randperm(len(x), generator=generator)[:batch_size]
        with GateTrace.recording() as trace:
            logits = model(x[index])
        per_sample = F.cross_entropy(logits, y[index], reduction="none")
        context = StepContext(x[index], y[index], logits, per_sample, trace, 0, 1, step, steps)
        loss = per_sample.mean() + sum(method.extra_losses(model, context).values(), torch.zeros(()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@torch.no_grad()
def eval_trace(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, GateTrace]:
    model.eval()
    with GateTrace.recording() as trace:
        logits = model(x)
    return logits, trace
