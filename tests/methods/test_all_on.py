"""The all-on control (methods.md §7: the trained weights with every gate forced on, `gates_forced`) reaches
every gating method: each unit then decides 1 for every input, whatever path its forward takes."""
from __future__ import annotations

import pytest
import torch

from bench.gating.wrappers import gates_forced
from tests.methods.common import built, eval_trace
from tests.models import small_backbone

GATED = [("convnet_aig", "default"), ("skipnet", "default"), ("cosinegate", "default"),
         ("cosinegate", "realizable"), ("batch_shaping", "default"), ("midl", "default")]


@pytest.mark.parametrize(("name", "preset"), GATED)
def test_forcing_every_gate_on_reaches_every_unit(name, preset):
    _, model = built(name, "resnet_cifar", preset)
    x = small_backbone("resnet_cifar").example_input(8)
    with gates_forced(model, 1.0):
        _, trace = eval_trace(model, x)
    assert trace.units()
    for unit in trace.units():
        assert torch.all(trace.stacked(unit) == 1), f"{name}:{preset} unit {unit} ignored the forced decision"
