"""The quiet timing pass: realized latency of the kept models of a results folder, measured after training.

Training records hold no latency. A run timed while other runs trained beside it would carry their load
in its figure; here every model is timed alone, one after another, once training has finished (`dynbench
suite` runs this pass at its end; `dynbench time` runs it on demand, e.g. on another machine). Each timing
is a latency record `<results>/latency/<spec hash>.<machine key>.json`:

    {"kind": "latency", "training_spec_hash", "training_code_hash", "timing_code_hash", "device", "hardware",
     "versions", "load_before", "load_after", "latency": {...} (`bench.measure.latency.time_model`), "created",
     "format": 1}

`load_*` is the machine's 1-minute load average around the timing: a figure measured under load says so.
A record whose run was retrained (other training code) or whose timing code changed is stale: boards
leave it out and this pass redoes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import bench
from bench import DynBenchError
from bench.evaluate import rebuild, save_json
from bench.gating.wrappers import gated_units
from bench.measure.latency import LATENCY_SAMPLES, time_model, timing_hardware
from bench.records import CorruptRecord, executable_source, load_record, software_versions
from bench.reporting.boards import is_stale

LATENCY_DIR = "latency"
# timing options by the run's profile: the smoke check and the quick board (timed inside `make bench`) get
# short timings and wide CIs; the boards that are results get the full protocol (`time_model`'s defaults)
TIMING_BY_PROFILE = {"smoke": {"budget_s": 0.5, "min_rounds": 6}, "quick": {"budget_s": 0.5, "min_rounds": 8}}
LATENCY_FORMAT = 1
TIMING_MODULES = ("timing.py", "measure/latency.py", "measure/execution.py")


def timing_code_hash(package: Path = Path(bench.__file__).parent) -> str:
    """Hash of the code that produces a latency figure (protocol and execution paths)."""
    digest = hashlib.sha256()
    for name in TIMING_MODULES:
        digest.update(name.encode() + b"\0" + executable_source(package / name).encode())
    return digest.hexdigest()[:16]


def machine_key(device: torch.device, threads: int) -> str:
    hardware = timing_hardware(device)
    key = {k: hardware.get(k) for k in ("machine", "system", "processor", "cpu_model", "cpu_count", "gpu")}
    return hashlib.sha256(json.dumps({**key, "device": device.type, "threads": threads}, sort_keys=True).encode()).hexdigest()[:8]


def latency_path(results_dir: Path, spec_hash: str, device: torch.device, threads: int) -> Path:
    return results_dir / LATENCY_DIR / f"{spec_hash}.{machine_key(device, threads)}.json"


def is_current(path: Path, training_code_hash: str) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (data.get("format") == LATENCY_FORMAT and data.get("training_code_hash") == training_code_hash
            and data.get("timing_code_hash") == timing_code_hash())


def time_runs(results_dir: Path, data_root: Path, records: list[str] | None = None, device: str | None = None,
              threads: int = 1, force: bool = False, all_seeds: bool = False, **timing: Any) -> int:
    """Time the gated runs of `results_dir` (or the `records` named: paths or spec hashes) whose latency
    record for this machine is missing or stale: the lowest seed of each configuration, or every seed
    (`all_seeds`, and always for named records). Returns the number of runs that could not be timed.
    Ungated runs (dense, static_small) have no latency of their own: their model is a dense network.
    `timing`: options of `time_model` (e.g. budget_s) overriding the profile's."""
    from bench.evaluate import find_record

    if threads < 1:
        raise DynBenchError(f"--threads must be >= 1, not {threads}")
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if run_device.type == "cuda" and not torch.cuda.is_available():
        raise DynBenchError(f"--device {device}: this machine has no CUDA device (torch.cuda.is_available() is "
                            "False); time on the CPU with --device cpu, or run `dynbench time` on a GPU machine")
    if run_device.type not in ("cpu", "cuda"):
        raise DynBenchError(f"--device {device}: latency is timed on cpu or cuda")
    paths = [find_record(r, results_dir)[0] for r in records] if records else sorted((results_dir / "runs").glob("*.json"))
    gated, stale = [], 0
    for path in paths:
        try:
            run_record = load_record(path)
        except CorruptRecord as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        if not records and is_stale(run_record):  # retrained when its suite runs again; timed then
            stale += 1
            continue
        if "input_dependence" in run_record.metrics:  # ungated runs have no record of gate decisions
            target = latency_path(results_dir, run_record.spec_hash, run_device, threads)
            gated.append((run_record, target, not force and is_current(target, run_record.code_hash)))
    if records or all_seeds:
        todo = [(run_record, target) for run_record, target, current in gated if not current]
    else:  # the lowest seed of each configuration that has no current timing yet
        by_config: dict[str, list] = {}
        for item in sorted(gated, key=lambda item: item[0].run_spec.seed):
            by_config.setdefault(_config_key(item[0]), []).append(item)
        todo = [items[0][:2] for items in by_config.values() if not any(current for _, _, current in items)]
    if stale:
        print(f"{stale} stale record(s) not timed (their code changed: rerun them, then time them)", file=sys.stderr)
    failures = 0
    for i, (run_record, target) in enumerate(todo, 1):
        try:
            options = {**TIMING_BY_PROFILE.get(run_record.run_spec.profile, {}), **timing}
            data = time_run(run_record, results_dir, data_root, run_device, threads, **options)
        except DynBenchError as exc:
            failures += 1
            print(f"[time {i}/{len(todo)}] {run_record.run_spec.label}: not timed: {exc}", file=sys.stderr)
            continue
        save_json(target, data)
        batches = data["latency"]["batches"]
        summary = ", ".join(f"batch {b}: {100 * r['saving']:.1f} % [{100 * r['saving_ci'][0]:.1f}, "
                            f"{100 * r['saving_ci'][1]:.1f}] (MACs {100 * r['mac_saving']:.1f} %)" for b, r in batches.items())
        print(f"[time {i}/{len(todo)}] {run_record.run_spec.label}: latency saving {summary}", flush=True)
        if not any(r["skips_for_real"] for r in batches.values()):
            print(f"  masked execution: {run_record.run_spec.method} computes what its gates switch off (faithful "
                  "CosineGate reads the branch it gates) or saves no MACs with every gate off: its latency saving is not "
                  "a speed figure; the boards say so", flush=True)
        elif not any(r["time_falls"] for r in batches.values()):
            print("  skipping is real, but with every gate off time does not fall: overhead-bound on this machine",
                  flush=True)
    return failures


def _config_key(run_record: Any) -> str:
    return json.dumps({k: v for k, v in run_record.spec.items() if k != "seed"}, sort_keys=True, default=str)


def time_run(run_record: Any, results_dir: Path, data_root: Path, run_device: torch.device, threads: int,
             **timing: Any) -> dict[str, Any]:
    rebuilt = rebuild(run_record, results_dir, data_root, run_device)
    if not gated_units(rebuilt.model):
        raise DynBenchError("the model has no gates: its latency is the dense model's")
    inputs = rebuilt.pipeline(rebuilt.test.x[:LATENCY_SAMPLES]).to(run_device)
    load_before = os.getloadavg()[0]
    latency = time_model(rebuilt.model, inputs, threads=threads, **timing)
    return {
        "kind": "latency", "training_spec_hash": run_record.spec_hash, "training_code_hash": run_record.code_hash,
        "timing_code_hash": timing_code_hash(), "device": str(run_device), "hardware": timing_hardware(run_device),
        "versions": software_versions(), "load_before": load_before, "load_after": os.getloadavg()[0],
        "latency": latency, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "format": LATENCY_FORMAT,
    }

