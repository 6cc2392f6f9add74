"""UCI Adult plugin on adult.data / adult.test written in the original format."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from tests.fixtures.dataset_files import write_adult

N_NUMERIC = 6


def test_parses_labels_with_and_without_dot_and_skips_the_comment(tmp_path, make_plugin):
    train_labels, test_labels = write_adult(tmp_path / "adult")
    plugin = make_plugin("adult")
    train, test = plugin.load(tmp_path, "train"), plugin.load(tmp_path, "test")
    assert train.y.tolist() == train_labels and test.y.tolist() == test_labels
    assert train.x.dtype == torch.float32 and train.x.shape[0] == 5 and test.x.shape == (3, train.x.shape[1])


def test_encoding_is_fitted_on_train_only(tmp_path, make_plugin):
    write_adult(tmp_path / "adult")
    plugin = make_plugin("adult")
    train, test = plugin.load(tmp_path, "train"), plugin.load(tmp_path, "test")
    numeric = train.x[:, :N_NUMERIC]
    assert torch.allclose(numeric.mean(0), torch.zeros(N_NUMERIC), atol=1e-5)  # standardised on train
    one_hot = train.x[:, N_NUMERIC:]
    # 8 categorical columns, '?' a category of its own: every train row has exactly 8 ones
    assert torch.equal(one_hot.sum(1), torch.full((5,), 8.0)) and set(one_hot.unique().tolist()) == {0.0, 1.0}
    # test row 3 comes from a country never seen in train: its country block is all zeros (7 ones left)
    assert test.x[:, N_NUMERIC:].sum(1).tolist() == [8.0, 8.0, 7.0]
    assert torch.equal(test.x[0], train.x[0])  # the same record encodes the same way in both splits


def test_wrong_field_count_names_file_and_line(tmp_path, make_plugin):
    write_adult(tmp_path / "adult")
    path = tmp_path / "adult" / "adult.data"
    path.write_text(path.read_text() + "42, Private, oops\n")
    with pytest.raises(DynBenchError, match=r"adult.data, line 7: expected 15 comma-separated fields"):
        make_plugin("adult").load(tmp_path, "train")


def test_metadata_and_missing_files(tmp_path, make_plugin):
    plugin = make_plugin("adult")
    assert (plugin.modality, plugin.backbone, plugin.num_classes) == ("tabular", "resmlp", 2)
    assert not plugin.availability(tmp_path).ok and "adult.data" in plugin.availability(tmp_path).detail
