"""MNIST (LeCun, Cortes, Burges): 70,000 28x28 greyscale handwritten digits, 10 classes, official split
60,000 train / 10,000 test. Files: the original IDX files in torchvision's layout `<root>/MNIST/raw/`
(`.gz` as published, checked against torchvision's MD5s, or their gunzipped copies).
"""
from __future__ import annotations

from pathlib import Path

import torchvision

from bench.data.dataset import Availability, DatasetPlugin, TensorSplit
from bench.data.formats import download_error, find_idx_files, read_idx_split, verify_md5
from bench.registry import register_dataset

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
OFFICIAL_MD5 = {name.removesuffix(".gz"): md5 for name, md5 in torchvision.datasets.MNIST.resources}  # of the .gz files


@register_dataset
class MNIST(DatasetPlugin):
    name = "mnist"
    description = "MNIST handwritten digits (60,000 train / 10,000 test, 28x28 greyscale, 10 classes)"
    num_classes = 10
    backbone = "resnet20"
    # `quick` (make bench): a ResNet-8 on a fixed 2,000-image subset, 3 epochs of batch 32 (enough steps to learn)
    # `standard`: 5 epochs, chosen on validation by results/sweeps/standard_schedules (dense ResNet-20, seeds 0-2:
    # val 99.45 / 99.45 / 99.40 %, mean 99.43 % >= 99.4 %; the shortest candidate)
    profile_overrides = {"quick": {"backbone": "resnet8", "max_train_examples": 2000, "epochs": 3, "batch_size": 32,
                                   "lr": 0.05},
                         "standard": {"epochs": 5}}
    mean = (0.1307,)  # published train-set values
    std = (0.3081,)
    crop_padding = 2  # small shifts only; no flips (digits are not mirror-symmetric)

    def raw_dir(self, root: Path) -> Path:
        return root / "MNIST" / "raw"

    def source_paths(self, root: Path) -> list[Path]:
        files = find_idx_files(self.raw_dir(root), FILES["train"] + FILES["test"]) or {}
        return list(files.values())

    def availability(self, root: Path) -> Availability:
        folder = self.raw_dir(root)
        files = find_idx_files(folder, FILES["train"] + FILES["test"])
        if files is None:
            names = ", ".join(f"{stem}.gz" for stem in FILES["train"] + FILES["test"])
            return Availability(False, f"expected {names} in {folder}: run `dynbench data download mnist` "
                                       "or copy the original files there")
        kind = "gz, official MD5" if all(p.suffix == ".gz" for p in files.values()) else "gunzipped IDX"
        return Availability(True, f"original IDX files in {folder} ({kind})")

    def download(self, root: Path) -> None:
        try:  # torchvision downloads into <root>/MNIST/raw and checks each file's MD5
            torchvision.datasets.MNIST(str(root), download=True)
        except Exception as exc:  # network errors come in many types
            raise download_error("MNIST", exc, self.raw_dir(root)) from None

    def load(self, root: Path, split: str) -> TensorSplit:
        folder = self.raw_dir(root)
        files = find_idx_files(folder, FILES[split]) or {stem: folder / f"{stem}.gz" for stem in FILES[split]}
        if self.verify_checksums:
            for stem, path in files.items():
                if path.suffix == ".gz":  # the official checksums are of the .gz files only
                    verify_md5(path, OFFICIAL_MD5[stem], "delete it and run `dynbench data download mnist`")
        images, labels = FILES[split]
        return read_idx_split(files[images], files[labels])
