"""Suites: TOML files listing datasets x methods (with presets) x seeds for one profile.

Runs whose record exists (and is not stale) are skipped, so an interrupted suite resumes where it
stopped; runs execute in worker processes when `jobs` > 1. Suite file format:

    profile = "quick"                 # smoke | quick | standard | paper
    seeds = [0, 1, 2]
    datasets = "available"            # or a list of names; "available" = every dataset whose files are present
    methods = ["dense", "skipnet:*"]  # name (default preset), name:preset, name:* (every preset), or "all"

    [executor]                        # optional: where the runs execute (see bench/executors.py)
    name = "submitit"
    partition = "gpu"
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import DynBenchError, registry
from bench.executors import check_table
from bench.profiles import PROFILES
from bench.records import RunSpec
from bench.train import make_spec, run

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = {"profile": str, "seeds": list, "datasets": (list, str), "methods": (list, str)}
OPTIONAL_KEYS = {"executor"}  # a table of executor options, checked by bench.executors


@dataclass
class Suite:
    name: str
    path: Path
    profile: str
    seeds: list[int]
    datasets: list[str] | str  # names, or "available"
    methods: list[tuple[str, str]]  # (method, preset); preset "*" = every preset
    executor: dict[str, Any] = field(default_factory=dict)  # the file's [executor] options (bench.executors)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def _where(path: Path, text: str, needle: str) -> str:
    """`file:line` of the first line mentioning `needle` (tomllib reports no line for a key)."""
    for number, line in enumerate(text.splitlines(), 1):
        if re.search(rf"(^|[\s\"'\[,]){re.escape(needle)}([\s\"'=:\],]|$)", line):
            return f"{path}:{number}"
    return str(path)


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (`bench/suites/<name>.toml`) or by file path. Every error names the file, the line
    and the key; unknown method, dataset and profile names are caught here, before anything runs."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise DynBenchError(f"no suite '{name_or_path}': expected {path}; suites: {', '.join(suite_names())}")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DynBenchError(f"{path}: {exc}") from None
    for key, kind in SUITE_KEYS.items():
        if key not in data:
            raise DynBenchError(f"{path}: missing key '{key}'")
        if not isinstance(data[key], kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise DynBenchError(f"{_where(path, text, key)}: key '{key}' must be a {names}, not {type(data[key]).__name__}")
    for key in sorted(set(data) - set(SUITE_KEYS) - OPTIONAL_KEYS):
        raise DynBenchError(f"{_where(path, text, key)}: unknown key '{key}'; keys: {', '.join([*SUITE_KEYS, *OPTIONAL_KEYS])}")
    executor = check_table(data.get("executor", {}), _where(path, text, "executor"))
    if data["profile"] not in PROFILES:
        raise DynBenchError(f"{_where(path, text, 'profile')}: key 'profile': unknown profile '{data['profile']}'; "
                            f"profiles: {', '.join(PROFILES)}")
    if not all(isinstance(seed, int) for seed in data["seeds"]):
        raise DynBenchError(f"{_where(path, text, 'seeds')}: key 'seeds' must list integers")
    datasets = _check_names(path, text, "datasets", data["datasets"], special="available")
    methods = []
    for entry in _check_names(path, text, "methods", data["methods"], special="all", allow_preset=True):
        name, _, preset = entry.partition(":")
        preset = preset or "default"
        cls = registry.get_method(name)
        if preset != "*" and preset not in cls.presets:
            raise DynBenchError(f"{_where(path, text, entry)}: key 'methods': method '{name}' has no preset '{preset}'; "
                                f"presets: {', '.join(cls.presets)}")
        methods.append((name, preset))
    return Suite(path.stem, path, data["profile"], data["seeds"], datasets, methods, executor)


def _check_names(path: Path, text: str, key: str, value: list | str, special: str,
                 allow_preset: bool = False) -> list[str] | str:
    kind = key[:-1]
    if isinstance(value, str):
        if value != special and not (allow_preset and value == f"{special}:*"):
            raise DynBenchError(f"{_where(path, text, key)}: key '{key}' must be a list of names or \"{special}\"")
        if key == "methods":  # "all" -> every registered method, default preset ("all:*": every preset)
            preset = ":*" if value.endswith(":*") else ""
            return [f"{name}{preset}" for name in registry.available("methods")]
        return value
    for entry in value:
        name = entry.split(":", 1)[0] if isinstance(entry, str) else entry
        if not isinstance(name, str):
            raise DynBenchError(f"{_where(path, text, key)}: key '{key}' must list names (strings), found {entry!r}")
        try:
            registry.get(key, name)
        except DynBenchError as exc:
            raise DynBenchError(f"{_where(path, text, name)}: key '{key}': {exc}") from None
    return list(value)


def plan(suite: Suite, data_root: Path) -> tuple[list[RunSpec], dict[str, str]]:
    """Every run of the suite in a stable order (dataset, method, preset, seed), and the datasets
    skipped because their files are absent, with the reason."""
    names = list(registry.available("datasets")) if suite.datasets == "available" else suite.datasets
    datasets, skipped = [], {}
    for name in names:
        availability = registry.get_dataset(name)().availability(data_root)
        if availability.ok:
            datasets.append(name)
        else:
            skipped[name] = availability.detail
    specs = []
    for dataset in datasets:
        for method, preset in suite.methods:
            presets = list(registry.get_method(method).presets) if preset == "*" else [preset]
            specs += [make_spec(method, dataset, profile=suite.profile, seed=seed, preset=p)
                      for p in presets for seed in suite.seeds]
    return specs, skipped


def _run_in_worker(spec: RunSpec, data_root: Path, results_dir: Path, device: str | None) -> tuple[str, float, bool]:
    """One run in a worker process: returns (outcome line, seconds, reused). Errors come back as text."""
    started = time.perf_counter()
    try:
        record, reused = run(spec, data_root, results_dir, device=device, progress=False)
    except DynBenchError as exc:
        return f"FAILED: {exc}", time.perf_counter() - started, False
    if reused:
        return f"kept (record {spec.hash})", 0.0, True
    metric = record.metrics["test"]
    score = " ".join(f"{k} {v:.4f}" for k, v in metric.items() if k != "loss")
    return f"test {score}, saving {100 * record.metrics['mac_saving']:.1f} %", time.perf_counter() - started, False


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_suite(suite: Suite, data_root: Path, results_dir: Path, device: str | None = None, jobs: int = 1) -> int:
    """Run every missing run of `suite`; returns the number of failed runs. Prints one progress line per
    run (done/total, the run, its outcome, ETA). A failing run is reported and the suite goes on."""
    specs, skipped = plan(suite, data_root)
    for name, reason in skipped.items():
        print(f"skipped dataset {name}: {reason}", file=sys.stderr)
    print(f"suite {suite.name}: {len(specs)} runs ({suite.profile} profile), {jobs} worker(s)", file=sys.stderr)
    failures, done, trained_seconds, trained = 0, 0, 0.0, 0

    def report(spec: RunSpec, outcome: tuple[str, float, bool]) -> None:
        nonlocal failures, done, trained_seconds, trained
        line, seconds, reused = outcome
        done += 1
        failures += line.startswith("FAILED")
        if not reused:
            trained, trained_seconds = trained + 1, trained_seconds + seconds
        eta = trained_seconds / max(trained, 1) * (len(specs) - done) / jobs
        print(f"[{done}/{len(specs)}] {spec.label}: {line}" + (f" in {seconds:.1f}s, ETA {eta:.0f}s" if not reused else ""),
              file=sys.stderr)

    if jobs <= 1:
        for spec in specs:
            report(spec, _run_in_worker(spec, data_root, results_dir, device))
        return failures
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(threads,)) as pool:
        futures = {pool.submit(_run_in_worker, spec, data_root, results_dir, device): spec for spec in specs}
        try:
            for future in concurrent.futures.as_completed(futures):
                report(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures
