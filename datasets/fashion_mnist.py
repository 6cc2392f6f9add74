"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 70,000 28x28 greyscale images of clothing, 10 classes,
official split 60,000 train / 10,000 test, in the IDX format of MNIST.

Files: torchvision's layout `<root>/FashionMNIST/raw/` (checked against torchvision's MD5s), else the copy
installed by Debian's package `dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist. Debian
recompressed the `.gz` files (24 bytes of gzip header less), so that copy is checked against the
package's own MD5 list in dpkg's database instead.
"""
from __future__ import annotations

from pathlib import Path

import torchvision

from bench import DynBenchError
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit
from bench.data.formats import download_error, find_idx_files, read_idx_split, verify_md5
from bench.registry import register_dataset

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
OFFICIAL_MD5 = {name.removesuffix(".gz"): md5 for name, md5 in torchvision.datasets.FashionMNIST.resources}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_MD5SUMS = Path("/var/lib/dpkg/info/dataset-fashion-mnist.md5sums")


@register_dataset
class FashionMNIST(DatasetPlugin):
    name = "fashion_mnist"
    description = "Fashion-MNIST clothing images (60,000 train / 10,000 test, 28x28 greyscale, 10 classes)"
    num_classes = 10
    backbone = "resnet20"
    # `quick` (make bench): a ResNet-8 on a fixed 2,000-image subset, 3 epochs of batch 32 (enough steps to learn)
    # `standard`: 5 epochs, chosen on validation by results/sweeps/standard_schedules (dense ResNet-20, seeds 0-2:
    # val 92.45 / 92.45 / 92.57 %, mean 92.49 % >= 92.0 %; the shortest candidate)
    profile_overrides = {"quick": {"backbone": "resnet8", "max_train_examples": 2000, "epochs": 3, "batch_size": 32,
                                   "lr": 0.05},
                         "standard": {"epochs": 5}}
    mean = (0.2860,)  # published train-set values
    std = (0.3530,)
    crop_padding = 2
    horizontal_flip = True  # clothing classes are mirror-symmetric
    system_dir = DEBIAN_DIR  # an instance may point elsewhere (tests)

    def folders(self, root: Path) -> list[Path]:
        return [root / "FashionMNIST" / "raw", self.system_dir]

    def located(self, root: Path) -> tuple[Path, dict[str, Path]] | None:
        """The first folder holding all four files, with the files."""
        for folder in self.folders(root):
            files = find_idx_files(folder, FILES["train"] + FILES["test"])
            if files is not None:
                return folder, files
        return None

    def source_paths(self, root: Path) -> list[Path]:
        found = self.located(root)
        return list(found[1].values()) if found else []

    def availability(self, root: Path) -> Availability:
        found = self.located(root)
        if found is None:
            where = " or ".join(str(f) for f in self.folders(root))
            return Availability(False, f"expected the four Fashion-MNIST IDX .gz files in {where}: run "
                                       "`dynbench data download fashion_mnist` or `apt-get install dataset-fashion-mnist`")
        folder = found[0]
        origin = "Debian package dataset-fashion-mnist" if folder == self.system_dir else "torchvision layout"
        return Availability(True, f"original IDX files in {folder} ({origin})")

    def download(self, root: Path) -> None:
        try:
            torchvision.datasets.FashionMNIST(str(root), download=True)
        except Exception as exc:  # network errors come in many types
            raise download_error("Fashion-MNIST", exc, root / "FashionMNIST" / "raw") from None

    def load(self, root: Path, split: str) -> TensorSplit:
        found = self.located(root)
        if found is None:
            raise DynBenchError(f"dataset 'fashion_mnist': {self.availability(root).detail}")
        folder, files = found
        if self.verify_checksums:
            expected = debian_md5s() if folder == self.system_dir else OFFICIAL_MD5
            for stem in FILES[split]:
                if files[stem].suffix == ".gz":
                    verify_md5(files[stem], expected[stem], f"reinstall it or delete it and run "
                                                            "`dynbench data download fashion_mnist`")
        images, labels = FILES[split]
        return read_idx_split(files[images], files[labels])


def debian_md5s() -> dict[str, str]:
    """MD5s of the Debian package's files, by IDX stem, from dpkg's database."""
    if not DEBIAN_MD5SUMS.is_file():
        raise DynBenchError(f"cannot check {DEBIAN_DIR}: {DEBIAN_MD5SUMS} is missing; reinstall dataset-fashion-mnist")
    sums = {}
    for line in DEBIAN_MD5SUMS.read_text().splitlines():
        md5, _, path = line.partition("  ")
        sums[Path(path).name.removesuffix(".gz")] = md5
    return sums
