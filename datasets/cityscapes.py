"""Cityscapes fine annotations (Cordts et al., CVPR 2016): semantic segmentation of urban street scenes,
19 evaluation classes; 2,975 train / 500 val images with public labels. The official val split serves as
the test split here (test labels are not public); validation is carved from train as for every dataset.

Never downloadable (registration required, redistribution forbidden). Files: the official layout under
`<root>/cityscapes/`: `leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png` and
`gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png`. Images are resized to the working `resolution`
(bilinear; masks nearest) and label ids mapped to the 19 train ids, 255 = ignore.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench import DynBenchError
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit
from bench.registry import register_dataset

SPLIT_FOLDERS = {"train": "train", "test": "val"}
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
IGNORE = 255
# labelId -> trainId of the 19 evaluated classes (cityscapesScripts/helpers/labels.py); all others -> 255
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_TO_TRAIN = np.full(256, IGNORE, dtype=np.uint8)
LABEL_TO_TRAIN[list(TRAIN_IDS)] = list(TRAIN_IDS.values())
WHERE = ("register at https://www.cityscapes-dataset.com, download leftImg8bit_trainvaltest.zip and "
         "gtFine_trainvaltest.zip, and unzip both into {folder}")


@register_dataset
class Cityscapes(DatasetPlugin):
    name = "cityscapes"
    description = "Cityscapes fine segmentation (2,975 train / 500 val as test; 19 classes); manual download"
    task = "segmentation"
    primary_metric = "miou"
    num_classes = 19
    backbone = "segnet"
    mean = (0.2869, 0.3251, 0.2839)  # commonly used values computed on the train images
    std = (0.1870, 0.1902, 0.1872)
    horizontal_flip = True  # applied to images and masks together (bench.data.augment_pairs)
    options = ("resolution",)
    resolution = (256, 512)  # working (height, width); the originals are 1024 x 2048

    def folder(self, root: Path) -> Path:
        return root / "cityscapes"

    def source_paths(self, root: Path) -> list[Path]:
        folder = self.folder(root)
        return [folder / kind / split for kind in ("leftImg8bit", "gtFine") for split in SPLIT_FOLDERS.values()]

    def availability(self, root: Path) -> Availability:
        missing = [p for p in self.source_paths(root) if not p.is_dir()]
        if missing:
            return Availability(False, f"missing {', '.join(map(str, missing))}: Cityscapes cannot be downloaded by "
                                       f"DynBench; {WHERE.format(folder=self.folder(root))}")
        return Availability(True, f"official leftImg8bit/gtFine folders in {self.folder(root)}")

    def download(self, root: Path) -> None:
        raise DynBenchError(f"Cityscapes cannot be downloaded automatically: {WHERE.format(folder=self.folder(root))}")

    def load(self, root: Path, split: str) -> TensorSplit:
        if not self.availability(root).ok:
            raise DynBenchError(f"dataset 'cityscapes': {self.availability(root).detail}")
        height, width = self.resolution
        pairs = self.pairs(root, SPLIT_FOLDERS[split])
        images = torch.empty(len(pairs), 3, height, width, dtype=torch.uint8)
        masks = torch.empty(len(pairs), height, width, dtype=torch.uint8)
        for row, (image_path, mask_path) in enumerate(pairs):
            image = open_image(image_path, "RGB").resize((width, height), Image.BILINEAR)
            mask = open_image(mask_path, "L").resize((width, height), Image.NEAREST)
            images[row] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
            masks[row] = torch.from_numpy(LABEL_TO_TRAIN[np.asarray(mask)])
        return TensorSplit(images, masks)

    def pairs(self, root: Path, split_folder: str) -> list[tuple[Path, Path]]:
        """(image, labelIds mask) paths of every image of a split, sorted by city and name."""
        image_dir = self.folder(root) / "leftImg8bit" / split_folder
        mask_dir = self.folder(root) / "gtFine" / split_folder
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise DynBenchError(f"no images in {image_dir}/<city>/*{IMAGE_SUFFIX}: {WHERE.format(folder=self.folder(root))}")
        pairs = []
        for image in images:
            mask = mask_dir / image.parent.name / image.name.replace(IMAGE_SUFFIX, MASK_SUFFIX)
            if not mask.is_file():
                raise DynBenchError(f"missing annotation {mask} for {image}: unzip gtFine_trainvaltest.zip into "
                                    f"{self.folder(root)} (it holds gtFine/)")
            pairs.append((image, mask))
        return pairs


def open_image(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError) as exc:
        raise DynBenchError(f"{path} is not a readable PNG ({exc}); unzip the official archive again") from None
