"""Where a suite's runs execute: here (`local`, the worker pool of `bench.suite`) or on a cluster through
submitit (`submitit`: SLURM, or submitit's local executor for laptops and tests).

With `submitit`, every pending run of the suite is one job of a job array. The job calls `bench.train.run`,
which keeps a resumable state after every epoch; the job is `Checkpointable`, so when SLURM preempts it or
its time limit comes (SLURM sends USR2 first), submitit requeues it and the run continues from its last
epoch. Jobs write their records and models atomically under the shared results folder, one file per spec
hash, so jobs never clash. Logs: `<results>/slurm/<job id>/`; the array's jobs: `<results>/slurm/jobs.json`.

Options (command line `--partition` ... or an `[executor]` table in the suite file; the command line wins):

    [executor]
    name = "submitit"          # local (default) | submitit
    cluster = "slurm"          # slurm | local | debug; default: what submitit detects (slurm where sbatch exists)
    partition = "gpu"          # SLURM partition
    gpus_per_run = 1
    cpus_per_run = 8           # also the run's torch threads
    mem_gb = 32
    time_min = 240             # per job; a longer run is requeued and resumes
    array_parallelism = 32     # jobs of the array running at once
"""
from __future__ import annotations

import difflib
import json
import os
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import DynBenchError, registry
from bench.checkpoints import read_checkpoint, resume_path
from bench.records import RunSpec, code_hash, load_record, record_path

try:  # the job class must exist at import time to be unpickled by the job; submitit itself is optional
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:
    _Checkpointable = object

EXECUTORS = ("local", "submitit")
CLUSTERS = ("slurm", "local", "debug")
JOBS_FILE = "jobs.json"
SLURM_DIR = "slurm"


@dataclass
class ExecutorOptions:
    """How a suite's runs are executed (see the module docstring)."""

    name: str = "local"
    cluster: str | None = None
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    mem_gb: float | None = None
    time_min: int = 240
    array_parallelism: int = 32

    def validate(self) -> "ExecutorOptions":
        if self.name not in EXECUTORS:
            raise DynBenchError(f"unknown executor '{self.name}': choose {' or '.join(EXECUTORS)}")
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise DynBenchError(f"unknown cluster '{self.cluster}': choose {', '.join(CLUSTERS)} (or leave it out: auto)")
        for name in ("cpus_per_run", "time_min", "array_parallelism"):
            if getattr(self, name) < 1:
                raise DynBenchError(f"executor option {name} must be >= 1, not {getattr(self, name)}")
        if self.gpus_per_run < 0 or (self.mem_gb is not None and self.mem_gb <= 0):
            raise DynBenchError(f"executor options gpus_per_run >= 0 and mem_gb > 0, not {self.gpus_per_run}, {self.mem_gb}")
        return self


OPTION_TYPES: dict[str, tuple[type, ...]] = {"name": (str,), "cluster": (str,), "partition": (str,), "gpus_per_run": (int,),
                                             "cpus_per_run": (int,), "mem_gb": (int, float), "time_min": (int,),
                                             "array_parallelism": (int,)}


def check_table(table: Any, where: str) -> dict[str, Any]:
    """The `[executor]` table of a suite file, keys normalised (dashes -> underscores) and typed; unknown
    keys and wrong types raise `DynBenchError` naming `where` (file:line)."""
    if not isinstance(table, dict):
        raise DynBenchError(f"{where}: 'executor' must be a table ([executor] with keys {', '.join(OPTION_TYPES)})")
    values = {}
    for raw, value in table.items():
        key = raw.replace("-", "_")
        if key not in OPTION_TYPES:
            guesses = difflib.get_close_matches(key, list(OPTION_TYPES), n=1)
            hint = f" (did you mean '{guesses[0]}'?)" if guesses else ""
            raise DynBenchError(f"{where}: [executor] has no key '{raw}'{hint}; keys: {', '.join(OPTION_TYPES)}")
        if not isinstance(value, OPTION_TYPES[key]) or isinstance(value, bool):
            names = " or ".join({"str": "a string", "int": "an int", "float": "a float"}[t.__name__] for t in OPTION_TYPES[key])
            raise DynBenchError(f"{where}: [executor] key '{raw}' must be {names}, not {type(value).__name__}")
        values[key] = value
    try:
        ExecutorOptions(**values).validate()
    except DynBenchError as exc:
        raise DynBenchError(f"{where}: [executor]: {exc}") from None
    return values


def resolve_options(from_file: dict[str, Any], from_command_line: dict[str, Any]) -> ExecutorOptions:
    """The suite file's `[executor]` values overridden by the command line's (None = not given)."""
    given = {k: v for k, v in from_command_line.items() if v is not None}
    return ExecutorOptions(**{**from_file, **given}).validate()


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise DynBenchError("--executor submitit needs the submitit package: pip install 'dynbench[cluster]' "
                            "(or pip install submitit), or run without --executor for local workers") from None
    return submitit


class SuiteJob(_Checkpointable):
    """One run of a suite as a submitit job. Preempted or timed out, it is requeued (`checkpoint`) and the
    run resumes from its per-epoch checkpoint; the job's result is its outcome line."""

    def __init__(self, data_root: Path, results_dir: Path, device: str | None, threads: int) -> None:
        self.data_root, self.results_dir, self.device, self.threads = data_root, results_dir, device, threads

    def __call__(self, spec: dict[str, Any]) -> str:
        from bench.train import run

        torch.set_num_threads(self.threads)
        run_spec = RunSpec(**spec)
        record, reused = run(run_spec, self.data_root, self.results_dir, device=self.device, progress=False)
        if reused:
            return f"kept (record {run_spec.hash})"
        score = " ".join(f"{k} {v:.4f}" for k, v in record.metrics["test"].items() if k != "loss")
        return f"test {score}, saving {100 * record.metrics['mac_saving']:.1f} %"

    def checkpoint(self, spec: dict[str, Any]) -> Any:
        """Requeue the same call: the run's state is already on disk (saved after every epoch)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec)


def record_is_fresh(spec: RunSpec, results_dir: Path) -> bool:
    """A record of `spec` made by the current code exists (the suite would reuse it)."""
    path = record_path(results_dir, spec)
    if not path.exists():
        return False
    try:
        return load_record(path).code_hash == _current_code(spec)
    except DynBenchError:
        return False


def _current_code(spec: RunSpec) -> str:
    from bench.train import plugin_file

    return code_hash(plugin_file(registry.get_method(spec.method)), plugin_file(registry.get_dataset(spec.dataset)))


def make_executor(options: ExecutorOptions, results_dir: Path, job_name: str):
    """A submitit executor with `options`: logs and job files in `<results>/slurm/<job id>/`."""
    submitit = require_submitit()
    folder = Path(results_dir).resolve() / SLURM_DIR / "%j"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    except (ValueError, RuntimeError) as exc:
        raise DynBenchError(f"submitit cannot use cluster '{options.cluster or 'auto'}': {exc}") from None
    parameters: dict[str, Any] = {"name": job_name, "timeout_min": options.time_min, "cpus_per_task": options.cpus_per_run,
                                  "gpus_per_node": options.gpus_per_run, "slurm_array_parallelism": options.array_parallelism}
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    if options.partition is not None:
        parameters["slurm_partition"] = options.partition
    executor.update_parameters(**parameters)
    return executor


def submit_suite(suite: Any, data_root: Path, results_dir: Path, options: ExecutorOptions, device: str | None = None,
                 wait: bool = True) -> int:
    """Submit every pending run of `suite` as one job array; wait for the jobs (printing one line per
    finished run) unless `wait` is False. Returns the number of failed runs."""
    from bench.suite import plan

    require_submitit()  # before planning: a missing package is the first thing to say
    specs, skipped = plan(suite, data_root)
    for name, reason in skipped.items():
        print(f"skipped dataset {name}: {reason}", file=sys.stderr)
    pending = [spec for spec in specs if not record_is_fresh(spec, results_dir)]
    print(f"suite {suite.name}: {len(specs)} runs ({suite.profile} profile), {len(specs) - len(pending)} recorded, "
          f"{len(pending)} to submit", file=sys.stderr)
    if not pending:
        return 0
    executor = make_executor(options, results_dir, f"dynbench-{suite.name}")
    if not wait and executor.cluster != "slurm":  # local-executor jobs are child processes: they end with this command
        raise DynBenchError(f"--no-wait needs a SLURM cluster; jobs of cluster '{executor.cluster}' run as processes of "
                            "this command: leave out --no-wait")
    job = SuiteJob(Path(data_root).resolve(), Path(results_dir).resolve(), device, options.cpus_per_run)
    try:
        jobs = executor.map_array(job, [spec.to_dict() for spec in pending])
    except Exception as exc:  # sbatch refused the array (unknown partition, limits): its message says why
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise DynBenchError(f"submitting the job array failed: {message[:300]}; check --partition (`sinfo -s` lists "
                            "partitions), --time-min, --mem-gb and --gpus-per-run") from None
    register_jobs(results_dir, suite.name, executor.cluster, pending, jobs)
    first = jobs[0].job_id.split("_")[0]
    print(f"submitted {len(jobs)} runs as job array {first} ({executor.cluster}); logs in "
          f"{Path(results_dir) / SLURM_DIR}/<job id>/; `dynbench suite {suite.name} --status` shows them", file=sys.stderr)
    if not wait:
        return 0
    return wait_for(jobs, {j.job_id: s for j, s in zip(jobs, pending)}, suite.name)


def wait_for(jobs: list, specs: dict[str, RunSpec], suite_name: str) -> int:
    """Print one line per job as it finishes; returns the number of failed jobs."""
    from submitit.helpers import as_completed

    failures, done, started = 0, 0, time.perf_counter()
    try:
        for job in as_completed(jobs, poll_frequency=2):
            done += 1
            try:
                line = job.result()
            except Exception as exc:  # the job's traceback is in its log; show its last line
                failures += 1
                last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                line = f"FAILED: {last} (log: {job.paths.stderr})"
            print(f"[{done}/{len(jobs)}] {specs[job.job_id].label}: {line} (job {job.job_id}, "
                  f"{time.perf_counter() - started:.0f}s)", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"dynbench: stopped waiting; cluster jobs keep running (local-executor jobs stop with this process): "
              f"`dynbench suite {suite_name} --status` shows them", file=sys.stderr)
        raise
    return failures


def register_jobs(results_dir: Path, suite_name: str, cluster: str, specs: list[RunSpec], jobs: list) -> None:
    """Add the submitted jobs to `<results>/slurm/jobs.json` (spec hash -> job), written atomically."""
    path = Path(results_dir) / SLURM_DIR / JOBS_FILE
    known = read_jobs(results_dir)
    submitted = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for spec, job in zip(specs, jobs):
        known[spec.hash] = {"job_id": job.job_id, "cluster": cluster, "suite": suite_name, "label": spec.label,
                            "folder": str(job.paths.folder), "submitted": submitted}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jobs.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(known, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_jobs(results_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(results_dir) / SLURM_DIR / JOBS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise DynBenchError(f"corrupt job list {path}: delete it (records are unaffected)") from None


@dataclass
class RunStatus:
    spec: RunSpec
    state: str  # done | stale | queued | running | requeued | failed | interrupted | not started | submitted
    detail: str = ""


def suite_status(suite: Any, data_root: Path, results_dir: Path) -> list[RunStatus]:
    """The state of every run of `suite`: from its record, its resume file and its submitted job (the
    job's result file; SLURM's state through `sacct` where the job ran on SLURM)."""
    from bench.suite import plan

    specs, _ = plan(suite, data_root)
    jobs = read_jobs(results_dir)
    return [_status(spec, results_dir, jobs.get(spec.hash)) for spec in specs]


def _status(spec: RunSpec, results_dir: Path, job: dict[str, Any] | None) -> RunStatus:
    if record_path(results_dir, spec).exists():
        if record_is_fresh(spec, results_dir):
            return RunStatus(spec, "done")
        return RunStatus(spec, "stale", "record from other code (or unreadable): submit again to redo it")
    progress = ""
    resume = resume_path(results_dir, spec.hash)
    if resume.exists():
        try:
            progress = f"epoch {read_checkpoint(resume)['epoch']}/{spec.epochs} checkpointed"
        except (ValueError, KeyError):
            progress = "unreadable resume file"
    if job is None:
        return RunStatus(spec, "interrupted" if progress else "not started", progress)
    where = f"job {job['job_id']}" + (f", {progress}" if progress else "")
    result = Path(job["folder"]) / f"{job['job_id']}_0_result.pkl"
    if result.exists():
        try:
            outcome, value = pickle.loads(result.read_bytes())
        except Exception:  # a result file being written, or from another submitit version
            outcome, value = "unknown", ""
        if outcome == "error":
            last = (str(value).strip().splitlines() or [""])[-1]
            return RunStatus(spec, "failed", f"{where}: {last}; log {Path(job['folder']) / (job['job_id'] + '_0_log.err')}")
    state = _cluster_state(job)
    return RunStatus(spec, state, where)


def _cluster_state(job: dict[str, Any]) -> str:
    """queued / running / requeued / failed / submitted, from SLURM (sacct) or the local controller's process."""
    if job["cluster"] == "local":
        controller = int(job["job_id"])
        try:
            os.kill(controller, 0)
        except ProcessLookupError:
            return "failed"  # the controller is gone and left no result: the job died
        except PermissionError:
            pass
        return "running"
    if job["cluster"] != "slurm":
        return "submitted"
    try:
        import submitit

        state = submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"]).state
    except Exception:  # sacct missing or not answering: say what is known
        return "submitted"
    return {"PENDING": "queued", "RUNNING": "running", "REQUEUED": "requeued", "COMPLETED": "running",
            "FAILED": "failed", "TIMEOUT": "failed", "CANCELLED": "failed", "OUT_OF_MEMORY": "failed",
            "NODE_FAIL": "failed", "PREEMPTED": "requeued"}.get(state.split()[0] if state else "", state.lower() or "submitted")


def format_status(statuses: list[RunStatus], suite_name: str) -> str:
    """One line per run that is not done, then the counts."""
    lines = [f"suite {suite_name}: {len(statuses)} runs"]
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
        if status.state != "done":
            lines.append(f"  {status.state:<12} {status.spec.label}" + (f" ({status.detail})" if status.detail else ""))
    lines.append("  " + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())))
    return "\n".join(lines)


def options_from_args(args: Any) -> dict[str, Any]:
    """The executor options given on the command line (None where not given)."""
    return {f.name: getattr(args, "executor" if f.name == "name" else f.name, None) for f in fields(ExecutorOptions)}

