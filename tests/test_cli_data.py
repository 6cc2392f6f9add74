"""`dynbench data list | prepare | download`, run in-process."""
from __future__ import annotations

import pytest

from bench.cli import main
from tests.fixtures.dataset_files import write_mnist_family


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    write_mnist_family(root / "MNIST" / "raw", gz=False)  # gunzipped copies: no official checksum to fail
    return root


def test_list_prepare_list(data_root, capsys):
    assert main(["data", "list", "--data-root", str(data_root)]) == 0
    listed = capsys.readouterr().out
    assert "mnist          available: original IDX files" in listed and "cache: not built" in listed
    assert "cityscapes     unavailable" in listed and "digits" in listed
    assert main(["data", "prepare", "mnist", "--data-root", str(data_root)]) == 0
    assert "30 train (27 + 3 val) / 20 test; cache: cached at" in capsys.readouterr().out
    main(["data", "list", "--data-root", str(data_root)])
    assert "30 train (27 + 3 val) / 20 test; cache: cached at" in capsys.readouterr().out


def test_errors_are_one_line(data_root, capsys):
    assert main(["data", "download", "cityscapes", "--data-root", str(data_root)]) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err
    assert main(["data", "prepare", "--data-root", str(data_root)]) == 2
    assert "needs a dataset name" in capsys.readouterr().err
    assert main(["data", "prepare", "svhn", "--data-root", str(data_root)]) == 2
    assert "unavailable" in capsys.readouterr().err
