"""Wrapping the hidden units of every residual block (channels of conv1, units of the first linear):
the placement shared by channel gates (batch-shaping, methods.md §4.2, §4.8) and neuron gates (MID-L,
§6.4), with the error a backbone without such blocks gets."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock
from bench.gating.pruning import check_sliceable, width_of
from bench.gating.wrappers import GatedUnit, gated_units, wrap_blocks


def input_width(block: ResidualBlock) -> int:
    """Channels/features the block's first layer reads (the gate's pooled input width)."""
    layer = block.first[0]
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def is_gateable(block: nn.Module) -> bool:
    """A plain residual block whose first/second layers can be sliced by channel."""
    if not isinstance(block, ResidualBlock):
        return False
    try:
        check_sliceable(block.first)
        check_sliceable(block.second)
    except DynBenchError:
        return False
    return True


def wrap_hidden_units(backbone: nn.Module, make: Callable[[str, ResidualBlock, int, int], GatedUnit],
                      method: str) -> Backbone:
    """Replace every gateable block by `make(name, block, input width, hidden width)`; raise
    `DynBenchError` when the backbone has no block whose hidden units can be gated."""
    if not isinstance(backbone, Backbone):
        raise DynBenchError(f"{method} wraps the residual blocks of a bench backbone, not a {type(backbone).__name__}")
    wrap_blocks(backbone, lambda name, block: make(name, block, input_width(block), width_of(block.first))
                if is_gateable(block) else None)
    if not gated_units(backbone):
        raise DynBenchError(f"{method} gates the hidden units of residual blocks (conv/linear + norm + act, then "
                            f"conv/linear + norm), but {backbone.family} has no such block")
    return backbone
