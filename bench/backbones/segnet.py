"""Segmentation network (methods.md §8, Cityscapes): ResNet-18/34-style encoder at output stride 8 with
gateable residual blocks, and a light pyramid-pooling head (bins 1, 2, 3, 6 -> 1x1 convs -> concat ->
3x3 conv -> 1x1 classifier -> bilinear upsampling to the input size).

The encoder is timm's `ResNet` (BasicBlock, `output_stride=8`): timm gets the dilation bookkeeping of
the last two stages right (torchvision's BasicBlock refuses dilation > 1). Its blocks are re-expressed
in the shortcut/first/second protocol, reusing timm's conv and norm modules as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, ResidualBlock

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
OUTPUT_STRIDE = 8


class PyramidPoolingHead(nn.Module):
    """PSPNet-style head kept light: `channels` per pyramid branch and after fusion (no BN in the pooled
    branches, so a 1x1 bin also trains at batch size 1)."""

    def __init__(self, c_in: int, num_classes: int, channels: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(c_in, channels, 1), nn.ReLU(inplace=True)) for b in bins)
        self.fuse = nn.Sequential(nn.Conv2d(c_in + len(bins) * channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x] + [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
                         for branch in self.branches]
        logits = self.classifier(self.fuse(torch.cat(pyramid, 1)))
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class SegNet(Backbone):
    """Encoder blocks are the gateable units; stem and head always run. Output: logits [N, classes, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h, tuple(x.shape[-2:]))


def segnet(in_shape: tuple[int, ...], num_classes: int, depth: int = 18, width: int = 64, head_channels: int = 128,
           bins: tuple[int, ...] = (1, 2, 3, 6)) -> SegNet:
    """Segmentation net for images (C, H, W), H and W multiples of 8; encoder ResNet-`depth` (18 or 34)
    with stage widths width·(1, 2, 4, 8)."""
    from timm.models.resnet import BasicBlock, ResNet  # imported here: timm's import is slow and only segnet needs it

    if len(in_shape) != 3 or in_shape[1] % OUTPUT_STRIDE or in_shape[2] % OUTPUT_STRIDE:
        raise DynBenchError(f"segnet needs images (C, H, W) with H and W multiples of {OUTPUT_STRIDE}, not {tuple(in_shape)}")
    if depth not in STAGE_BLOCKS:
        raise DynBenchError(f"segnet depth must be one of {sorted(STAGE_BLOCKS)}, not {depth}")
    channels = tuple(width * m for m in (1, 2, 4, 8))
    encoder = ResNet(BasicBlock, STAGE_BLOCKS[depth], in_chans=in_shape[0], output_stride=OUTPUT_STRIDE,
                     channels=channels, stem_width=width, num_classes=0, zero_init_last=False)
    stem = nn.Sequential(encoder.conv1, encoder.bn1, encoder.act1, encoder.maxpool)
    blocks = []
    for stage in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
        for b in stage:  # timm's drop_block/aa/se/drop_path are off (Identity/None) with these arguments
            shortcut = b.downsample if b.downsample is not None else nn.Identity()
            blocks.append(ResidualBlock(shortcut, nn.Sequential(b.conv1, b.bn1, b.act1), nn.Sequential(b.conv2, b.bn2),
                                        act=b.act2))
    head = PyramidPoolingHead(channels[-1], num_classes, head_channels, tuple(bins))
    return SegNet(stem, blocks, head, in_shape, family=f"segnet{depth}")
