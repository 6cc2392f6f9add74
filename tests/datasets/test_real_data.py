"""The plugins on the real dataset mirror ($DYNBENCH_DATA): example counts, and a short dense run each.

Skipped cleanly when $DYNBENCH_DATA is unset or a dataset's files are absent. Counts are of the original
splits, then after the fixed 10 % validation carve from train.
"""
from __future__ import annotations

import pytest
import torch

from bench.data import load_splits
from bench.train import make_spec, run

EXPECTED = {  # dataset: (train, test) as published for these copies (see the mirror's README)
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "adult": (32561, 16281),
    "imdb": (5000, 5000),  # the sample: 2,500 per class and split
    "cifar10": (10000, 10000),  # the PNG sample: 1,000 per class in train, the full test set
    "cifar100": (8000, 2000),  # the PNG sample: 80 train / 20 test per class, all from the official train set
}
SMOKE_EPOCHS = 3  # the smoke profile's 512 examples, a few passes: enough to beat chance, seconds per epoch


def available_plugin(make_plugin, name, root):
    plugin = make_plugin(name, verify_checksums=True)
    availability = plugin.availability(root)
    if not availability.ok:
        pytest.skip(f"{name} not in {root}: {availability.detail}")
    return plugin


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_counts_before_and_after_the_validation_carve(name, real_root, make_plugin):
    plugin = available_plugin(make_plugin, name, real_root)
    splits = load_splits(plugin, real_root)
    n_train, n_test = EXPECTED[name]
    n_val = round(plugin.val_fraction * n_train)
    assert splits.sizes() == {"train": n_train - n_val, "val": n_val, "test": n_test}
    labels = torch.cat([splits.train.y, splits.val.y])
    assert labels.dtype == torch.int64 and set(labels.unique().tolist()) == set(range(plugin.num_classes))
    print(f"{name}: {splits.sizes()} from {splits.source}")


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dense_smoke_run_beats_chance(name, real_root, make_plugin, tmp_path, monkeypatch):
    available_plugin(make_plugin, name, real_root)
    monkeypatch.setenv("DYNBENCH_DATA", str(real_root))
    spec = make_spec("dense", name, profile="smoke", epochs=SMOKE_EPOCHS)
    record, _ = run(spec, real_root, tmp_path / "results", force=True, device="cpu", progress=False)
    test_labels = load_splits(make_plugin(name), real_root).test.y
    majority = test_labels.bincount().max().item() / len(test_labels)  # the best constant guess
    accuracy = record.metrics["test"]["accuracy"]
    print(f"{name}: dense smoke ({SMOKE_EPOCHS} epochs, {record.data['train_used']} examples) test accuracy "
          f"{accuracy:.4f}, majority baseline {majority:.4f}, source {record.data['source']}")
    assert accuracy > majority + 0.05
