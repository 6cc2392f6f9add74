"""CIFAR-10/100 plugins on official-format pickle batches and on image-folder trees."""
from __future__ import annotations

import pickle

import pytest
import torch

from bench import DynBenchError, registry
from bench.data import load_splits
from tests.fixtures.dataset_files import write_cifar_batches, write_image_tree


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_official_pickle_batches(name, folder, tmp_path, make_plugin):
    classes = registry.get_dataset(name).classes
    train_labels, test_labels = write_cifar_batches(tmp_path, classes, per_batch=12)
    plugin = make_plugin(name)
    assert "official python batches" in plugin.availability(tmp_path).detail
    splits = load_splits(plugin, tmp_path)
    n_train = len(train_labels)  # 60 for CIFAR-10 (5 batches), 12 for CIFAR-100 (one train file)
    n_val = round(0.1 * n_train)
    assert splits.sizes() == {"train": n_train - n_val, "val": n_val, "test": 12}
    assert splits.test.x.shape == (12, 3, 32, 32) and splits.test.x.dtype == torch.uint8
    assert splits.test.y.tolist() == test_labels.tolist() and splits.test.y.dtype == torch.int64
    raw = pickle.loads((tmp_path / folder / ("test_batch" if name == "cifar10" else "test")).read_bytes())
    assert torch.equal(splits.test.x[0].flatten(), torch.from_numpy(raw[b"data"][0]))  # CHW order kept


def test_cifar100_has_the_100_official_classes_in_label_order():
    classes = registry.get_dataset("cifar100").classes
    assert len(classes) == 100 and list(classes) == sorted(classes) and classes[:2] == ("apple", "aquarium_fish")


def test_image_folder_tree_in_official_class_order(tmp_path, make_plugin):
    classes = registry.get_dataset("cifar10").classes
    write_image_tree(tmp_path / "cifar10", classes, {"train": 2, "test": 1})
    plugin = make_plugin("cifar10")
    assert "image-folder tree" in plugin.availability(tmp_path).detail
    splits = load_splits(plugin, tmp_path)
    assert splits.sizes() == {"train": 18, "val": 2, "test": 10}
    assert splits.test.y.tolist() == list(range(10)) and splits.test.x.shape == (10, 3, 32, 32)


def test_missing_class_folder_is_named(tmp_path, make_plugin):
    classes = registry.get_dataset("cifar10").classes
    write_image_tree(tmp_path / "cifar10", classes, {"train": 1, "test": 1})
    (tmp_path / "cifar10" / "test" / "truck" / "00000.png").unlink()
    (tmp_path / "cifar10" / "test" / "truck").rmdir()
    availability = make_plugin("cifar10").availability(tmp_path)
    assert not availability.ok and str(tmp_path / "cifar10" / "test" / "truck") in availability.detail
    with pytest.raises(DynBenchError, match="missing class folder .*truck"):
        make_plugin("cifar10").load(tmp_path, "test")


def test_truncated_batch_names_the_file(tmp_path, make_plugin):
    write_cifar_batches(tmp_path, registry.get_dataset("cifar10").classes)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DynBenchError, match="data_batch_3 is truncated or not a CIFAR batch"):
        make_plugin("cifar10").load(tmp_path, "train")


def test_official_checksums_reject_other_files(tmp_path, make_plugin):
    write_cifar_batches(tmp_path, registry.get_dataset("cifar10").classes)
    with pytest.raises(DynBenchError, match="data_batch_1 is corrupt or not the official file"):
        make_plugin("cifar10", verify_checksums=True).load(tmp_path, "train")


def test_nothing_there_says_both_layouts(tmp_path, make_plugin):
    detail = make_plugin("cifar100").availability(tmp_path).detail
    assert "cifar-100-python" in detail and "download cifar100" in detail and "<class>/*.png" in detail
