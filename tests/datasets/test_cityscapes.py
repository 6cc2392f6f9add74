"""Cityscapes plugin on leftImg8bit/gtFine PNG pairs written in the official layout."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.data import load_splits
from tests.fixtures.dataset_files import write_cityscapes


def test_pairs_resize_and_map_label_ids_to_train_ids(tmp_path, make_plugin):
    write_cityscapes(tmp_path / "cityscapes", size=(16, 32), per_split={"train": 3, "val": 2})
    plugin = make_plugin("cityscapes", resolution=(8, 16))
    test = plugin.load(tmp_path, "test")  # the official val split
    assert test.x.shape == (2, 3, 8, 16) and test.x.dtype == torch.uint8
    assert test.y.shape == (2, 8, 16) and test.y.dtype == torch.uint8
    assert set(test.y.unique().tolist()) == {0, 10, 255}  # road, sky, ego vehicle ignored
    assert (test.y[:, 1:, :8] == 0).all() and (test.y[:, 1:, 8:] == 10).all()  # nearest keeps the halves exact
    assert plugin.cache_tag() == "cityscapes-v1-resolution8x16"


def test_split_sizes_and_metadata(tmp_path, make_plugin):
    write_cityscapes(tmp_path / "cityscapes", per_split={"train": 10, "val": 2})
    plugin = make_plugin("cityscapes", resolution=(16, 32))
    splits = load_splits(plugin, tmp_path)
    assert splits.sizes() == {"train": 9, "val": 1, "test": 2}
    assert (plugin.task, plugin.primary_metric, plugin.backbone, plugin.num_classes) == ("segmentation", "miou", "segnet", 19)
    assert make_plugin("cityscapes").resolution == (256, 512)


def test_missing_annotation_is_named(tmp_path, make_plugin):
    write_cityscapes(tmp_path / "cityscapes")
    mask = next((tmp_path / "cityscapes" / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))
    mask.unlink()
    with pytest.raises(DynBenchError, match=f"missing annotation {mask}"):
        make_plugin("cityscapes").load(tmp_path, "train")


def test_never_downloadable_and_says_where_to_put_files(tmp_path, make_plugin):
    plugin = make_plugin("cityscapes")
    availability = plugin.availability(tmp_path)
    assert not availability.ok and str(tmp_path / "cityscapes") in availability.detail
    with pytest.raises(DynBenchError, match="cityscapes-dataset.com"):
        plugin.download(tmp_path)
