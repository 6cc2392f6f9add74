"""Shared fixtures: isolated results folders and a throw-away copy of the code for plugin tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures.cli import REPO


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the suite's code and plugins, for tests that add or break plugin files."""
    copy = tmp_path / "repo"
    for folder in ("bench", "methods", "datasets"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return copy
