"""Every block method on the segmentation backbone (per-image gates, methods.md §2.8 / §3.8 / §5.7): a
training step with its losses, hard eval decisions, and MACs equal to the pruned net. Slow: segnet."""
from __future__ import annotations

import pytest
import torch

from bench.gating.gates import GateTrace
from bench.method import StepContext
from bench.train import task_loss
from tests.methods.common import built, check_eval_hard_and_deterministic, check_macs_match_pruned


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [("skipnet", {"hrl_fraction": 1.0}), ("convnet_aig", {}), ("cosinegate", {}),
                                           ("cosinegate", {"realizable": True}), ("random_gate", {})])
def test_block_methods_train_and_count_on_segnet(name: str, options: dict) -> None:
    method, model = built(name, "segnet", **options)
    method.on_epoch_start(model.train(), 0, 1)
    x = model.example_input(2)
    targets = torch.randint(0, 19, (2, *x.shape[-2:]))
    with GateTrace.recording() as trace:
        logits = model(x)
    per_sample = task_loss(logits, targets, reduction="none")
    extra = method.extra_losses(model, StepContext(x, targets, logits, per_sample, trace, 0, 1, 0, 1))
    (per_sample.mean() + sum(extra.values(), torch.zeros(()))).backward()
    if name != "random_gate":  # random gates are stochastic at eval by design
        check_eval_hard_and_deterministic(model, x)
    check_macs_match_pruned(model, x, samples=1)
