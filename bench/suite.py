"""Suites: TOML files listing datasets x methods (with presets) x seeds for one profile.

Runs whose record exists (and is not stale) are skipped, so an interrupted suite resumes where it
stopped; runs execute in worker processes when `jobs` > 1. Each run is isolated: an exception or a dead
worker fails that run alone (traceback in `<results>/logs/`), workers exit with the suite, and a run is
claimed while it trains so that two suites on one results folder share the work. Suite file format:

    profile = "quick"                 # smoke | quick | standard | paper
    seeds = [0, 1, 2]
    datasets = "available"            # or a list of names; "available" = every dataset whose files are present
    methods = ["dense", "skipnet:*"]  # name (default preset), name:preset, name:* (every preset), or "all"

    [executor]                        # optional: where the runs execute (see bench/executors.py)
    name = "submitit"
    partition = "gpu"
"""
from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import contextlib
import fcntl
import json
import multiprocessing
import os
import re
import socket
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import DynBenchError, registry
from bench.executors import check_table
from bench.profiles import PROFILES
from bench.records import RunSpec, check_results_writable
from bench.train import make_spec, resolve_device, run

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
    for key in ("seeds", "datasets", "methods"):
        if data[key] == []:
            raise DynBenchError(f"{_where(path, text, key)}: key '{key}' is an empty list: name at least one, "
                                f"or the suite runs nothing")
    if not all(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in data["seeds"]):
        raise DynBenchError(f"{_where(path, text, 'seeds')}: key 'seeds' must list integers of at least 0 "
                            f"(not true/false), found {data['seeds']!r}")
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


@dataclass(frozen=True)
class Outcome:
    """What became of one run of a suite (it crosses the worker-process boundary, so plain values only)."""

    line: str  # the progress line's text after the run's label
    seconds: float
    trained: bool  # False: kept from an earlier record, failed, or left to another suite process
    failed: bool = False


def _run_in_worker(spec: RunSpec, data_root: Path, results_dir: Path, device: str | None) -> Outcome:
    """One run, isolated: any exception (not only `DynBenchError`) becomes a failed `Outcome` with its
    traceback in `<results>/logs/<hash>.log`, so one broken run never stops the suite."""
    started = time.perf_counter()
    try:
        with claim_run(results_dir, spec) as holder:
            if holder is not None:
                return Outcome(f"left to {holder}, which is training it", 0.0, False)
            record, reused = run(spec, data_root, results_dir, device=device, progress=False)
    except Exception as exc:  # KeyboardInterrupt still stops the suite
        return _failed(spec, results_dir, exc, time.perf_counter() - started)
    if reused:
        return Outcome(f"kept (record {spec.hash})", 0.0, False)
    metric = record.metrics["test"]
    score = " ".join(f"{k} {v:.4f}" for k, v in metric.items() if k != "loss")
    seconds = time.perf_counter() - started
    return Outcome(f"test {score}, saving {100 * record.metrics['mac_saving']:.1f} %", seconds, True)


def _failed(spec: RunSpec, results_dir: Path, exc: BaseException | str, seconds: float) -> Outcome:
    """A failed run's outcome line, and its log (the traceback) under `<results>/logs/`."""
    if isinstance(exc, BaseException):
        summary = str(exc) if isinstance(exc, DynBenchError) else f"{type(exc).__name__}: {exc}"
        details = "".join(traceback.format_exception(exc))
    else:
        summary = details = exc
    log = results_dir / "logs" / f"{spec.hash}.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{spec.label}\nspec {json.dumps(spec.to_dict(), sort_keys=True)}\n\n{details}\n")
        where = f" ({'traceback' if isinstance(exc, BaseException) else 'log'} in {log})"
    except OSError as write_error:  # the results folder itself may be what failed
        print(details, file=sys.stderr)
        where = f" (no log: {write_error.strerror or write_error}; traceback above)"
    return Outcome(f"FAILED: {summary.splitlines()[0] if summary else type(exc).__name__}{where}", seconds, False, True)


# ---- claims: two suites on one results folder share the runs instead of training each twice ----

@contextlib.contextmanager
def claim_run(results_dir: Path, spec: RunSpec) -> Iterator[str | None]:
    """Hold `runs/.<hash>.claim` (an exclusive `flock`) while the run trains; yields None when this
    process holds it, else who does ("host pid N"). The kernel drops the lock when its holder dies
    (even by SIGKILL), so a claim is never stale; the file is removed on release."""
    path = results_dir / "runs" / f".{spec.hash}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            yield holder
            return
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0)
        yield None
    finally:
        path.unlink(missing_ok=True)  # before unlocking, so a waiting claimant re-checks the record
        os.close(fd)


# ---- worker processes: isolated crashes, and no worker outliving its suite ----

def _init_worker(threads: int, suite_pid: int, plugin_path: str) -> None:
    torch.set_num_threads(threads)
    if os.environ.get(registry.PLUGIN_PATH_ENV, "") != plugin_path:  # the fork server may predate the suite's
        os.environ[registry.PLUGIN_PATH_ENV] = plugin_path
        registry.rediscover()
    threading.Thread(target=_exit_with_suite, args=(suite_pid, os.getppid()), daemon=True, name="watchdog").start()


def _exit_with_suite(suite_pid: int, parent_pid: int, interval: float = 0.5) -> None:
    """Watchdog of a worker: once the suite process is gone (killed, even by SIGKILL), the worker's parent
    (the fork server, which exits with the suite) is gone too and the worker is re-parented; it then exits
    at once instead of finishing queued runs and blocking on a dead pipe."""
    while os.getppid() == parent_pid and _alive(suite_pid):
        time.sleep(interval)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported the training code once: a fresh pool (after a
    crash) then starts in milliseconds, not the seconds a spawned interpreter needs to import torch."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bench._forkserver"])
    return context


def run_suite(suite: Suite, data_root: Path, results_dir: Path, device: str | None = None, jobs: int = 1) -> int:
    """Run every missing run of `suite`; returns the number of failed runs. Prints one progress line per
    run (done/total, the run, its outcome, ETA). A failing run is reported and the suite goes on."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise DynBenchError(f"--jobs must be a whole number of at least 1, not {jobs!r}")
    if device is not None:
        resolve_device(device)
    check_results_writable(results_dir)
    specs, skipped = plan(suite, data_root)
    for name, reason in skipped.items():
        print(f"skipped dataset {name}: {reason}", file=sys.stderr)
    if not specs:
        raise DynBenchError(f"suite {suite.name}: no runs to do, since no dataset of the suite has its files "
                            f"(see above); `dynbench data list` says what is missing")
    print(f"suite {suite.name}: {len(specs)} runs ({suite.profile} profile), {jobs} worker(s)", file=sys.stderr)
    failures, done, trained_seconds, trained, elsewhere = 0, 0, 0.0, 0, 0

    def report(spec: RunSpec, outcome: Outcome) -> None:
        nonlocal failures, done, trained_seconds, trained, elsewhere
        done += 1
        failures += outcome.failed
        elsewhere += outcome.line.startswith("left to")
        if outcome.trained:
            trained, trained_seconds = trained + 1, trained_seconds + outcome.seconds
        eta = trained_seconds / max(trained, 1) * (len(specs) - done) / jobs
        timing = f" in {outcome.seconds:.1f}s, ETA {eta:.0f}s" if outcome.trained or outcome.failed else ""
        print(f"[{done}/{len(specs)}] {spec.label}: {outcome.line}{timing}", file=sys.stderr)

    if jobs <= 1:
        for spec in specs:
            report(spec, _run_in_worker(spec, data_root, results_dir, device))
    else:
        _run_pooled(specs, jobs, report, data_root, results_dir, device)
    if elsewhere:
        print(f"{elsewhere} run(s) were being trained by another process; run the suite again once it ends to "
              "collect them", file=sys.stderr)
    return failures


def _run_pooled(specs: list[RunSpec], jobs: int, report: Callable[[RunSpec, Outcome], None], data_root: Path,
                results_dir: Path, device: str | None) -> None:
    """Runs in `jobs` worker processes, at most `jobs` in flight, so that a worker that dies (a crash,
    `os._exit`, the OOM killer) breaks the pool with a known set of suspects. A lone suspect is the culprit
    and fails; several are retried one at a time in a fresh pool, where a crash names its run."""
    queue, isolated = collections.deque(specs), collections.deque()
    while queue or isolated:
        source, width = (queue, jobs) if queue else (isolated, 1)
        suspects = _drain(source, width, report, data_root, results_dir, device)
        if len(suspects) == 1:
            spec = suspects[0]
            report(spec, _failed(spec, results_dir, "the worker process running it died (crash, os._exit or killed); "
                                 "nothing was recorded", 0.0))
        else:
            isolated.extend(suspects)


def _drain(source: collections.deque, width: int, report: Callable[[RunSpec, Outcome], None], data_root: Path,
           results_dir: Path, device: str | None) -> list[RunSpec]:
    """Feed runs from `source` to a pool of `width` workers until it is empty (returns []) or the pool breaks
    (returns the runs that were in flight)."""
    threads = max(1, torch.get_num_threads() // width)
    plugin_path = os.environ.get(registry.PLUGIN_PATH_ENV, "")
    pool = concurrent.futures.ProcessPoolExecutor(width, mp_context=_worker_context(), initializer=_init_worker,
                                                  initargs=(threads, os.getpid(), plugin_path))
    in_flight: dict[concurrent.futures.Future, RunSpec] = {}
    try:
        while source or in_flight:
            while source and len(in_flight) < width:
                spec = source.popleft()
                in_flight[pool.submit(_run_in_worker, spec, data_root, results_dir, device)] = spec
            finished, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                try:
                    outcome = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    pool.shutdown(wait=True)  # its workers are gone; waiting releases its queues cleanly
                    return list(in_flight.values())
                except Exception as exc:  # e.g. an outcome that could not come back: that run fails, not the suite
                    outcome = _failed(in_flight[future], results_dir, exc, 0.0)
                report(in_flight.pop(future), outcome)
    except BaseException:  # Ctrl-C: do not wait for the runs in flight
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return []
