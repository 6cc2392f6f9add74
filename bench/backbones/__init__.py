"""Backbone families with gateable residual blocks, built by name (`resnet20`, `resmlp`, `textcnn`, `segnet`)."""
from __future__ import annotations

import difflib
import re
from typing import Any, Callable

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock, SampleContext
from bench.backbones.resmlp import resmlp
from bench.backbones.resnet_cifar import resnet_cifar
from bench.backbones.segnet import segnet
from bench.backbones.textcnn import textcnn

# family name -> constructor(in_shape, num_classes, **options)
FAMILIES: dict[str, Callable[..., Backbone]] = {
    "resnet_cifar": resnet_cifar,
    "resmlp": resmlp,
    "textcnn": textcnn,
    "segnet": segnet,
}
# short names: resnet20 = resnet_cifar with depth 20, segnet34 = segnet with depth 34
ALIASES = {r"resnet(\d+)": ("resnet_cifar", lambda m: {"depth": int(m.group(1))}),
           r"segnet(\d+)": ("segnet", lambda m: {"depth": int(m.group(1))})}

COMMON = ["resnet20", "resnet32", "resnet56", "resnet110", "segnet18", "segnet34"]  # for "did you mean"

__all__ = ["Backbone", "ResidualBlock", "SampleContext", "FAMILIES", "build_backbone", "backbone_names"]


def backbone_names() -> list[str]:
    return sorted(FAMILIES) + ["resnet<depth>", "segnet<depth>"]


def build_backbone(name: str, in_shape: tuple[int, ...], num_classes: int, **options: Any) -> Backbone:
    """Build a backbone for inputs of shape `in_shape` (one sample, e.g. (3, 32, 32); text: (L,))."""
    family, implied = name, {}
    for pattern, (alias_family, to_options) in ALIASES.items():
        match = re.fullmatch(pattern, name)
        if match:
            family, implied = alias_family, to_options(match)
    if family not in FAMILIES:
        guesses = difflib.get_close_matches(name, list(FAMILIES) + COMMON, n=1)
        hint = f" (did you mean '{guesses[0]}'?)" if guesses else ""
        raise DynBenchError(f"unknown backbone '{name}'{hint}: choose one of {', '.join(backbone_names())}")
    if num_classes < 1:
        raise DynBenchError(f"backbone '{name}' needs num_classes >= 1, not {num_classes}")
    try:
        return FAMILIES[family](tuple(in_shape), num_classes, **{**options, **implied})
    except TypeError as exc:
        raise DynBenchError(f"backbone '{name}': {exc}") from None
