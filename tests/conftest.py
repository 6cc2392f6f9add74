"""Shared fixtures: isolated results folders, a clean environment, and running the CLI in a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` in a fresh process, importing `bench` from `cwd`."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DYNBENCH_PLUGIN_PATH",)}
    full_env["PYTHONPATH"] = str(cwd)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
