"""Data root, whole-tensor splits, and batched normalisation/augmentation (no per-sample Python)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import DynBenchError
from bench.dataset import DatasetPlugin, TensorSplit

DATA_ROOT_ENV = "DYNBENCH_DATA"
SPLIT_SEED = 0  # the train/val split is fixed per dataset, the same for every method and seed


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """`--data-root`, else $DYNBENCH_DATA, else ./data. A root named explicitly must exist."""
    if explicit is not None:
        root, named_by = Path(explicit), "--data-root"
    elif os.environ.get(DATA_ROOT_ENV):
        root, named_by = Path(os.environ[DATA_ROOT_ENV]), f"${DATA_ROOT_ENV}"
    else:
        return Path("data").resolve()
    if not root.is_dir():
        raise DynBenchError(f"data root {root} (from {named_by}) is not a folder: create it or point {named_by} at your datasets folder")
    return root.resolve()


@dataclass
class DataSplits:
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    source: str  # where the tensors came from (files, bundled copy, ...)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def load_splits(plugin: DatasetPlugin, root: Path) -> DataSplits:
    """Parse train and test through the plugin and carve the validation split from train."""
    availability = plugin.availability(root)
    if not availability.ok:
        raise DynBenchError(f"dataset '{plugin.name}' is unavailable under {root}: {availability.detail}")
    full_train = plugin.load(root, "train")
    test = plugin.load(root, "test")
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = round(plugin.val_fraction * len(full_train))
    return DataSplits(full_train.subset(order[n_val:]), full_train.subset(order[:n_val]), test, availability.detail)


class BatchPipeline:
    """Turns a batch of stored tensors into model inputs: to device, uint8 images to normalised floats,
    and in training the dataset's random crop with padding and horizontal flip, done on the whole batch."""

    def __init__(self, plugin: DatasetPlugin, device: torch.device) -> None:
        self.plugin = plugin
        self.device = device
        self.is_image = plugin.modality == "image"
        if self.is_image:
            self.mean = torch.tensor(plugin.mean, device=device).view(1, -1, 1, 1)
            self.std = torch.tensor(plugin.std, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, train: bool = False) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if not self.is_image:
            return x
        x = x.float().div_(255)
        if train:
            x = augment_images(x, self.plugin.crop_padding, self.plugin.horizontal_flip, generator)
        return (x - self.mean) / self.std


def augment_images(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, one draw per sample, on the whole batch."""
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * padding)
        x = padded.gather(2, rows)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        x = x.gather(3, cols)
    if flip:
        flipped = torch.rand(n, generator=generator).to(x.device) < 0.5
        x = torch.where(flipped.view(n, 1, 1, 1), x.flip(3), x)
    return x


def iterate_batches(split: TensorSplit, batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of stored tensors; a shuffled pass draws one permutation from `generator`.
    `drop_last` drops a final partial batch (training: a batch of one breaks batch norm)."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield split.x[index], split.y[index]
