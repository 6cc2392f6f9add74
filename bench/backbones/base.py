"""The residual-block protocol every backbone follows, so methods can wrap blocks without rewriting them.

A backbone is a stem, a sequence of residual blocks and a head. Per-sample state that blocks need but
that is not part of the activation tensor (the padding mask of text) lives in a `SampleContext` shared
by the backbone and its blocks: the backbone fills it before the blocks run, and block wrappers that
run a block on a subset of the batch (gather execution) narrow it with `context.narrowed(index)`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from bench import DynBenchError


class SampleContext:
    """Per-forward, per-sample state shared by one backbone's modules.

    `mask` is the padding mask of a text batch, float [N, 1, L] with 1 = real token, or None for inputs
    without padding.
    """

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    @contextlib.contextmanager
    def narrowed(self, index: torch.Tensor) -> Iterator[None]:
        """Restrict the per-sample state to the samples `index` (for running a block on a gathered subset)."""
        saved = self.mask
        if saved is not None:
            self.mask = saved.index_select(0, index)
        try:
            yield
        finally:
            self.mask = saved


class MaskPad(nn.Module):
    """Zeroes padded positions of a [N, C, L] activation using the context's mask (identity without one)."""

    def __init__(self, context: SampleContext) -> None:
        super().__init__()
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.context.mask
        return x if mask is None else x * mask


class ResidualBlock(nn.Module):
    """`act(shortcut(x) + second(first(x)))`.

    `first(x) -> h` is conv/linear + norm + activation, `second(h) -> r` is conv/linear + norm (each an
    `nn.Sequential` whose first entry is the weighted layer); methods gate the whole branch (block
    gates), the activations `h` (channel gates) or the units of `first` (neuron gates) by wrapping this
    module (see `bench.gating.wrappers`). `pool(x)` gives gate modules one feature vector per sample.
    """

    def __init__(self, shortcut: nn.Module, first: nn.Sequential, second: nn.Sequential, act: nn.Module | None = None,
                 context: SampleContext | None = None) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.first = first
        self.second = second
        self.act = act if act is not None else nn.ReLU()
        self.context = context if context is not None else SampleContext()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.second(self.first(x)))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] features of a block input for gate modules: the vector itself, the mean over valid
        positions (text: padding excluded, so gates do not depend on the padded length), or GAP."""
        if x.dim() == 2:
            return x
        mask = self.context.mask
        if mask is not None:
            return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return x.flatten(2).mean(2)


class Backbone(nn.Module):
    """A stem, a sequence of residual blocks, and a head, for inputs of one fixed per-sample shape.

    `blocks` is an `nn.ModuleList` whose entries methods may replace by wrappers; `block_names()` names
    the gateable units in the gate trace. Subclasses with per-sample state override `prepare` (fill the
    context) and `after_block`.
    """

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module, in_shape: tuple[int, ...],
                 context: SampleContext | None = None, family: str = "backbone") -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.in_shape = tuple(in_shape)
        self.context = context if context is not None else SampleContext()
        self.family = family

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.prepare(x)
        h = self.stem(x)
        for block in self.blocks:
            h = self.after_block(block(h))
        return self.head(h)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise `DynBenchError` for a batch that does not have the shape this backbone was built for."""
        if tuple(x.shape[1:]) != self.in_shape or not x.is_floating_point():
            raise DynBenchError(f"{self.family} was built for float inputs of shape [N, {', '.join(map(str, self.in_shape))}]"
                                f" but got {x.dtype} {list(x.shape)}: check the dataset/backbone pairing or in_shape")

    def prepare(self, x: torch.Tensor) -> None:
        """Fill the shared context from the raw input before the stem runs (default: nothing to do)."""

    def after_block(self, h: torch.Tensor) -> torch.Tensor:
        """Applied to every block's output (default: identity)."""
        return h

    def block_names(self) -> list[str]:
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random batch of valid inputs (standard-normal features) for counting, timing and tests."""
        return torch.randn(batch_size, *self.in_shape, generator=generator)
