"""The dataset plugin interface: metadata plus how to load the original files into tensors."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench import DynBenchError


@dataclass
class TensorSplit:
    """One split held as whole tensors: images uint8 [N,C,H,W], tabular float [N,D], text int64 [N,L]
    (0 = padding), masks uint8 [N,H,W]; labels int64 [N] (or the masks for segmentation)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.x[index], self.y[index])


@dataclass(frozen=True)
class Availability:
    """Whether a dataset's files are present under the data root; `detail` says the source or what to do."""

    ok: bool
    detail: str


class DatasetPlugin:
    """Base class of a dataset plugin. Subclass it in `datasets/<name>.py` and decorate with
    `@bench.registry.register_dataset`.

    `load(root, split)` parses the ORIGINAL files for split "train" or "test"; the framework carves the
    validation split from train with a fixed seed, normalises and augments (see `bench.data`).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    task: ClassVar[str] = "classification"  # or "segmentation"
    primary_metric: ClassVar[str] = "accuracy"  # the test metric leaderboards rank by ("miou" for segmentation)
    modality: ClassVar[str] = "image"  # "image" | "tabular" | "text"
    num_classes: ClassVar[int]
    backbone: ClassVar[str] = "resnet20"  # default backbone for this dataset
    backbone_options: ClassVar[dict[str, Any]] = {}
    mean: ClassVar[tuple[float, ...]] = ()  # per-channel normalisation of images in [0, 1]
    std: ClassVar[tuple[float, ...]] = ()
    crop_padding: ClassVar[int] = 0  # random-crop padding (pixels) in training; 0 = no crop
    horizontal_flip: ClassVar[bool] = False
    val_fraction: ClassVar[float] = 0.1
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {}  # e.g. {"quick": {"epochs": 20}}
    primary_metric: ClassVar[str] = "accuracy"  # the record's headline metric: "accuracy" or "miou"
    version: ClassVar[int] = 1  # bump when load() output changes: it keys the tensor cache
    cache: ClassVar[bool] = True  # False for bundled data that parses faster than a cache loads
    options: ClassVar[tuple[str, ...]] = ()  # attributes that `Plugin(**options)` may override

    def __init__(self, verify_checksums: bool = True, **options: Any) -> None:
        """`verify_checksums=False` accepts files that differ from the official ones (tests write their own)."""
        self.verify_checksums = verify_checksums
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise DynBenchError(f"dataset '{self.name}' has no option(s) {', '.join(unknown)}; "
                                f"options: {', '.join(self.options) or 'none'}")
        for key, value in options.items():
            setattr(self, key, value)

    def cache_tag(self) -> str:
        """Names this plugin's cache file: name, version and the options that change load()'s output."""
        values = "".join(f"-{key}{_tag_value(getattr(self, key))}" for key in self.options)
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.name}-v{self.version}{values}")

    def source_paths(self, root: Path) -> list[Path]:
        """Files and folders that load() reads; their sizes and modification times key the cache."""
        return []

    def availability(self, root: Path) -> Availability:
        """Are the files present under `root`? Override for datasets that need files."""
        return Availability(True, "bundled")

    def check_files(self, root: Path) -> str:
        """Verify the source files now (e.g. checksums) for `dynbench data list`; return what was checked
        ('' for nothing), raise `DynBenchError` for a file that fails."""
        return ""

    def download(self, root: Path) -> None:
        raise DynBenchError(f"dataset '{self.name}' cannot be downloaded by DynBench: {self.availability(root).detail}")

    def load(self, root: Path, split: str) -> TensorSplit:
        raise NotImplementedError(f"dataset plugin '{self.name}' must implement load(root, split)")


def _tag_value(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
