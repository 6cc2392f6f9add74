"""Suites: TOML files listing datasets x methods (with presets) x seeds for one profile. Runs whose record
exists are skipped, so an interrupted suite resumes where it stopped."""
from __future__ import annotations

import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench import DynBenchError, registry
from bench.records import RunSpec
from bench.train import make_spec, run

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = {"profile": str, "seeds": list, "datasets": list, "methods": list}


@dataclass
class Suite:
    name: str
    path: Path
    profile: str
    seeds: list[int]
    datasets: list[str]
    methods: list[tuple[str, str]]  # (method, preset)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (`bench/suites/<name>.toml`) or by file path; errors name the file and key."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise DynBenchError(f"no suite '{name_or_path}': expected {path}; suites: {', '.join(suite_names())}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DynBenchError(f"{path}: {exc}") from None
    for key, kind in SUITE_KEYS.items():
        if key not in data:
            raise DynBenchError(f"{path}: missing key '{key}'")
        if not isinstance(data[key], kind):
            raise DynBenchError(f"{path}: key '{key}' must be a {kind.__name__}, not {type(data[key]).__name__}")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise DynBenchError(f"{path}: unknown key(s) {', '.join(unknown)}; keys: {', '.join(SUITE_KEYS)}")
    methods = [tuple(entry.split(":", 1)) if ":" in entry else (entry, "default") for entry in data["methods"]]
    return Suite(path.stem, path, data["profile"], data["seeds"], data["datasets"], methods)


def expand(suite: Suite) -> list[RunSpec]:
    """Every run of the suite, in a stable order (dataset, method, preset, seed)."""
    return [make_spec(method, dataset, profile=suite.profile, seed=seed, preset=preset)
            for dataset in suite.datasets for method, preset in suite.methods for seed in suite.seeds]


def run_suite(suite: Suite, data_root: Path, results_dir: Path, device: str | None = None) -> int:
    """Run every missing run of `suite`; returns the number of failed runs. Unavailable datasets are
    skipped with the reason; a failing run is reported and the suite goes on."""
    available = []
    for name in suite.datasets:
        availability = registry.get_dataset(name)().availability(data_root)
        if availability.ok:
            available.append(name)
        else:
            print(f"skipped dataset {name}: {availability.detail}", file=sys.stderr)
    specs = expand(Suite(suite.name, suite.path, suite.profile, suite.seeds, available, suite.methods))
    failures, started = 0, time.perf_counter()
    for done, spec in enumerate(specs):
        prefix = f"[{done + 1}/{len(specs)}] {spec.label}"
        try:
            run_started = time.perf_counter()
            record, reused = run(spec, data_root, results_dir, device=device, progress=False)
        except DynBenchError as exc:
            failures += 1
            print(f"{prefix}: FAILED: {exc}", file=sys.stderr)
            continue
        if reused:
            print(f"{prefix}: kept (record {spec.hash})", file=sys.stderr)
        else:
            elapsed = time.perf_counter() - started
            eta = elapsed / (done + 1) * (len(specs) - done - 1)
            primary = record.metrics.get("primary_metric", "accuracy")
            print(f"{prefix}: test {primary} {record.metrics['test'][primary]:.4f} in "
                  f"{time.perf_counter() - run_started:.1f}s (suite ETA {eta:.0f}s)", file=sys.stderr)
    return failures
