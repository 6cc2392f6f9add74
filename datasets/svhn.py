"""SVHN cropped digits (Netzer et al. 2011): 32x32 colour house-number digits, 10 classes, official split
73,257 train / 26,032 test (the "extra" set is not used). Files: `train_32x32.mat` and `test_32x32.mat` in
`<root>/SVHN/` (checked against torchvision's MD5s; label 10 means digit 0), else an image-folder tree
`<root>/svhn/{train,test}/<0..9>/*.png`.
"""
from __future__ import annotations

from pathlib import Path

import torchvision

from bench import DynBenchError
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit
from bench.data.formats import download_error, read_image_folder, read_svhn_mat, verify_md5
from bench.registry import register_dataset

SPLIT_FILES = {split: (name, md5) for split, (_, name, md5) in torchvision.datasets.SVHN.split_list.items()}
CLASSES = tuple(str(digit) for digit in range(10))


@register_dataset
class SVHN(DatasetPlugin):
    name = "svhn"
    description = "SVHN cropped digits (73,257 train / 26,032 test, 32x32 colour, 10 classes)"
    num_classes = 10
    backbone = "resnet20"
    # `quick` (make bench): a ResNet-8 on a fixed 2,000-image subset, 3 epochs of batch 32 (enough steps to learn)
    profile_overrides = {"quick": {"backbone": "resnet8", "max_train_examples": 2000, "epochs": 3, "batch_size": 32,
                                   "lr": 0.05}}
    mean = (0.4377, 0.4438, 0.4728)  # published train-set values
    std = (0.1980, 0.2010, 0.1970)
    crop_padding = 2  # no flips: digits are not mirror-symmetric

    def mat_file(self, root: Path, split: str) -> Path:
        return root / "SVHN" / SPLIT_FILES[split][0]

    def tree(self, root: Path) -> Path:
        return root / "svhn"

    def has_mats(self, root: Path) -> bool:
        return all(self.mat_file(root, split).is_file() for split in ("train", "test"))

    def source_paths(self, root: Path) -> list[Path]:
        if self.has_mats(root):
            return [self.mat_file(root, split) for split in ("train", "test")]
        return [self.tree(root) / split / name for split in ("train", "test") for name in CLASSES]

    def availability(self, root: Path) -> Availability:
        if self.has_mats(root):
            return Availability(True, f"official .mat files in {root / 'SVHN'}")
        tree = self.tree(root)
        if not tree.is_dir():
            return Availability(False, f"expected {self.mat_file(root, 'train')} and {self.mat_file(root, 'test')} "
                                       f"(run `dynbench data download svhn`) or an image-folder tree {tree}/{{train,test}}/<0..9>/*.png")
        missing = [tree / split / name for split in ("train", "test") for name in CLASSES if not (tree / split / name).is_dir()]
        if missing:
            return Availability(False, f"image-folder tree {tree} lacks {len(missing)} class folder(s), e.g. {missing[0]}")
        return Availability(True, f"image-folder tree {tree} (PNG files, not the official .mat files)")

    def download(self, root: Path) -> None:
        for split in ("train", "test"):
            try:  # torchvision downloads into <root>/SVHN and checks the MD5
                torchvision.datasets.SVHN(str(root / "SVHN"), split=split, download=True)
            except Exception as exc:  # network errors come in many types
                raise download_error("SVHN", exc, root / "SVHN") from None

    def load(self, root: Path, split: str) -> TensorSplit:
        if not self.has_mats(root):
            if not self.availability(root).ok:
                raise DynBenchError(f"dataset 'svhn': {self.availability(root).detail}")
            return read_image_folder(self.tree(root) / split, CLASSES)
        path = self.mat_file(root, split)
        if self.verify_checksums:
            verify_md5(path, SPLIT_FILES[split][1], "delete it and run `dynbench data download svhn`")
        return read_svhn_mat(path)
