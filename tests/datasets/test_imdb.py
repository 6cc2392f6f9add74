"""IMDB plugin on an aclImdb folder written in the original layout."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.data import load_splits
from tests.fixtures.dataset_files import write_aclimdb


def test_token_ids_padding_and_labels(tmp_path, make_plugin):
    write_aclimdb(tmp_path / "aclImdb")
    plugin = make_plugin("imdb", max_length=12)
    train, test = plugin.load(tmp_path, "train"), plugin.load(tmp_path, "test")
    assert train.x.shape == (6, 12) and train.x.dtype == torch.int64
    assert train.y.tolist() == [0, 0, 0, 1, 1, 1] and test.y.tolist() == [0, 0, 1, 1]
    lengths = (train.x != 0).sum(1)
    assert lengths.tolist() == [5, 6, 3, 8, 6, 3]  # words and "!" count; other punctuation and <br /> do not
    for row, length in zip(train.x, lengths):  # padding only at the end
        assert (row[:length] > 0).all() and (row[length:] == 0).all()


def test_vocabulary_comes_from_train_only(tmp_path, make_plugin):
    write_aclimdb(tmp_path / "aclImdb")
    plugin = make_plugin("imdb")
    vocabulary = plugin.vocabulary(tmp_path / "aclImdb" / "train")
    assert vocabulary["great"] == 2  # the most frequent train token gets the first id after pad and unknown
    assert "zebra" not in vocabulary and "unlabelled" not in vocabulary  # test-only word, unsup review
    test = plugin.load(tmp_path, "test")
    lengths = (test.x != 0).sum(1)
    assert (test.x[torch.arange(4), lengths - 1] == 1).all()  # every test review ends in the unknown "zebra"


def test_vocab_size_caps_ids_and_truncation(tmp_path, make_plugin):
    write_aclimdb(tmp_path / "aclImdb")
    plugin = make_plugin("imdb", vocab_size=5, max_length=3)
    split = plugin.load(tmp_path, "train")
    assert split.x.shape == (6, 3) and split.x.max() < 5
    assert plugin.cache_tag() == "imdb-v1-vocab_size5-max_length3"


def test_split_sizes_and_metadata(tmp_path, make_plugin):
    write_aclimdb(tmp_path / "imdb-sample" / "aclImdb")
    plugin = make_plugin("imdb")
    splits = load_splits(plugin, tmp_path)
    assert splits.sizes() == {"train": 5, "val": 1, "test": 4}
    assert (plugin.modality, plugin.backbone, plugin.backbone_options) == ("text", "textcnn", {"vocab_size": 20000})


def test_missing_label_folder_is_named(tmp_path, make_plugin):
    write_aclimdb(tmp_path / "aclImdb")
    for path in (tmp_path / "aclImdb" / "test" / "neg").iterdir():
        path.unlink()
    (tmp_path / "aclImdb" / "test" / "neg").rmdir()
    plugin = make_plugin("imdb")
    assert str(tmp_path / "aclImdb" / "test" / "neg") in plugin.availability(tmp_path).detail
    with pytest.raises(DynBenchError, match="test/neg"):
        plugin.load(tmp_path, "test")
