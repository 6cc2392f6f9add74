"""Shared parts of the block-gating methods (SkipNet, ConvNet-AIG, CosineGate, random gates):
choosing the gateable blocks, option checks, and the per-forward values a gate keeps for its loss.

Loss terms need the gate outputs of the current step *with* their autograd graph (the gate trace
stores detached copies). A gate keeps them in its `scratch` during the forward pass and the method's
`extra_losses` collects them with `live_values`, in block order.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock
from bench.gating.wrappers import GatedUnit, gated_units, wrap_blocks


class Scratch(dict):
    """Values of the last forward pass, by key. A copy of the model (pruned or dense copies, §9 checks)
    starts with an empty scratch: tensors inside an autograd graph cannot be deep-copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> "Scratch":
        return Scratch()


def live_values(model: nn.Module, key: str) -> dict[str, torch.Tensor]:
    """`gate.scratch[key]` of every gated unit that stored it in the last forward pass, by unit name,
    in execution (block) order."""
    values = {}
    for unit in gated_units(model):
        scratch = getattr(unit.gate, "scratch", None)
        if scratch is not None and key in scratch:
            values[unit.name] = scratch[key]
    return values


def check_fraction(method: str, option: str, value: Any, allow_zero: bool = True) -> None:
    """Raise `DynBenchError` unless `value` is a number in [0, 1] ((0, 1] when `allow_zero` is false)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DynBenchError(f"{method}: option {option} must be a number in [0, 1], not {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise DynBenchError(f"{method}: option {option} must be a fraction in {interval}, not {value}")


def check_choice(method: str, option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DynBenchError(f"{method}: option {option} must be one of {', '.join(choices)}, not {value!r}")


def block_layer(block: ResidualBlock) -> nn.Module:
    """The weighted layer that opens a block's residual branch (Conv2d, Conv1d or Linear)."""
    return block.first[0]


def in_width(block: ResidualBlock) -> int:
    """Channels (or features) of a block's input: the width of the pooled gate input."""
    layer = block_layer(block)
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def block_modality(block: ResidualBlock) -> str:
    """"image" (Conv2d blocks), "sequence" (Conv1d blocks) or "vector" (Linear blocks)."""
    layer = block_layer(block)
    if isinstance(layer, nn.Conv2d):
        return "image"
    if isinstance(layer, nn.Conv1d):
        return "sequence"
    if isinstance(layer, nn.Linear):
        return "vector"
    raise DynBenchError(f"unsupported residual block opening with {type(layer).__name__}")


def stage_openers(backbone: Backbone) -> set[str]:
    """Names of the blocks that open a stage: the first block, and every block whose shortcut changes
    the shape (projection)."""
    return {name for i, (name, block) in enumerate(zip(backbone.block_names(), backbone.blocks))
            if i == 0 or not isinstance(block.shortcut, nn.Identity)}


def require_blocks(backbone: nn.Module, method: str) -> Backbone:
    """`backbone` itself, or a clear error when it has no plain residual blocks to gate."""
    if not isinstance(backbone, Backbone) or not len(backbone.blocks):
        raise DynBenchError(f"{method} gates residual blocks, but {type(backbone).__name__} has none: use a backbone "
                            "with gateable blocks (resnet_cifar, resmlp, textcnn, segnet)")
    if not all(isinstance(block, ResidualBlock) for block in backbone.blocks):
        raise DynBenchError(f"{method}: every block of {backbone.family} must be a plain ResidualBlock (already gated?)")
    return backbone


def gate_blocks(backbone: nn.Module, method: str, make: Callable[[str, ResidualBlock], GatedUnit | None]) -> Backbone:
    """`wrap_blocks` for a block-gating method, with clear errors for a model without residual blocks
    and for a choice that leaves no block gated."""
    model = wrap_blocks(require_blocks(backbone, method), make)
    if not gated_units(model):
        raise DynBenchError(f"{method}: no block of {backbone.family} ({len(backbone.blocks)} blocks) is gateable under "
                            "this method's rules (or options); use a deeper backbone")
    return model
