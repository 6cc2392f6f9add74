"""bench.data: the tensor cache (location, reuse, staleness, corruption), batched augmentation, targets."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from bench import DynBenchError
from bench.data import (BatchPipeline, augment_images, augment_pairs, cache_dir, cache_entry, dataset_status,
                        download, fixed_subset, load_splits, prepare)
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit


class Counting(DatasetPlugin):
    """A plugin whose source is one file; it counts how often the original files are parsed."""

    name = "counting"
    num_classes = 2
    mean, std = (0.5,), (0.5,)

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.parsed = 0

    def source_paths(self, root: Path) -> list[Path]:
        return [root / "source.txt"]

    def availability(self, root: Path) -> Availability:
        return Availability((root / "source.txt").is_file(), f"source.txt in {root}")

    def load(self, root: Path, split: str) -> TensorSplit:
        self.parsed += 1
        n = int((root / "source.txt").read_text()) if split == "train" else 4
        return TensorSplit(torch.arange(n * 4, dtype=torch.uint8).view(n, 1, 2, 2), torch.arange(n) % 2)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "source.txt").write_text("20")
    return folder


def test_fixed_subset_is_the_same_random_draw_every_time():
    # sorted by class, as image-folder test trees are: a prefix would hold one class only
    split = TensorSplit(torch.arange(1000).unsqueeze(1), torch.arange(1000) // 100)
    first, again = fixed_subset(split, 300), fixed_subset(split, 300)
    assert len(first) == 300 and torch.equal(first.x, again.x)
    assert torch.equal(first.x.flatten(), first.x.flatten().unique())  # distinct, in file order
    assert set(first.y.tolist()) == set(range(10)) and first.y.bincount().min() > 10
    assert fixed_subset(split, None) is split and fixed_subset(split, 5000) is split


def test_cache_is_built_once_then_loaded(root):
    plugin = Counting()
    first = load_splits(plugin, root)
    assert plugin.parsed == 2 and cache_entry(plugin, root, "x").tensors.parent.is_dir()
    second = load_splits(plugin, root)
    assert plugin.parsed == 2  # the second load came from the cache
    assert torch.equal(first.train.x, second.train.x) and first.sizes() == second.sizes() == {"train": 18, "val": 2, "test": 4}


def test_changed_source_makes_the_cache_stale(root):
    plugin = Counting()
    load_splits(plugin, root)
    (root / "source.txt").write_text("30")
    assert "stale" in dataset_status(plugin, root).cache
    assert len(load_splits(plugin, root).train) == 27 and plugin.parsed == 4


def test_corrupt_cache_is_rebuilt(root, capsys):
    plugin = Counting()
    status = prepare(plugin, root)
    assert status.sizes == {"train": 20, "test": 4} and status.cache.startswith("cached at")
    entry = cache_entry(plugin, root, status.detail)
    entry.tensors.write_bytes(entry.tensors.read_bytes()[:100])
    assert len(load_splits(plugin, root).test) == 4 and plugin.parsed == 4
    assert "is corrupt; rebuilding" in capsys.readouterr().err


def test_version_and_options_key_the_cache_file():
    class Versioned(Counting):
        version = 3
        options = ("size",)
        size = (8, 16)
    assert Versioned().cache_tag() == "counting-v3-size8x16"
    assert Versioned(size=(4, 4)).cache_tag() == "counting-v3-size4x4"
    with pytest.raises(DynBenchError, match="no option"):
        Versioned(colour=1)


def test_cache_location_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("DYNBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    writable = tmp_path / "writable"
    writable.mkdir()
    assert cache_dir(writable) == writable / ".cache"
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR)  # like the shared mirror: even root must not write there
    try:
        assert cache_dir(read_only).parent == tmp_path / "xdg" / "dynbench"
        monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "explicit"))
        assert cache_dir(read_only).parent == tmp_path / "explicit"
        with pytest.raises(DynBenchError, match="read-only"):
            download(Counting(), read_only)
    finally:
        read_only.chmod(stat.S_IRWXU)


def test_augment_pairs_moves_masks_with_images():
    x = torch.arange(2 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4).repeat(1, 3, 1, 1)
    masks = x[:, 0].clone()
    generator = torch.Generator().manual_seed(1)
    images, moved = augment_pairs(x, masks, padding=1, flip=True, generator=generator)
    padded = moved == 255
    assert torch.equal(torch.where(padded, 0, moved), images[:, 0])  # same crop and flip; padding 255 vs 0
    assert images.dtype == torch.uint8
    assert torch.equal(augment_images(x, 1, True, torch.Generator().manual_seed(1)), images)


def test_augment_images_draws_crops_per_sample():
    x = torch.ones(64, 1, 4, 4, dtype=torch.uint8)
    out = augment_images(x, padding=2, flip=False, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.unique().numel() > 3  # different offsets per sample, not one for the batch


def test_batch_pipeline_normalises_and_returns_int64_targets(root):
    pipeline = BatchPipeline(Counting(), torch.device("cpu"))
    x = torch.full((3, 1, 2, 2), 255, dtype=torch.uint8)
    inputs, targets = pipeline.batch(x, torch.tensor([0, 1, 1], dtype=torch.uint8), train=True)
    assert inputs.dtype == torch.float32 and torch.allclose(inputs, torch.ones_like(inputs))  # (1 - 0.5) / 0.5
    assert targets.dtype == torch.int64


def test_unavailable_dataset_raises_with_its_detail(tmp_path):
    with pytest.raises(DynBenchError, match="unavailable.*source.txt"):
        load_splits(Counting(), tmp_path)
