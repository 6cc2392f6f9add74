"""Suites through submitit: real submissions to submitit's local executor (processes on this machine), a
preempted job requeued and resumed with the identical record, options from the command line and the suite
file, and one-line errors for bad options."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import DynBenchError
from bench.cli import main
from bench.executors import read_jobs
from bench.data import resolve_data_root
from bench.suite import load_suite, plan
from tests.fixtures.cli import REPO
from tests.fixtures.records import comparable

TWO_RUNS = """profile = "quick"
seeds = [0]
datasets = ["digits"]
methods = ["dense", "random_gate"]
"""


def write_suite(folder: Path, text: str, name: str = "tiny") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def start_cli(*args: str, cwd: Path = REPO) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_for(condition, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def preempt(results: Path, spec_hash: str) -> None:
    """Do what SLURM does to a preempted job: send USR2 to the job's process (the task the submitit
    controller started), once its run has a checkpointed epoch."""
    wait_for(lambda: (results / "models" / f"{spec_hash}.resume.pt").exists(), what="the first epoch's checkpoint")
    controller = int(read_jobs(results)[spec_hash]["job_id"])
    (task,) = children(controller)
    os.kill(task, signal.SIGUSR2)


@pytest.mark.slow
def test_a_submitit_suite_writes_every_record_and_a_preempted_job_resumes_identically(tmp_path):
    suite = write_suite(tmp_path, TWO_RUNS)
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    specs, _ = plan(load_suite(str(suite)), resolve_data_root(None))
    spec_hash = next(spec.hash for spec in specs if spec.method == "random_gate")
    args = ["suite", str(suite), "--executor", "submitit", "--cluster", "local", "--cpus-per-run", "1"]
    process = start_cli(*args, "--results", str(interrupted))
    wait_for(lambda: (interrupted / "slurm" / "jobs.json").exists(), what="the submission")
    preempt(interrupted, spec_hash)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    job = read_jobs(interrupted)[spec_hash]
    log = (Path(job["folder"]) / f"{job['job_id']}_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in log and "resuming after epoch" in log
    reference_run = start_cli(*args, "--results", str(reference))
    _, err = reference_run.communicate(timeout=600)
    assert reference_run.returncode == 0, err
    for path in reference.glob("runs/*.json"):
        assert comparable(json.loads((interrupted / "runs" / path.name).read_text())) == comparable(json.loads(path.read_text()))
    assert len(list(interrupted.glob("runs/*.json"))) == 2 and len(list(interrupted.glob("models/*.pt"))) == 2
    assert not list(interrupted.glob("models/*.resume.pt"))


def test_a_submitit_suite_runs_through_the_local_executor(tmp_path, capsys):
    """A real submission (one job of the array per pending run), records written by the jobs; the status
    then says done, and a second submission has nothing to submit."""
    suite = write_suite(tmp_path, TWO_RUNS.replace('"quick"', '"smoke"'))
    results = tmp_path / "results"
    args = ["suite", str(suite), "--executor", "submitit", "--cluster", "local", "--results", str(results)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 to submit" in err and "submitted 2 runs as job array" in err and err.count("test accuracy") == 2
    assert len(list(results.glob("runs/*.json"))) == 2 and len(list(results.glob("models/*.pt"))) == 2
    jobs = read_jobs(results)
    assert len(jobs) == 2 and all(Path(job["folder"]).parent == (results / "slurm").resolve() for job in jobs.values())
    assert main(["suite", str(suite), "--status", "--results", str(results)]) == 0
    assert "done 2" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 to submit" in capsys.readouterr().err


def test_status_names_runs_not_started_and_interrupted(tmp_path, capsys):
    suite = write_suite(tmp_path, TWO_RUNS)
    assert main(["suite", str(suite), "--status", "--results", str(tmp_path / "none")]) == 0
    assert "not started 2" in capsys.readouterr().out


def test_the_executor_table_of_a_suite_file_is_read_and_the_command_line_wins(tmp_path):
    from bench.cli import build_parser
    from bench.executors import options_from_args, resolve_options

    suite = load_suite(str(write_suite(tmp_path, TWO_RUNS + '[executor]\nname = "submitit"\npartition = "gpu"\n'
                                                            'gpus-per-run = 1\ntime_min = 30\n')))
    assert suite.executor == {"name": "submitit", "partition": "gpu", "gpus_per_run": 1, "time_min": 30}
    args = build_parser().parse_args(["suite", "x", "--partition", "a100", "--mem-gb", "24"])
    options = resolve_options(suite.executor, options_from_args(args))
    assert (options.name, options.partition, options.gpus_per_run, options.time_min, options.mem_gb) == \
        ("submitit", "a100", 1, 30, 24.0)


@pytest.mark.parametrize("table, message", [
    ('partiton = "gpu"', "[executor] has no key 'partiton' (did you mean 'partition'?)"),
    ("gpus_per_run = \"one\"", "[executor] key 'gpus_per_run' must be an int, not str"),
    ('name = "ray"', "unknown executor 'ray': choose local or submitit"),
    ("time_min = 0", "time_min must be >= 1"),
])
def test_bad_executor_tables_are_one_line_errors_naming_the_file(tmp_path, table, message):
    path = write_suite(tmp_path, TWO_RUNS + f"[executor]\n{table}\n")
    with pytest.raises(DynBenchError) as error:
        load_suite(str(path))
    assert message in str(error.value) and str(path) in str(error.value)


def test_no_wait_without_slurm_is_a_clear_error(tmp_path, capsys):
    suite = write_suite(tmp_path, TWO_RUNS)
    assert main(["suite", str(suite), "--executor", "submitit", "--cluster", "local", "--no-wait",
                 "--results", str(tmp_path)]) == 2
    assert "--no-wait needs a SLURM cluster" in capsys.readouterr().err
    assert not (tmp_path / "slurm" / "jobs.json").exists()


def test_slurm_where_there_is_none_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    suite = write_suite(tmp_path, TWO_RUNS)
    assert main(["suite", str(suite), "--executor", "submitit", "--cluster", "slurm", "--results", str(tmp_path)]) == 2
    assert "dynbench: error: submitit cannot use cluster 'slurm'" in capsys.readouterr().err


def test_submitit_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed: `import submitit` raises ImportError
    suite = write_suite(tmp_path, TWO_RUNS)
    assert main(["suite", str(suite), "--executor", "submitit", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynbench: error: --executor submitit needs the submitit package: pip install 'dynbench[cluster]'")


def test_a_partition_slurm_refuses_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """sbatch's own refusal (here a stand-in `sbatch` on PATH answering as SLURM does) becomes one line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpuz' >&2\n"
                      "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit checks that srun exists
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    suite = write_suite(tmp_path, TWO_RUNS)
    assert main(["suite", str(suite), "--executor", "submitit", "--cluster", "slurm", "--partition", "gpuz",
                 "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dynbench: error: submitting the job array failed:") and "invalid partition specified: gpuz" in err
    assert "check --partition" in err
