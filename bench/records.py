"""Run specs and run records: plain dataclasses serialised to JSON, written atomically."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import bench
from bench import DynBenchError

RECORD_FORMAT = 1


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run. Its hash names the record `results/runs/<hash>.json`."""

    method: str
    dataset: str
    backbone: str
    seed: int = 0
    preset: str = "default"
    method_options: dict[str, Any] = field(default_factory=dict)
    backbone_options: dict[str, Any] = field(default_factory=dict)
    profile: str = "quick"
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    max_train_examples: int | None = None
    max_val_examples: int | None = None
    max_test_examples: int | None = None
    val_every: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        preset = "" if self.preset == "default" else f":{self.preset}"
        return f"{self.method}{preset} on {self.dataset} ({self.backbone}, {self.profile}, seed {self.seed})"


@dataclass
class RunRecord:
    """The outcome of one completed run, with what is needed to trust and reproduce it."""

    spec: dict[str, Any]
    spec_hash: str
    code_hash: str
    seeds: dict[str, int]
    data: dict[str, Any]  # source and split sizes
    metrics: dict[str, Any]
    curve: list[dict[str, float]]
    train_seconds: float
    wall_seconds: float
    versions: dict[str, str]
    hardware: dict[str, Any]
    created: str
    format: int = RECORD_FORMAT

    @property
    def run_spec(self) -> RunSpec:
        return RunSpec(**self.spec)


REPORTING_MODULES = ("tables.py", "plots.py", "report.py", "boards.py", "board_display.py", "stats.py", "eval_latency.py",
                     "noise.py")  # read records, never produce them


def code_hash(*plugin_files: str | os.PathLike) -> str:
    """Hash of the code a run executed — the plugin files and the `bench` package but its reporting
    modules — so that any change (a fixed MAC count, a new loss) makes old records stale instead of
    keeping their numbers, while a change to how tables look does not."""
    digest = hashlib.sha256(_framework_hash().encode())
    for path in plugin_files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _framework_hash(package: Path = Path(bench.__file__).parent) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if path.parent == package and path.name in REPORTING_MODULES:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def record_path(results_dir: Path, spec: RunSpec) -> Path:
    return results_dir / "runs" / f"{spec.hash}.json"


def save_record(path: Path, record: RunRecord) -> None:
    """Write atomically: a run interrupted while saving never leaves a partial record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; records are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_record(path: Path) -> RunRecord:
    """Read one record; a corrupt or foreign file raises `DynBenchError` naming it."""
    try:
        data = json.loads(path.read_text())
        return RunRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise DynBenchError(f"corrupt run record {path}: {exc}; delete it to rerun that run") from None


def software_versions() -> dict[str, str]:
    import fvcore  # noqa: F401 - version lookup only
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "dynbench": bench.__version__}
    for package in ("torch", "torchvision", "timm", "fvcore", "numpy", "pandas", "scikit-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    return versions


def hardware_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(), "system": platform.system(), "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
        "python_executable": sys.executable,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
