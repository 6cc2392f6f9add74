"""SVHN plugin on .mat files written with scipy.io.savemat, and on an image-folder tree."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.data import load_splits
from tests.fixtures.dataset_files import write_image_tree, write_svhn_mats


def test_mat_files_label_10_becomes_digit_0(tmp_path, make_plugin):
    train_digits, test_digits = write_svhn_mats(tmp_path / "SVHN", n_train=20, n_test=10)
    splits = load_splits(make_plugin("svhn"), tmp_path)
    assert splits.sizes() == {"train": 18, "val": 2, "test": 10}
    assert splits.test.x.shape == (10, 3, 32, 32) and splits.test.x.dtype == torch.uint8
    assert splits.test.y.tolist() == test_digits.tolist() and 0 in splits.test.y.tolist()
    assert "official .mat" in splits.source


def test_image_folder_tree(tmp_path, make_plugin):
    write_image_tree(tmp_path / "svhn", tuple(str(d) for d in range(10)), {"train": 1, "test": 1})
    split = make_plugin("svhn").load(tmp_path, "test")
    assert split.y.tolist() == list(range(10)) and split.x.shape == (10, 3, 32, 32)


def test_truncated_mat_names_the_file(tmp_path, make_plugin):
    write_svhn_mats(tmp_path / "SVHN")
    path = tmp_path / "SVHN" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DynBenchError, match="test_32x32.mat is truncated or not an SVHN .mat file"):
        make_plugin("svhn").load(tmp_path, "test")


def test_missing_files_say_where(tmp_path, make_plugin):
    detail = make_plugin("svhn").availability(tmp_path).detail
    assert str(tmp_path / "SVHN" / "train_32x32.mat") in detail and "download svhn" in detail
