"""Run specs and run records: plain dataclasses serialised to JSON, written atomically."""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import bench
from bench import DynBenchError

RECORD_FORMAT = 1
PRECISIONS = ("fp32", "bf16")  # of the training forward pass (`bench.train.forward_precision`)


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
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if values["precision"] == "fp32":  # fields added later leave the default out: older specs keep their hash
            del values["precision"]
        return values

    def check(self) -> None:
        """A one-line `DynBenchError` for a value no run can use (zero epochs, a negative batch size, a
        non-finite learning rate, a seed that is a bool): caught before anything trains."""
        whole_numbers = {"epochs": 1, "batch_size": 1, "val_every": 1, "seed": 0}
        for key, minimum in whole_numbers.items():
            _require(key, getattr(self, key), int, minimum)
        for key in ("max_train_examples", "max_val_examples", "max_test_examples"):
            if getattr(self, key) is not None:
                _require(key, getattr(self, key), int, 1)
        _require("lr", self.lr, float, 0.0, exclusive=True)
        _require("weight_decay", self.weight_decay, float, 0.0)
        if self.optimizer not in ("sgd", "adamw"):
            raise DynBenchError(f"optimizer must be sgd or adamw, not {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise DynBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        preset = "" if self.preset == "default" else f":{self.preset}"
        return f"{self.method}{preset} on {self.dataset} ({self.backbone}, {self.profile}, seed {self.seed})"


def _require(key: str, value: Any, kind: type, minimum: float, exclusive: bool = False) -> None:
    flag = "--" + key.replace("_", "-")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and not (numeric and isinstance(value, int)):
        raise DynBenchError(f"{key} ({flag}) must be a whole number, not {value!r}")
    if kind is float and not (numeric and math.isfinite(value)):
        raise DynBenchError(f"{key} ({flag}) must be a finite number, not {value!r}")
    if value < minimum or (exclusive and value == minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        raise DynBenchError(f"{key} ({flag}) must be {bound}, not {value!r}")


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


# read records or measure apart from runs, never producing a run record (paths inside the `bench` package):
# boards, machine throughput, and the timing pass with its execution paths (records hold no latency)
NOT_RUN_CODE = ("profiles.py", "reporting/", "measure/throughput.py", "measure/latency.py", "measure/execution.py", "timing.py",
                "evaluate.py")


def code_hash(*plugin_files: str | os.PathLike) -> str:
    """Hash of the code a run executed — the plugin files and the `bench` package but its reporting
    modules — so that any change (a fixed MAC count, a new loss) makes old records stale instead of
    keeping their numbers, while a change to how tables look, a comment or a docstring does not."""
    digest = hashlib.sha256(_framework_hash().encode())
    for path in plugin_files:
        digest.update(executable_source(Path(path)).encode())
    return digest.hexdigest()[:16]


def executable_source(path: Path) -> str:
    """What of a Python file can change a run of a given spec: its syntax tree without docstrings
    (comments, blank lines and formatting never reach the tree) and without a dataset's
    `profile_overrides` (profiles only resolve names into a spec, and the spec holds every value they
    set; `profiles.py` is left out for the same reason). A file that does not parse counts byte for byte."""
    source = path.read_bytes()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source.decode(errors="replace")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = [statement for statement in node.body if not _profile_overrides(statement)]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        node.body = body or [ast.Pass()]
    return ast.dump(tree)


def _profile_overrides(statement: ast.stmt) -> bool:
    targets = statement.targets if isinstance(statement, ast.Assign) else \
        [statement.target] if isinstance(statement, ast.AnnAssign) else []
    return any(isinstance(target, ast.Name) and target.id == "profile_overrides" for target in targets)


@functools.lru_cache(maxsize=4)
def _framework_hash(package: Path = Path(bench.__file__).parent) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(NOT_RUN_CODE):
            continue
        digest.update(relative.encode() + b"\0" + executable_source(path).encode())
    return digest.hexdigest()


def record_path(results_dir: Path, spec: RunSpec) -> Path:
    return results_dir / "runs" / f"{spec.hash}.json"


def save_record(path: Path, record: RunRecord) -> None:
    """Write atomically: a run interrupted while saving never leaves a partial record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle, indent=1, sort_keys=True, allow_nan=False)  # strict JSON: no NaN
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; records are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CorruptRecord(DynBenchError):
    """A record file that cannot be read back as a record (truncated, not JSON, other fields)."""


def load_record(path: Path) -> RunRecord:
    """Read one record; a corrupt or foreign file raises `CorruptRecord` (a `DynBenchError`) naming it."""
    try:
        data = json.loads(path.read_text(), parse_constant=_reject_constant)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        return RunRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise CorruptRecord(f"corrupt run record {path}: {exc}; `dynbench run` or `suite` redoes that run") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (a metric that was not finite)")


def nonfinite_metrics(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every NaN or infinite number in a (nested) metrics dict, e.g. ['test.loss']."""
    found = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found += nonfinite_metrics(value, f"{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(name)
    return found


MIN_FREE_BYTES = 1 << 20  # a record is tens of kB; below a MiB a run would be lost at save time


def check_results_writable(results_dir: Path) -> None:
    """Fail now, before hours of training, if records cannot be saved under `results_dir/runs`: a file in
    the way, a folder marked read-only (even for root, who could write anyway), or a full disk."""
    runs = results_dir / "runs"
    todo = "choose another --results folder or fix this one"
    for folder in (results_dir, runs):
        if folder.exists() and not folder.is_dir():
            raise DynBenchError(f"results folder {folder} is a file, not a folder: {todo}")
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DynBenchError(f"cannot create the results folder {runs} ({exc.strerror or exc}): {todo}") from None
    for folder in (results_dir, runs):
        if not os.stat(folder).st_mode & 0o222:
            raise DynBenchError(f"results folder {folder} is read-only: {todo}")
    try:
        fd, probe = tempfile.mkstemp(dir=runs, prefix=".write-check.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"\0" * 4096)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            os.unlink(probe)
        free = shutil.disk_usage(runs).free
    except OSError as exc:
        raise DynBenchError(f"cannot write to the results folder {runs} ({exc.strerror or exc}): {todo}") from None
    if free < MIN_FREE_BYTES:
        raise DynBenchError(f"the disk of the results folder {runs} is full ({free} bytes free): {todo}")


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
