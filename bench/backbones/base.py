"""The residual-block protocol every backbone follows, so methods can wrap blocks without rewriting them."""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """`act(shortcut(x) + second(first(x)))`.

    `first(x) -> h` is conv/linear + norm + activation, `second(h) -> r` is conv/linear + norm; methods
    gate the whole branch (block gates), the activations `h` (channel gates) or the units of `first`
    (neuron gates) by wrapping this module.
    """

    def __init__(self, shortcut: nn.Module, first: nn.Module, second: nn.Module, act: nn.Module | None = None) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.first = first
        self.second = second
        self.act = act if act is not None else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.second(self.first(x)))


class Backbone(nn.Module):
    """A stem, a sequence of residual blocks, and a head. `blocks` is an `nn.ModuleList` whose entries
    methods may replace by wrappers; `block_names()` names the gateable units in the gate trace."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def block_names(self) -> list[str]:
        return [f"blocks.{i}" for i in range(len(self.blocks))]
