"""Data-pipeline benchmarks (`pytest -m perf --benchmark-enable tests/benchmarks`):

- one training epoch over the CIFAR-10 sample: cached uint8 tensors + batched crop/flip/normalise versus a
  torchvision DataLoader over the PNG tree with per-sample transforms (target: >= 3x faster);
- loading a cache of 50,000 32x32 colour images (target: < 1 s).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench import registry
from bench.data import BatchPipeline, cache_entry, iterate_batches, load_cached, save_cache
from bench.data.dataset import Availability, DatasetPlugin, TensorSplit

BATCH_SIZE = 128
SPEEDUP_TARGET = 3.0
CACHE_LOAD_TARGET_S = 1.0
N_CACHED = 50_000


def timed(timings: list[float], function, *args):
    """Run `function(*args)` and append its wall time: medians do not depend on --benchmark-disable."""
    started = time.perf_counter()
    result = function(*args)
    timings.append(time.perf_counter() - started)
    return result


@pytest.fixture
def cifar_sample(tmp_path, monkeypatch) -> tuple[DatasetPlugin, Path]:
    root = Path(os.environ.get("DYNBENCH_DATA", "")) if os.environ.get("DYNBENCH_DATA") else None
    plugin = registry.get_dataset("cifar10")()
    if root is None or not plugin.availability(root).ok or plugin.tree(root) is None:
        pytest.skip("needs the CIFAR-10 PNG sample under $DYNBENCH_DATA")
    monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "cache"))
    return plugin, root


def tensor_epoch(plugin: DatasetPlugin, root: Path, device: torch.device) -> int:
    """Load the cached tensors, then one shuffled, augmented, normalised pass over train."""
    train, _ = load_cached(plugin, root, plugin.availability(root).detail)
    pipeline = BatchPipeline(plugin, device)
    generator = torch.Generator().manual_seed(0)
    seen = 0
    for x, y in iterate_batches(train, BATCH_SIZE, shuffle=True, generator=generator):
        inputs, targets = pipeline.batch(x, y, generator, train=True)
        seen += len(targets)
    return seen


def dataloader_epoch(plugin: DatasetPlugin, root: Path) -> int:
    """The usual torchvision pipeline: decode each PNG and transform it one sample at a time."""
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(plugin.mean, plugin.std)])
    folder = datasets.ImageFolder(str(plugin.tree(root) / "train"), transform=transform)
    seen = 0
    for x, y in DataLoader(folder, batch_size=BATCH_SIZE, shuffle=True, num_workers=0):
        seen += len(y)
    return seen


@pytest.mark.perf
def test_tensor_pipeline_is_faster_than_a_per_sample_dataloader(benchmark, cifar_sample):
    plugin, root = cifar_sample
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tensor_epoch(plugin, root, device)  # builds the cache (a one-off, like `dynbench data prepare`)
    started = time.perf_counter()
    n_baseline = dataloader_epoch(plugin, root)
    baseline_s = time.perf_counter() - started
    timings: list[float] = []
    n_ours = benchmark.pedantic(timed, args=(timings, tensor_epoch, plugin, root, device), rounds=3, iterations=1)
    ours_s = statistics.median(timings)
    ratio = baseline_s / ours_s
    benchmark.extra_info.update(dataloader_epoch_s=baseline_s, tensor_epoch_s=ours_s, speedup=ratio, images=n_ours)
    print(f"\none epoch over {n_ours} images: DataLoader {baseline_s:.2f}s, cached tensors {ours_s:.3f}s ({ratio:.1f}x)")
    assert n_ours == n_baseline
    assert ratio >= SPEEDUP_TARGET


class Synthetic(DatasetPlugin):
    name = "synthetic50k"
    num_classes = 10


@pytest.mark.perf
def test_cache_of_50000_images_loads_under_a_second(benchmark, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "cache"))
    plugin, source = Synthetic(), "synthetic"
    generator = torch.Generator().manual_seed(0)
    train = TensorSplit(torch.randint(0, 256, (N_CACHED, 3, 32, 32), dtype=torch.uint8, generator=generator),
                        torch.randint(0, 10, (N_CACHED,), generator=generator))
    test = TensorSplit(train.x[:10_000].clone(), train.y[:10_000].clone())
    save_cache(cache_entry(plugin, tmp_path, source), train, test, source)
    plugin.load = None  # a cache miss would call load(): it must not happen
    timings: list[float] = []
    loaded, _ = benchmark.pedantic(timed, args=(timings, load_cached, plugin, tmp_path, source), rounds=5, iterations=1)
    median_s = statistics.median(timings)
    benchmark.extra_info.update(cache_load_median_s=median_s)
    print(f"\ncache load of {N_CACHED} + 10000 images: median {median_s:.3f}s")
    assert torch.equal(loaded.x, train.x) and median_s < CACHE_LOAD_TARGET_S
