"""Residual 1-D conv network over token embeddings (methods.md §8, IMDB).

Token ids [N, L] (int64, 0 = padding) -> embedding (0 MACs) -> conv1d k3 stem -> `depth` blocks of two
conv1d k3 + BN -> masked max+mean pool -> linear 2·width -> classes. The padding mask (ids != 0) is
put in the backbone's `SampleContext` before the stem; `first` ends by zeroing padded positions and the
backbone zeroes them again after every block (BN shifts them), so valid positions, pooled features and
gate inputs do not depend on how much padding a sequence has.
"""
from __future__ import annotations

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone, MaskPad, ResidualBlock, SampleContext

KERNEL = 3


class TokenEmbedding(nn.Module):
    """Token ids [N, L] -> channels-first embeddings [N, E, L]."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens).transpose(1, 2)


class MaskedMaxMeanPool(nn.Module):
    """[N, C, L] -> [N, 2C]: max and mean over valid positions (a sequence of only padding pools to 0)."""

    def __init__(self, context: SampleContext) -> None:
        super().__init__()
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.context.mask
        valid = mask.sum(-1)
        mean = (x * mask).sum(-1) / valid.clamp(min=1.0)
        peak = x.masked_fill(mask == 0, float("-inf")).amax(-1)
        peak = torch.where(valid > 0, peak, torch.zeros_like(peak))
        return torch.cat([peak, mean], 1)


class TextCNN(Backbone):
    """Residual text CNN; inputs are int64 token ids [N, L] with 0 = padding and ids < vocab_size."""

    def __init__(self, *args, vocab_size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vocab_size = vocab_size

    def check_input(self, x: torch.Tensor) -> None:
        if x.dtype != torch.int64 or tuple(x.shape[1:]) != self.in_shape:
            raise DynBenchError(f"textcnn was built for int64 token ids of shape [N, {self.in_shape[0]}] but got "
                                f"{x.dtype} {list(x.shape)}: check the dataset/backbone pairing or in_shape")
        if not torch.jit.is_tracing() and x.numel() and (int(x.max()) >= self.vocab_size or int(x.min()) < 0):
            raise DynBenchError(f"token ids must lie in [0, {self.vocab_size}) (vocab_size option), got "
                                f"[{int(x.min())}, {int(x.max())}]")

    def prepare(self, x: torch.Tensor) -> None:
        self.context.mask = (x != 0).unsqueeze(1).float()

    def after_block(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.context.mask

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random token ids, each sequence padded (0) after a random length of at least 1."""
        length = self.in_shape[0]
        tokens = torch.randint(1, self.vocab_size, (batch_size, length), generator=generator)
        valid = torch.randint(1, length + 1, (batch_size, 1), generator=generator)
        return tokens * (torch.arange(length) < valid)


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, KERNEL, padding=KERNEL // 2, bias=False), nn.BatchNorm1d(c_out)]


def textcnn(in_shape: tuple[int, ...], num_classes: int, depth: int = 4, width: int = 128, embed_dim: int = 128,
            vocab_size: int = 20000) -> TextCNN:
    """Residual text CNN for sequences of shape (L,) with `depth` blocks of `width` channels."""
    if len(in_shape) != 1:
        raise DynBenchError(f"textcnn needs token-id sequences of shape (L,), not {tuple(in_shape)}")
    if depth < 1 or width < 1 or vocab_size < 2:
        raise DynBenchError(f"textcnn needs depth >= 1, width >= 1, vocab_size >= 2 (got {depth}, {width}, {vocab_size})")
    context = SampleContext()
    stem = nn.Sequential(TokenEmbedding(vocab_size, embed_dim), *conv_bn(embed_dim, width), nn.ReLU(inplace=True),
                         MaskPad(context))
    blocks = [ResidualBlock(nn.Identity(), nn.Sequential(*conv_bn(width, width), nn.ReLU(inplace=True), MaskPad(context)),
                            nn.Sequential(*conv_bn(width, width)), context=context) for _ in range(depth)]
    head = nn.Sequential(MaskedMaxMeanPool(context), nn.Linear(2 * width, num_classes))
    return TextCNN(stem, blocks, head, in_shape, context=context, family="textcnn", vocab_size=vocab_size)
