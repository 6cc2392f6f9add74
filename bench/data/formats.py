"""Readers of the original dataset file formats, shared by the dataset plugins: IDX (MNIST family),
CIFAR python pickle batches, SVHN .mat files, image-folder trees, and MD5 checks of official files.

Every reader raises `DynBenchError` naming the file and what to do when a file is missing, truncated or
of the wrong layout, so the suite can skip that dataset with a clear reason.
"""
from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.utils import calculate_md5

from bench import DynBenchError
from bench.data.dataset import TensorSplit

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def require_file(path: Path, what_to_do: str) -> Path:
    """`path` if it is a file, else a `DynBenchError` naming it."""
    if not path.is_file():
        raise DynBenchError(f"missing file {path}: {what_to_do}")
    return path


def verify_md5(path: Path, expected: str, what_to_do: str) -> None:
    """Check a file against its published MD5 (torchvision's lists of the official files)."""
    actual = calculate_md5(str(require_file(path, what_to_do)))
    if actual != expected:
        raise DynBenchError(f"{path} is corrupt or not the official file (MD5 {actual}, expected {expected}): "
                            f"{what_to_do}")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or .gz) as published by LeCun et al.: magic 0x0000 <dtype> <ndim>, then
    big-endian uint32 sizes, then the data."""
    require_file(path, "put the original IDX file there or run `dynbench data download`")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DynBenchError(f"{path} is not a readable gzip file ({exc}): delete it and download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DynBenchError(f"{path} is not an IDX file (bad magic number): replace it with the original file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">u4"))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + dtype.itemsize * int(np.prod(shape))
    if len(raw) != expected:
        raise DynBenchError(f"{path} is truncated or corrupt ({len(raw)} bytes, the header promises {expected}): "
                            "delete it and download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_idx_split(images: Path, labels: Path) -> TensorSplit:
    """Greyscale IDX images [N,H,W] and labels [N] -> uint8 [N,1,H,W] and int64 [N]."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DynBenchError(f"{images} and {labels} do not match: images {x.shape}, labels {y.shape}")
    return TensorSplit(torch.from_numpy(x.astype(np.uint8)).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def read_cifar_batches(paths: Sequence[Path], label_key: str) -> TensorSplit:
    """CIFAR python pickle batches (dicts with b"data" uint8 [N, 3072] in CHW order and `label_key`)."""
    images, labels = [], []
    for path in paths:
        require_file(path, "put the extracted official archive there or run `dynbench data download`")
        try:
            with path.open("rb") as f:
                batch = safe_unpickle(f, path)
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            targets = np.asarray(batch[label_key.encode()], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise DynBenchError(f"{path} is truncated or not a CIFAR batch ({type(exc).__name__}: {exc}): "
                                "delete the folder and extract the official archive again") from None
        if len(data) != len(targets):
            raise DynBenchError(f"{path}: {len(data)} images but {len(targets)} labels; extract the archive again")
        images.append(data)
        labels.append(targets)
    return TensorSplit(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def read_pickle_names(path: Path, key: str) -> list[str]:
    """Class names from a CIFAR meta pickle (`batches.meta` / `meta`): a dict whose `key` lists names."""
    require_file(path, "extract the official archive again")
    try:
        with path.open("rb") as f:
            meta = safe_unpickle(f, path)
        names = meta[key.encode()] if isinstance(meta, dict) else None
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
            raise ValueError(f"expected a dict whose {key!r} lists class names, found {type(meta).__name__}")
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DynBenchError(f"{path} is not a CIFAR meta file ({type(exc).__name__}: {exc}): extract the archive again") from None


# What a CIFAR pickle may reference: numpy's array reconstruction and byte decoding, nothing that runs code.
SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 stores bytes through _codecs.encode
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data (dicts, lists, bytes, str, numbers) and numpy arrays only: any other global a
    crafted file names (os.system, builtins.eval, ...) is refused before it can be called."""

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a data file may hold only arrays and "
                                     "plain values (this one could run code)")


def safe_unpickle(file, path: Path):
    """`pickle.load` of a data file that cannot run code, whatever its bytes; Python 2 strings as bytes."""
    return _DataOnlyUnpickler(file, encoding="bytes").load()


def read_svhn_mat(path: Path) -> TensorSplit:
    """SVHN cropped digits (`*_32x32.mat`): X uint8 [32,32,3,N], y [N,1] with label 10 meaning digit 0."""
    from scipy.io import loadmat  # scipy is only needed for SVHN

    require_file(path, "put the official SVHN file there or run `dynbench data download svhn`")
    try:
        mat = loadmat(str(path))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise DynBenchError(f"{path} is truncated or not an SVHN .mat file ({exc}): delete it and download it again") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DynBenchError(f"{path}: X has shape {x.shape} and y {len(y)} labels; expected [32,32,3,N] and N labels")
    y[y == 10] = 0
    return TensorSplit(torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8)), torch.from_numpy(y))


def read_image_folder(split_dir: Path, classes: Sequence[str], channels: int = 3) -> TensorSplit:
    """An ImageFolder tree `split_dir/<class>/*.png` with labels in the given (official) class order;
    files are read in name order. Every class folder must exist and hold images of one size."""
    if not split_dir.is_dir():
        raise DynBenchError(f"missing folder {split_dir}: expected {split_dir}/<class>/*.png with classes {', '.join(classes)}")
    mode = "RGB" if channels == 3 else "L"
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            raise DynBenchError(f"missing class folder {folder}: the tree needs one folder per class "
                                f"({', '.join(classes)}); restore it from the original copy")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DynBenchError(f"class folder {folder} holds no images; restore it from the original copy")
        for path in files:
            try:
                with Image.open(path) as image:
                    images.append(np.asarray(image.convert(mode)))
            except (OSError, UnidentifiedImageError) as exc:
                raise DynBenchError(f"{path} is not a readable image ({exc}); restore it from the original copy") from None
        labels.append(torch.full((len(files),), label, dtype=torch.int64))
    sizes = {image.shape for image in images}
    if len(sizes) != 1:
        raise DynBenchError(f"images under {split_dir} differ in size ({sorted(sizes)[:3]}...): all must be the same")
    pixels = torch.from_numpy(np.stack(images))  # [N,H,W,C] or [N,H,W]
    return TensorSplit(pixels.permute(0, 3, 1, 2).contiguous() if channels == 3 else pixels.unsqueeze(1), torch.cat(labels))


def find_idx_files(folder: Path, stems: Sequence[str]) -> dict[str, Path] | None:
    """Each IDX file of `stems` in `folder`, preferring the original `.gz` over a gunzipped copy; None if any is missing."""
    found = {}
    for stem in stems:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def download_error(name: str, exc: Exception, where: Path) -> DynBenchError:
    """A failed download, said in one line with where to put the files by hand."""
    return DynBenchError(f"downloading {name} failed ({type(exc).__name__}: {exc}); without network access, "
                         f"put the original files under {where} by hand")
