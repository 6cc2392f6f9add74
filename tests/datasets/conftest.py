"""Fixtures of the dataset tests: an isolated tensor cache per test, plugins by name, the real data root."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from bench import registry
from bench.data.dataset import DatasetPlugin


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its tensor caches into a fresh folder, never into ~/.cache or a data root."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DYNBENCH_CACHE", str(folder))
    return folder


@pytest.fixture
def make_plugin() -> Callable[..., DatasetPlugin]:
    """A registered dataset plugin by name; test files are not the official ones, so checksums are off by default."""
    def make(name: str, verify_checksums: bool = False, **options: Any) -> DatasetPlugin:
        return registry.get_dataset(name)(verify_checksums=verify_checksums, **options)
    return make


@pytest.fixture
def real_root() -> Path:
    """The real dataset mirror named by $DYNBENCH_DATA; the test is skipped without it."""
    value = os.environ.get("DYNBENCH_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("set $DYNBENCH_DATA to the dataset mirror to run real-data tests")
    return Path(value)
