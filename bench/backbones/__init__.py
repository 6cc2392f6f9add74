"""Backbone families with gateable residual blocks, built by name (`resnet20`, `resnet_cifar`, ...)."""
from __future__ import annotations

import re
from typing import Any, Callable

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock
from bench.backbones.resnet_cifar import resnet_cifar

# family name -> constructor(in_shape, num_classes, **options)
FAMILIES: dict[str, Callable[..., Backbone]] = {
    "resnet_cifar": lambda in_shape, num_classes, **opts: resnet_cifar(in_shape[0], num_classes, **opts),
}
# short names: resnet20 = resnet_cifar with depth 20
ALIASES = {r"resnet(\d+)": ("resnet_cifar", lambda m: {"depth": int(m.group(1))})}

__all__ = ["Backbone", "ResidualBlock", "FAMILIES", "build_backbone", "backbone_names"]


def backbone_names() -> list[str]:
    return sorted(FAMILIES) + ["resnet<depth>"]


def build_backbone(name: str, in_shape: tuple[int, ...], num_classes: int, **options: Any) -> Backbone:
    """Build a backbone for inputs of shape `in_shape` (one sample, e.g. (3, 32, 32))."""
    family, implied = name, {}
    for pattern, (alias_family, to_options) in ALIASES.items():
        match = re.fullmatch(pattern, name)
        if match:
            family, implied = alias_family, to_options(match)
    if family not in FAMILIES:
        raise DynBenchError(f"unknown backbone '{name}': choose one of {', '.join(backbone_names())}")
    try:
        return FAMILIES[family](tuple(in_shape), num_classes, **{**options, **implied})
    except TypeError as exc:
        raise DynBenchError(f"backbone '{name}': {exc}") from None
