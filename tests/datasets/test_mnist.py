"""MNIST and Fashion-MNIST plugins on IDX files written in the original format."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from bench import DynBenchError
from bench.data import load_splits
from tests.fixtures.dataset_files import write_mnist_family

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_parse_into_uint8_images_and_labels(name, tmp_path, make_plugin):
    train_labels, test_labels = write_mnist_family(tmp_path / FOLDERS[name] / "raw", n_train=30, n_test=20)
    plugin = make_plugin(name)
    assert plugin.availability(tmp_path).ok
    splits = load_splits(plugin, tmp_path)
    assert splits.sizes() == {"train": 27, "val": 3, "test": 20}
    assert splits.test.x.shape == (20, 1, 28, 28) and splits.test.x.dtype == torch.uint8
    assert splits.test.y.dtype == torch.int64 and splits.test.y.tolist() == test_labels.tolist()
    assert sorted(torch.cat([splits.train.y, splits.val.y]).tolist()) == sorted(train_labels.tolist())
    assert str(tmp_path) in splits.source


def test_gunzipped_idx_files_are_read_too(tmp_path, make_plugin):
    write_mnist_family(tmp_path / "MNIST" / "raw", gz=False)
    assert make_plugin("mnist").load(tmp_path, "train").x.shape == (30, 1, 28, 28)


def test_files_that_are_not_the_official_ones_fail_the_md5_check(tmp_path, make_plugin):
    write_mnist_family(tmp_path / "MNIST" / "raw")
    with pytest.raises(DynBenchError, match=r"train-images-idx3-ubyte.gz is corrupt or not the official file.*download mnist"):
        make_plugin("mnist", verify_checksums=True).load(tmp_path, "train")


def test_truncated_idx_file_names_the_file(tmp_path, make_plugin):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_family(raw)
    path = raw / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DynBenchError, match="t10k-images-idx3-ubyte.gz is truncated"):
        make_plugin("mnist").load(tmp_path, "test")


def test_missing_files_make_the_dataset_unavailable_with_what_to_do(tmp_path, make_plugin):
    availability = make_plugin("mnist").availability(tmp_path)
    assert not availability.ok
    assert str(tmp_path / "MNIST" / "raw") in availability.detail and "dynbench data download mnist" in availability.detail
    with pytest.raises(DynBenchError, match="unavailable"):
        load_splits(make_plugin("mnist"), tmp_path)


def test_fashion_mnist_falls_back_to_the_system_copy(tmp_path, make_plugin):
    system = tmp_path / "usr-share"
    write_mnist_family(system, n_train=10, n_test=10)
    plugin = make_plugin("fashion_mnist")
    plugin.system_dir = system
    root = tmp_path / "root"
    root.mkdir()
    assert "Debian package" in plugin.availability(root).detail
    assert len(plugin.load(root, "test")) == 10
