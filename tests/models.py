"""Shared test helpers: small configurations of every backbone family, gated versions of them, and the
`family` fixture (import it into a test module to parametrise over families). Kept out of conftest.py
so that other test folders' fixtures merge without touching this file."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.backbones import Backbone, ResidualBlock, build_backbone
from bench.gating.gates import LinearGate, relax
from bench.gating.pruning import width_of
from bench.gating.wrappers import BlockGate, ChannelGate, NeuronGate, wrap_blocks

# One intra-op thread: the test machine's cores are shared, and OpenMP threads waiting on busy cores
# made small convolutions ~100x slower. Timed benchmarks set their own thread count.
torch.set_num_threads(1)

# family -> (name, in_shape, num_classes, options): small enough for fast fvcore counts
SMALL = {
    "resnet_cifar": ("resnet8", (3, 16, 16), 10, {"width": 8}),
    "resmlp": ("resmlp", (12,), 2, {"depth": 3, "width": 16}),
    "textcnn": ("textcnn", (24,), 2, {"depth": 2, "width": 16, "embed_dim": 8, "vocab_size": 50}),
    "segnet": ("segnet", (3, 32, 48), 19, {"width": 8, "head_channels": 8}),
}
GATE_KINDS = ("block", "channel", "neuron", "neuron_light")


def small_backbone(family: str, seed: int = 0) -> Backbone:
    """A small backbone with randomised norm statistics, so every layer matters in comparisons."""
    name, in_shape, num_classes, options = SMALL[family]
    torch.manual_seed(seed)
    model = build_backbone(name, in_shape, num_classes, **options)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.3)
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def in_features(block: ResidualBlock) -> int:
    layer = block.first[0]
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


class LightPath(nn.Module):
    """A cheap stand-in for MID-L's light path: the host layer with its weights scaled (same shape as h)."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.layer = __import__("copy").deepcopy(block.first[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layer(x))


class HashGate(LinearGate):
    """A LinearGate whose logits are sin(100·linear(pool(x))): deterministic per sample, and mixed
    between samples (pooled features of random nets are all alike); the factor 100 stays small enough
    that float rounding differences between execution paths never flip a decision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.sin(100.0 * self.linear(self.pool(x)))
        g = relax(self.relaxation, z, self.training, **self.params)
        return g if self.units else g.reshape(len(g))


def gated(family: str, kind: str, seed: int = 0) -> Backbone:
    """A small backbone of `family` with every block wrapped by a gate of `kind` (a `HashGate`).

    Tests that compare logits across execution paths run it in float64 (`as_double`): in float32 a gate
    whose logit lies within rounding noise (~1e-6) of its threshold can flip between paths — a true
    near-tie, not a bug — which happened for about one decision in 10^5 on the segmentation net."""
    model = small_backbone(family, seed)

    def make(name: str, block: ResidualBlock) -> nn.Module:
        c_in, width = in_features(block), width_of(block.first)
        if kind == "block":
            return BlockGate(block, HashGate(block.pool, c_in), name)
        if kind == "channel":
            return ChannelGate(block, HashGate(block.pool, c_in, units=width), name)
        gate = HashGate(block.pool, c_in, units=width, relaxation="topk", k=max(1, width // 3))
        return NeuronGate(block, gate, name, light=LightPath(block) if kind == "neuron_light" else None)

    return wrap_blocks(model, make).eval()


@pytest.fixture(params=list(SMALL))
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def as_double(model: Backbone, x: torch.Tensor) -> tuple[Backbone, torch.Tensor]:
    """The model and inputs in float64 (token ids stay int64)."""
    return model.double(), (x.double() if x.is_floating_point() else x)
