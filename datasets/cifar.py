"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009): 60,000 32x32 colour images, 50,000 train / 10,000 test, 10 or
100 classes (CIFAR-100: the fine labels).

Sources, in order: the official python pickle batches in torchvision's layout (`<root>/cifar-10-batches-py/`,
`<root>/cifar-100-python/`, checked against torchvision's MD5s), else an image-folder tree
`<folder>/{train,test}/<class>/*.png` with one folder per class in official label order (e.g. the lossless
PNG re-distribution of CIFAR-10). The source used goes into each run record.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torchvision

from bench import DynBenchError
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit
from bench.data.formats import download_error, read_cifar_batches, read_image_folder, read_pickle_names, verify_md5
from bench.registry import register_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm""".split())  # fine_label_names of the official meta file, in label order


class _Cifar(DatasetPlugin):
    """What CIFAR-10 and CIFAR-100 share; each subclass names its torchvision class, folders and classes."""

    torchvision_class: ClassVar[type]
    label_key: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    image_folders: ClassVar[tuple[str, ...]]  # candidate names of an image-folder tree under the root
    backbone = "resnet20"
    # `quick` (make bench): a ResNet-8 on a fixed 2,000-image subset, 3 epochs of batch 32 (enough steps to learn)
    # `standard`: the reference board's schedule (issue 17), 40 epochs: dense ResNet-20 seed 0 reached 90.78 % on
    # validation, and 30 epochs would replace it only at >= 91.0 % (results/sweeps/cifar10_schedule)
    profile_overrides = {"quick": {"backbone": "resnet8", "max_train_examples": 2000, "epochs": 3, "batch_size": 32,
                                   "lr": 0.05},
                         "standard": {"epochs": 40}}
    crop_padding = 4
    horizontal_flip = True

    def batches_dir(self, root: Path) -> Path:
        return root / self.torchvision_class.base_folder

    def tree(self, root: Path) -> Path | None:
        """The first image-folder tree under `root` with train/ and test/, if any."""
        for name in self.image_folders:
            if (root / name / "train").is_dir() and (root / name / "test").is_dir():
                return root / name
        return None

    def batch_files(self, root: Path, split: str) -> list[tuple[Path, str]]:
        files = self.torchvision_class.train_list if split == "train" else self.torchvision_class.test_list
        return [(self.batches_dir(root) / name, md5) for name, md5 in files]

    def source_paths(self, root: Path) -> list[Path]:
        if self.batches_dir(root).is_dir():
            return [path for split in ("train", "test") for path, _ in self.batch_files(root, split)]
        tree = self.tree(root)
        return [tree / split / name for split in ("train", "test") for name in self.classes] if tree else []

    def availability(self, root: Path) -> Availability:
        if self.batches_dir(root).is_dir():  # present; their MD5s are checked when parsed (`data list` checks them too)
            return Availability(True, f"official python batches in {self.batches_dir(root)}")
        tree = self.tree(root)
        if tree is None:
            folders = " or ".join(str(root / name) for name in self.image_folders)
            return Availability(False, f"expected the official batches in {self.batches_dir(root)} (run `dynbench data "
                                       f"download {self.name}`) or an image-folder tree {folders}/{{train,test}}/<class>/*.png")
        missing = [tree / split / name for split in ("train", "test") for name in self.classes
                   if not (tree / split / name).is_dir()]
        if missing:
            return Availability(False, f"image-folder tree {tree} lacks {len(missing)} class folder(s), e.g. {missing[0]}; "
                                       f"it needs train/ and test/ with one folder per class ({', '.join(self.classes[:3])}, ...)")
        sample = ("; a SAMPLE of the dataset (its README says what was drawn): scores are not comparable to published "
                  "results" if tree.name.endswith("-sample") else "")
        return Availability(True, f"image-folder tree {tree} (PNG files, not the official archive{sample})")

    def check_files(self, root: Path) -> str:
        """MD5 of every official batch and of the meta file against torchvision's published values."""
        if not self.batches_dir(root).is_dir():
            return ""
        if not self.verify_checksums:
            return "MD5 not checked"
        todo = f"delete {self.batches_dir(root)} and run `dynbench data download {self.name}`"
        meta = self.torchvision_class.meta
        files = self.batch_files(root, "train") + self.batch_files(root, "test")
        files.append((self.batches_dir(root) / meta["filename"], meta["md5"]))
        for path, md5 in files:
            verify_md5(path, md5, todo)
        return f"MD5 of {len(files)} files checked just now"

    def download(self, root: Path) -> None:
        try:  # torchvision downloads, checks the archive's MD5 and extracts it under root
            self.torchvision_class(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise download_error(self.name, exc, self.batches_dir(root)) from None

    def load(self, root: Path, split: str) -> TensorSplit:
        if not self.batches_dir(root).is_dir():
            tree = self.tree(root)
            if tree is None:
                raise DynBenchError(f"dataset '{self.name}': {self.availability(root).detail}")
            return read_image_folder(tree / split, self.classes)
        todo = f"delete {self.batches_dir(root)} and run `dynbench data download {self.name}`"
        files = self.batch_files(root, split)
        meta = self.torchvision_class.meta
        if self.verify_checksums:  # every file, the meta file too, matches its published MD5 before it is read
            for path, md5 in files + [(self.batches_dir(root) / meta["filename"], meta["md5"])]:
                verify_md5(path, md5, todo)
        names = read_pickle_names(self.batches_dir(root) / meta["filename"], meta["key"])
        if tuple(names) != self.classes:
            raise DynBenchError(f"{self.batches_dir(root) / meta['filename']} lists other classes than {self.name}'s: {todo}")
        return read_cifar_batches([path for path, _ in files], self.label_key)


@register_dataset
class Cifar10(_Cifar):
    name = "cifar10"
    description = "CIFAR-10 (50,000 train / 10,000 test, 32x32 colour, 10 classes); official batches or PNG tree"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)  # published train-set values (the README of the PNG copy confirms them)
    std = (0.2470, 0.2435, 0.2616)
    torchvision_class = torchvision.datasets.CIFAR10
    label_key = "labels"
    classes = CIFAR10_CLASSES
    image_folders = ("cifar10", "cifar10-png", "cifar10-png-sample")


@register_dataset
class Cifar100(_Cifar):
    name = "cifar100"
    description = "CIFAR-100 fine labels (50,000 train / 10,000 test, 32x32 colour, 100 classes)"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)  # published train-set values
    std = (0.2673, 0.2564, 0.2762)
    torchvision_class = torchvision.datasets.CIFAR100
    label_key = "fine_labels"
    classes = CIFAR100_CLASSES
    image_folders = ("cifar100", "cifar100-png", "cifar100-png-sample")  # the sample: 80/20 per class of official train
