"""CIFAR-style ResNet (He et al. 2016, §4.2): depth 6n+2, widths 16/32/64, option-B projection shortcuts.

Written here rather than taken from timm/torchvision: their ResNets are the ImageNet design (7x7 stem,
four stages, 64-512 channels); the 6n+2 CIFAR family with option-B shortcuts is neither.
"""
from __future__ import annotations

from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


def basic_block(c_in: int, c_out: int, stride: int) -> ResidualBlock:
    """3x3 conv-BN-ReLU then 3x3 conv-BN; a 1x1 conv stride-s + BN shortcut when the shape changes."""
    shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out else nn.Identity()
    first = nn.Sequential(*conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True))
    second = nn.Sequential(*conv_bn(c_out, c_out, 3))
    return ResidualBlock(shortcut, first, second)


def resnet_cifar(in_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16) -> Backbone:
    """ResNet-`depth` for images of shape (C, H, W) with stage widths width·(1, 2, 4); `depth` must be
    6n+2 (8, 20, 32, 44, 56, 110, ...)."""
    if len(in_shape) != 3:
        raise DynBenchError(f"resnet_cifar needs image inputs (C, H, W), not shape {tuple(in_shape)}")
    if depth < 8 or (depth - 2) % 6:
        raise DynBenchError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 20, 32, 44, 56, 110), not {depth}")
    n = (depth - 2) // 6
    widths = [width, 2 * width, 4 * width]
    stem = nn.Sequential(*conv_bn(in_shape[0], width, 3), nn.ReLU(inplace=True))
    blocks, c_in = [], width
    for stage, c_out in enumerate(widths):
        for i in range(n):
            blocks.append(basic_block(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
            c_in = c_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    model = Backbone(stem, blocks, head, in_shape, family=f"resnet{depth}")
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model
