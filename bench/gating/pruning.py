"""Channel slicing of a block's `first`/`second` layers, shared by physical skipping (functional, per
forward) and by the physically pruned copies that check the MAC accounting (`bench.gating.wrappers`).

`first` and `second` are `nn.Sequential`s whose first entry is the weighted layer (Conv1d/Conv2d/
Linear, groups 1); after it come norms (sliced along with the kept channels) and channel-wise layers
(ReLU, MaskPad, Identity, Dropout) that need no slicing. Slicing is eval-only: norms use running stats.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError
from bench.backbones.base import MaskPad

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
CHANNEL_WISE = (nn.ReLU, nn.Identity, nn.Dropout, MaskPad)


def check_sliceable(seq: nn.Module) -> None:
    """Raise `DynBenchError` unless `seq` is weighted layer + norms/channel-wise layers."""
    layers = list(seq) if isinstance(seq, nn.Sequential) else []
    ok = bool(layers) and isinstance(layers[0], WEIGHTED) and getattr(layers[0], "groups", 1) == 1 \
        and all(isinstance(layer, NORMS + CHANNEL_WISE) for layer in layers[1:])
    if not ok:
        raise DynBenchError(f"channel/neuron gates need first/second = Sequential(Conv or Linear, norms, "
                            f"activations); got {seq}")


def width_of(first: nn.Sequential) -> int:
    """Number of hidden units/channels `first` produces."""
    layer = first[0]
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _weighted(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    return conv(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def first_sliced(first: nn.Sequential, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`first(x)[:, index]`, computing only the kept output channels (index non-empty)."""
    for layer in first:
        if isinstance(layer, WEIGHTED):
            x = _weighted(layer, x, layer.weight[index], None if layer.bias is None else layer.bias[index])
        elif isinstance(layer, NORMS):
            x = F.batch_norm(x, layer.running_mean[index], layer.running_var[index], layer.weight[index],
                             layer.bias[index], False, 0.0, layer.eps)
        else:
            x = layer(x)
    return x


def second_sliced(second: nn.Sequential, h: torch.Tensor, index: torch.Tensor, out_like: torch.Tensor) -> torch.Tensor:
    """`second` applied to a hidden tensor of which only channels `index` are non-zero (`h` holds just
    those); `out_like` has the shape of the output (the shortcut's), used when no channel is kept."""
    layer = second[0]
    if index.numel():
        y = _weighted(layer, h, layer.weight[:, index], layer.bias)
    else:  # no input channel: the weighted layer outputs its bias
        y = torch.zeros_like(out_like)
        if layer.bias is not None:
            y = y + layer.bias.view(1, -1, *[1] * (y.dim() - 2))
    for layer in second[1:]:
        y = layer(y)
    return y


def _sliced_layer(layer: nn.Module, out_index: torch.Tensor | None, in_index: torch.Tensor | None) -> nn.Module:
    if isinstance(layer, CHANNEL_WISE):
        return layer  # shared, not copied: MaskPad must keep its link to the backbone's context
    new = copy.deepcopy(layer)
    if isinstance(layer, WEIGHTED):
        weight = layer.weight.detach()
        weight = weight[out_index] if out_index is not None else weight
        weight = weight[:, in_index] if in_index is not None else weight
        new.weight = nn.Parameter(weight.clone())
        if layer.bias is not None and out_index is not None:
            new.bias = nn.Parameter(layer.bias.detach()[out_index].clone())
        out_name, in_name = ("out_features", "in_features") if isinstance(layer, nn.Linear) else ("out_channels", "in_channels")
        setattr(new, out_name, weight.shape[0])
        setattr(new, in_name, weight.shape[1])
    elif isinstance(layer, NORMS) and out_index is not None:
        new.weight = nn.Parameter(layer.weight.detach()[out_index].clone())
        new.bias = nn.Parameter(layer.bias.detach()[out_index].clone())
        new.running_mean = layer.running_mean[out_index].clone()
        new.running_var = layer.running_var[out_index].clone()
        new.num_features = len(out_index)
    return new


def sliced_copy(seq: nn.Sequential, out_index: torch.Tensor | None = None, in_index: torch.Tensor | None = None) -> nn.Sequential:
    """A new Sequential that keeps output channels `out_index` (weighted layer and norms) or reads only
    input channels `in_index` (weighted layer)."""
    check_sliceable(seq)
    layers = [_sliced_layer(seq[0], out_index, in_index)]
    layers += [_sliced_layer(layer, out_index, None) for layer in list(seq)[1:]]
    return nn.Sequential(*layers)
