"""Residual MLP for tabular data (methods.md §8, Adult): linear d->width, BN, ReLU -> `depth` blocks
[linear, BN, ReLU, linear, BN] + ReLU -> linear width->classes. Written here: timm's "ResMLP" is the
patch-based vision model of the same name, not a tabular network."""
from __future__ import annotations

from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock


def linear_bn(d_in: int, d_out: int) -> list[nn.Module]:
    return [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out)]


def resmlp(in_shape: tuple[int, ...], num_classes: int, depth: int = 4, width: int = 128) -> Backbone:
    """Residual MLP for feature vectors of shape (D,), with `depth` residual blocks of `width` units."""
    if len(in_shape) != 1:
        raise DynBenchError(f"resmlp needs feature vectors of shape (D,), not {tuple(in_shape)}")
    if depth < 1 or width < 1:
        raise DynBenchError(f"resmlp needs depth >= 1 and width >= 1, not depth={depth}, width={width}")
    stem = nn.Sequential(*linear_bn(in_shape[0], width), nn.ReLU(inplace=True))
    blocks = [ResidualBlock(nn.Identity(), nn.Sequential(*linear_bn(width, width), nn.ReLU(inplace=True)),
                            nn.Sequential(*linear_bn(width, width))) for _ in range(depth)]
    head = nn.Linear(width, num_classes)
    return Backbone(stem, blocks, head, in_shape, family="resmlp")
