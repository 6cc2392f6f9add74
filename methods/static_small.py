"""Static-small control (methods.md §7): a shallower and/or narrower dense backbone of the same family,
chosen so that its MACs match a budget — is conditional computation better than a smaller static net?

`mac_budget` is a fraction of the full backbone's MACs (e.g. a gated method's mean executed MACs over its
dense MACs). The search spans the family's depth (CIFAR ResNet: 6n+2, n ≤ the original; resmlp / textcnn:
blocks ≤ the original; segnet: 18 ≤ the original) and width (integers up to the original; CIFAR ResNet: the
last stage's width c, the others round(c/2) and round(c/4), a grid four times finer than one base width: on
ResNet-20, base widths 13 and 14 execute 66 and 77 % of its MACs, a gap wider than §7's ±5 %); MACs are
counted with `bench.measure.macs.count_macs`, and the candidate closest to the budget wins (ties: the deeper
one). A budget the smallest candidate overshoots by more than 5 % (§7 matching rule) is an error; the chosen
net's miss (`relative_miss`, MACs over the budget − 1) is in the record, and the board marks a control outside
±5 % as not matched. The record's `mac_saving` is against the full dense backbone: the training loop counts
the dense MACs before `build`. The chosen configuration is stored as `static_small` in the metrics.
`match_record` instead takes the budget from a trained run's record (path or spec hash): its mean
executed MACs on the validation split over its dense MACs (`bench.matching`); the record must come
from the same dataset and backbone, and is summarised in this run's record so that the control goes
stale when the matched run changes.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones import build_backbone
from bench.backbones.base import Backbone
from bench.backbones.resnet_cifar import basic_block, resnet_cifar
from bench.gating.blockgates import check_fraction, require_blocks
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs
from bench.matching import check_same_setting, load_matched, summary, val_executed_fraction
from bench.method import Method
from bench.records import RunSpec
from bench.registry import register_method

MATCH_TOLERANCE = 0.05  # §7: "matched" = within ±5 % of the target MACs
MIN_WIDTH = 2


def family_options(backbone: Backbone) -> tuple[str, dict[str, Any], list[int]]:
    """(family, constructor options of `backbone` that stay fixed, depths to search) — read back from the
    built modules, since a backbone does not keep its constructor arguments."""
    family = backbone.family
    if family.startswith("resnet"):
        depth = int(re.fullmatch(r"resnet(\d+)", family).group(1))
        return "resnet_cifar", {}, list(range(8, depth + 1, 6))
    if family == "resmlp":
        return "resmlp", {}, list(range(1, len(backbone.blocks) + 1))
    if family == "textcnn":
        embedding = backbone.stem[0].embedding
        return "textcnn", {"embed_dim": embedding.embedding_dim, "vocab_size": embedding.num_embeddings}, \
            list(range(1, len(backbone.blocks) + 1))
    if family.startswith("segnet"):
        head = backbone.head
        return "segnet", {"head_channels": head.classifier.in_channels,
                          "bins": tuple(b[0].output_size for b in head.branches)}, [d for d in (18, 34) if d <= int(family[6:])]
    raise DynBenchError(f"static_small: no depth/width search for backbone family '{family}'")


def searched_width(backbone: Backbone) -> int:
    """The full backbone's value of the width searched: the last block's width for CIFAR ResNets, the
    first block's input width otherwise."""
    if backbone.family.startswith("resnet"):
        return backbone.blocks[-1].first[0].out_channels
    layer = backbone.blocks[0].first[0]
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def resnet_stage_widths(in_shape: tuple[int, ...], num_classes: int, depth: int,
                        widths: tuple[int, int, int]) -> Backbone:
    """A CIFAR ResNet whose three stage widths are set one by one: the family's net at the first stage's
    width (it scales all three by one width), its later stages rebuilt at their own widths."""
    model = resnet_cifar(in_shape, num_classes, depth=depth, width=widths[0])
    n = (depth - 2) // 6
    c_in = widths[0]
    for stage, c_out in enumerate(widths[1:], start=1):
        for i in range(n):
            model.blocks[stage * n + i] = basic_block(c_in, c_out, stride=2 if i == 0 else 1)
            c_in = c_out
    model.head[-1] = nn.Linear(c_in, num_classes)
    for module in model.blocks[n:].modules():
        if isinstance(module, nn.Conv2d):  # the family's initialisation
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def num_classes(backbone: Backbone) -> int:
    last = [m for m in backbone.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


@register_method
class StaticSmall(Method):
    """Options: mac_budget — target MACs as a fraction (0, 1] of the full dense backbone; match_record — a
    record (path or spec hash) whose validation executed-MAC fraction is the budget instead."""

    name = "static_small"
    description = "control: a smaller dense backbone (depth/width searched) matching a MAC budget (§7)"
    options = {"mac_budget": 0.5, "match_record": None}
    presets = {"default": {}, **{f"budget{round(100 * b)}": {"mac_budget": b} for b in (0.3, 0.5, 0.7)}}

    def validate(self) -> None:
        self.matched = None
        if self.config["match_record"] is not None:
            self.matched = load_matched(self.name, self.config["match_record"])
            fraction = val_executed_fraction(self.matched)
            if fraction >= 1:
                raise DynBenchError(f"static_small: match_record {self.matched.spec_hash} executes {100 * fraction:.1f} % "
                                    "of its dense MACs (no saving): the dense row is its static control")
            self.config["mac_budget"] = round(fraction, 4)
        check_fraction(self.name, "mac_budget", self.config["mac_budget"], allow_zero=False)

    def check_run(self, spec: RunSpec) -> None:
        if self.matched is not None:
            check_same_setting(self.name, self.matched, spec)

    def build(self, backbone: nn.Module) -> nn.Module:
        require_blocks(backbone, self.name)
        family, fixed, depths = family_options(backbone)
        shape, classes, full_width = backbone.in_shape, num_classes(backbone), searched_width(backbone)
        example = backbone.example_input(1, torch.Generator().manual_seed(0))
        full = count_macs(backbone, example)
        target = self.config["mac_budget"] * full

        def layout(width: int) -> dict[str, Any]:
            if family == "resnet_cifar":
                return {"widths": (max(MIN_WIDTH, round(width / 4)), max(MIN_WIDTH, round(width / 2)), width)}
            return {"width": width}

        def build_candidate(depth: int, width: int) -> Backbone:
            if family == "resnet_cifar":
                return resnet_stage_widths(shape, classes, depth, **layout(width))
            return build_backbone(family, shape, classes, depth=depth, width=width, **fixed)

        def macs(depth: int, width: int) -> int:
            return count_macs(build_candidate(depth, width), example)

        candidates = []  # per depth, the widths just below and above the target (MACs grow with width)
        for depth in depths:
            low, high = MIN_WIDTH, full_width
            if macs(depth, low) >= target:
                candidates.append((depth, low, macs(depth, low)))
                continue
            while high - low > 1:  # largest width whose MACs stay at or below the target
                mid = (low + high) // 2
                low, high = (mid, high) if macs(depth, mid) <= target else (low, mid)
            candidates += [(depth, w, macs(depth, w)) for w in {low, high}]
        smallest = min(c[2] for c in candidates)
        if smallest > (1 + MATCH_TOLERANCE) * target:
            raise DynBenchError(f"static_small: mac_budget {self.config['mac_budget']} is below the smallest "
                                f"{family} tried ({smallest / full:.3f} of the dense MACs); raise the budget")
        depth, width, chosen = min(candidates, key=lambda c: (abs(c[2] - target), -c[0]))
        self.chosen = {"family": family, "depth": depth, **layout(width), "macs": chosen,
                       "fraction_of_dense": chosen / full, "target_fraction": self.config["mac_budget"],
                       "relative_miss": chosen / target - 1}
        return build_candidate(depth, width)

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        metrics: dict[str, Any] = {"static_small": dict(self.chosen)}
        if self.matched is not None:
            metrics["matched_record"] = summary(self.matched)
        return metrics
