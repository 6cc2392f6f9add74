"""Data root, the tensor cache of parsed splits, whole-tensor splits, and batched normalisation and
augmentation (no per-sample Python in the training loop)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import DynBenchError
from bench.data.dataset import DatasetPlugin, TensorSplit

DATA_ROOT_ENV = "DYNBENCH_DATA"
CACHE_ENV = "DYNBENCH_CACHE"
CACHE_FORMAT = 1  # layout of the cache files themselves; each plugin's `version` keys its content
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


def load_splits(plugin: DatasetPlugin, root: Path, use_cache: bool = True) -> DataSplits:
    """Parse train and test through the plugin (or load them from the tensor cache) and carve the
    validation split from train."""
    availability = plugin.availability(root)
    if not availability.ok:
        raise DynBenchError(f"dataset '{plugin.name}' is unavailable under {root}: {availability.detail}")
    if plugin.cache and use_cache:
        full_train, test = load_cached(plugin, root, availability.detail)
    else:
        full_train, test = plugin.load(root, "train"), plugin.load(root, "test")
    train, val = carve_validation(full_train, plugin.val_fraction)
    return DataSplits(train, val, test, availability.detail)


def fixed_subset(split: TensorSplit, size: int | None) -> TensorSplit:
    """The same random `size` examples of `split` for every method and seed (all of it when None or larger)."""
    if size is None or size >= len(split):
        return split
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return split.subset(order[:size].sort().values)


def carve_validation(full_train: TensorSplit, val_fraction: float) -> tuple[TensorSplit, TensorSplit]:
    """(train, val): a fixed random `val_fraction` of the original train split becomes validation."""
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = round(val_fraction * len(full_train))
    return full_train.subset(order[n_val:]), full_train.subset(order[:n_val])


# ---- tensor cache: parsed train/test tensors in one .pt file plus a small JSON of what they came from ----

@dataclass(frozen=True)
class CacheEntry:
    """Where a dataset's cache lives and what a valid one must have been built from."""

    tensors: Path  # torch.save of {"train_x", "train_y", "test_x", "test_y"}
    meta: Path  # JSON: format, tag, fingerprint, source, sizes
    fingerprint: str


def is_writable(folder: Path) -> bool:
    """Writable by its permission bits, not merely by us: root may write anywhere, but a folder marked
    read-only (a shared dataset mirror) must stay untouched."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def cache_dir(root: Path) -> Path:
    """$DYNBENCH_CACHE, else `<root>/.cache` when the data root is writable, else the user cache dir.
    Outside the data root, caches of different roots go to separate subfolders."""
    if os.environ.get(CACHE_ENV):
        base = Path(os.environ[CACHE_ENV])
    elif is_writable(root):
        return root / ".cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dynbench"
    return base / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


def cache_entry(plugin: DatasetPlugin, root: Path, source: str) -> CacheEntry:
    """The cache file names of `plugin` under `root`, with the fingerprint of its current source files."""
    stats = []
    for path in plugin.source_paths(root):
        info = path.stat() if path.exists() else None
        stats.append((str(path), info.st_size if info else -1, info.st_mtime_ns if info else -1))
    fingerprint = hashlib.sha256(json.dumps([CACHE_FORMAT, source, stats]).encode()).hexdigest()[:16]
    folder = cache_dir(root)
    tag = plugin.cache_tag()
    return CacheEntry(folder / f"{tag}.pt", folder / f"{tag}.json", fingerprint)


def read_cache_meta(entry: CacheEntry) -> dict | None:
    """The cache's metadata if it matches the current source files, else None (absent, stale, corrupt)."""
    try:
        meta = json.loads(entry.meta.read_text())
    except (OSError, ValueError):
        return None
    valid = isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT and meta.get("fingerprint") == entry.fingerprint
    return meta if valid and entry.tensors.is_file() else None


def load_cached(plugin: DatasetPlugin, root: Path, source: str, force: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """(train, test) from the cache, rebuilt by parsing the original files when absent, stale or corrupt."""
    entry = cache_entry(plugin, root, source)
    meta = None if force else read_cache_meta(entry)
    if meta is not None:
        try:
            tensors = torch.load(entry.tensors, map_location="cpu", weights_only=True)
            train = TensorSplit(tensors["train_x"], tensors["train_y"])
            test = TensorSplit(tensors["test_x"], tensors["test_y"])
            if [len(train), len(test)] == [meta["sizes"]["train"], meta["sizes"]["test"]]:
                return train, test
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError, zipfile.BadZipFile):
            pass
        print(f"dynbench: cache {entry.tensors} is corrupt; rebuilding it from the original files", file=sys.stderr)
    train, test = plugin.load(root, "train"), plugin.load(root, "test")
    save_cache(entry, train, test, source)
    return train, test


def save_cache(entry: CacheEntry, train: TensorSplit, test: TensorSplit, source: str) -> None:
    """Write tensors, then metadata, each atomically; a cache that cannot be written is only a warning."""
    try:
        entry.tensors.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"train_x": train.x.contiguous(), "train_y": train.y.contiguous(),
                   "test_x": test.x.contiguous(), "test_y": test.y.contiguous()}
        _atomic_write(entry.tensors, lambda f: torch.save(tensors, f))
        meta = {"format": CACHE_FORMAT, "fingerprint": entry.fingerprint, "source": source,
                "sizes": {"train": len(train), "test": len(test)},
                "shapes": {"x": list(train.x.shape[1:]), "y": list(train.y.shape[1:])}, "dtype": str(train.x.dtype),
                "bytes": entry.tensors.stat().st_size}
        _atomic_write(entry.meta, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError as exc:
        print(f"dynbench: could not write the cache {entry.tensors} ({exc}); set ${CACHE_ENV} to a writable folder",
              file=sys.stderr)


def _atomic_write(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            write(f)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---- `dynbench data list | prepare | download` ----

@dataclass
class DatasetStatus:
    """What `dynbench data list` shows for one dataset. Sizes are before the validation carve (None: unknown
    until the cache is built)."""

    name: str
    available: bool
    detail: str  # the source used, or what to do
    sizes: dict[str, int] | None
    cache: str  # "cached at <path>", "not built", "stale or corrupt", "not cached (bundled)"


def dataset_status(plugin: DatasetPlugin, root: Path) -> DatasetStatus:
    """Availability, source, sizes (from the cache or, for uncached bundled data, by loading) and cache state."""
    availability = plugin.availability(root)
    if not availability.ok:
        return DatasetStatus(plugin.name, False, availability.detail, None, "-")
    if not plugin.cache:
        sizes = {"train": len(plugin.load(root, "train")), "test": len(plugin.load(root, "test"))}
        return DatasetStatus(plugin.name, True, availability.detail, sizes, "not cached (bundled)")
    try:  # say only what was checked: the files' checksums, now
        checked = plugin.check_files(root)
    except DynBenchError as exc:
        return DatasetStatus(plugin.name, False, f"{availability.detail}, but {exc}", None, "-")
    detail = f"{availability.detail} ({checked})" if checked else availability.detail
    entry = cache_entry(plugin, root, availability.detail)
    meta = read_cache_meta(entry)
    if meta is not None:
        if not tensors_file_is_sound(entry.tensors, meta):
            return DatasetStatus(plugin.name, True, detail, None, f"corrupt ({entry.tensors}), rebuilt on next use")
        return DatasetStatus(plugin.name, True, detail, meta["sizes"], f"cached at {entry.tensors}")
    state = "stale, rebuilt on next use" if entry.meta.exists() else "not built"
    return DatasetStatus(plugin.name, True, detail, None, state)


def tensors_file_is_sound(path: Path, meta: dict) -> bool:
    """Whether a cache's tensor file is a torch zip archive of the size written (cheap: no tensor is read;
    loading it is still `weights_only`, so a bad file can only fail, never run code)."""
    try:
        if "bytes" in meta and path.stat().st_size != meta["bytes"]:
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def describe_sizes(sizes: dict[str, int] | None, val_fraction: float) -> str:
    """'60,000 train (54,000 + 6,000 val) / 10,000 test' from the sizes before the validation carve."""
    if sizes is None:
        return "sizes unknown until `dynbench data prepare`"
    n_val = round(val_fraction * sizes["train"])
    return f"{sizes['train']:,} train ({sizes['train'] - n_val:,} + {n_val:,} val) / {sizes['test']:,} test"


def prepare(plugin: DatasetPlugin, root: Path, force: bool = False) -> DatasetStatus:
    """Parse the original files and write the cache now (`force` rebuilds a valid one)."""
    availability = plugin.availability(root)
    if not availability.ok:
        raise DynBenchError(f"dataset '{plugin.name}' is unavailable under {root}: {availability.detail}")
    if plugin.cache:
        load_cached(plugin, root, availability.detail, force=force)
    return dataset_status(plugin, root)


def download(plugin: DatasetPlugin, root: Path) -> DatasetStatus:
    """Fetch the official files into `root` (where the dataset allows it), then build the cache."""
    root.mkdir(parents=True, exist_ok=True)
    if not is_writable(root):
        raise DynBenchError(f"data root {root} is read-only: point --data-root or ${DATA_ROOT_ENV} at a writable folder")
    plugin.download(root)
    return prepare(plugin, root)


class BatchPipeline:
    """Turns a batch of stored tensors into model inputs on the device: uint8 images are cropped and flipped
    (training only, on the whole batch, before conversion so the copies stay uint8), then scaled to [0, 1]
    and normalised with the dataset's mean/std; targets become int64. Segmentation masks get the same crop
    and flip as their images."""

    def __init__(self, plugin: DatasetPlugin, device: torch.device) -> None:
        self.plugin = plugin
        self.device = device
        self.is_image = plugin.modality == "image"
        self.is_segmentation = plugin.task == "segmentation"
        if self.is_image:
            self.mean = torch.tensor(plugin.mean, device=device).view(1, -1, 1, 1)
            self.std = torch.tensor(plugin.std, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, train: bool = False) -> torch.Tensor:
        """Model inputs only (classification); use `batch` when targets must follow the augmentation."""
        x = x.to(self.device, non_blocking=True)
        if not self.is_image:
            return x
        if train:
            x = augment_images(x, self.plugin.crop_padding, self.plugin.horizontal_flip, generator)
        return self._normalise(x)

    def batch(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
              train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, int64 targets) on the device, with joint augmentation of images and masks."""
        y = y.to(self.device, non_blocking=True)
        if not (self.is_segmentation and self.is_image and train):
            return self(x, generator, train), y.long()
        x, y = augment_pairs(x.to(self.device, non_blocking=True), y, self.plugin.crop_padding,
                             self.plugin.horizontal_flip, generator)
        return self._normalise(x), y.long()

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255) - self.mean).div_(self.std)


def augment_images(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, one draw per sample, on the whole batch."""
    return augment_pairs(x, None, padding, flip, generator)[0]


def augment_pairs(x: torch.Tensor, masks: torch.Tensor | None, padding: int, flip: bool,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`augment_images` on images [N,C,H,W] and the same crop and flip on masks [N,H,W] (padding 255 = ignore)."""
    n = x.shape[0]
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        x = _shifted_crop(x, dy, dx, padding, 0)
        if masks is not None:
            masks = _shifted_crop(masks.unsqueeze(1), dy, dx, padding, 255).squeeze(1)
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(flipped.view(n, 1, 1, 1), x.flip(3), x)
        if masks is not None:
            masks = torch.where(flipped.view(n, 1, 1), masks.flip(2), masks)
    return x, masks


def _shifted_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: int, fill: int) -> torch.Tensor:
    """Pad by `padding` with `fill`, then take the H x W window at offset (dy, dx) of each sample (gathers)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, value=fill)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    x = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return x.gather(3, cols)


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
