"""Run a small suite through `dynbench suite --executor submitit --cluster local`, preempt one job mid-run
the way SLURM does (USR2 to the job's process, after its first checkpointed epoch), let submitit requeue it,
and compare every record with those of a second, uninterrupted submission of the same suite.

    python scripts/submitit_requeue_check.py --work /tmp/submitit_check --preempt skipnet

The suite: 6 methods on digits, `quick` profile (20 epochs), seed 0, one CPU thread per job.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from kill_resume_check import comparable, differences  # noqa: E402

SUITE = """profile = "quick"
seeds = [0]
datasets = ["digits"]
methods = ["dense", "random_gate", "skipnet", "convnet_aig", "batch_shaping", "midl"]
"""


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def submit(suite: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench", "suite", str(suite), "--executor", "submitit", "--cluster",
                             "local", "--cpus-per-run", "1", "--results", str(results)], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/submitit_check")
    parser.add_argument("--preempt", default="skipnet", help="method whose job is preempted")
    args = parser.parse_args()
    from bench.data import resolve_data_root
    from bench.executors import read_jobs
    from bench.suite import load_suite, plan

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    suite = work / "six.toml"
    suite.write_text(SUITE)
    specs, _ = plan(load_suite(str(suite)), resolve_data_root(None))
    target = next(spec for spec in specs if spec.method == args.preempt)
    preempted, reference = work / "preempted", work / "reference"

    started = time.perf_counter()
    process = submit(suite, preempted)
    resume = preempted / "models" / f"{target.hash}.resume.pt"
    while not resume.exists():
        time.sleep(0.05)
    sys.path.insert(0, str(REPO))
    from bench.checkpoints import read_checkpoint

    time.sleep(0.5)
    job = read_jobs(preempted)[target.hash]
    (task,) = children(int(job["job_id"]))
    epoch = read_checkpoint(resume)["epoch"]
    os.kill(task, signal.SIGUSR2)
    print(f"preempted job {job['job_id']} ({target.label}) at {time.perf_counter() - started:.1f} s, "
          f"after epoch {epoch}/{target.epochs} was checkpointed (USR2 to its process {task})", flush=True)
    _, err = process.communicate()
    print(f"submission 1 (with the preemption): exit {process.returncode}, {time.perf_counter() - started:.1f} s")
    print("\n".join("  " + line for line in err.splitlines() if line.startswith(("[", "submitted", "suite"))))
    log = "".join((Path(job["folder"]) / f"{job['job_id']}_0_log.{kind}").read_text() for kind in ("out", "err"))
    for needle in ("Caught signal SIGUSR2", "Requeued job", "resuming after epoch"):
        lines = [line for line in log.splitlines() if needle in line]
        print(f"  job log: {lines[0].strip() if lines else 'MISSING: ' + needle}")

    started = time.perf_counter()
    process = submit(suite, reference)
    _, err = process.communicate()
    print(f"submission 2 (uninterrupted, into another results folder): exit {process.returncode}, "
          f"{time.perf_counter() - started:.1f} s")
    identical = 0
    print("\n| run | record written | vs uninterrupted |\n|---|---|---|")
    for spec in specs:
        mine, theirs = preempted / "runs" / f"{spec.hash}.json", reference / "runs" / f"{spec.hash}.json"
        if not mine.exists() or not theirs.exists():
            print(f"| {spec.label} | {'yes' if mine.exists() else 'NO'} | - |")
            continue
        diff = differences(comparable(json.loads(mine.read_text())), comparable(json.loads(theirs.read_text())))
        identical += not diff
        mark = " (preempted, requeued, resumed)" if spec.hash == target.hash else ""
        print(f"| {spec.label}{mark} | yes | {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff[:4])} |")
    leftover = list(preempted.glob("models/*.resume.pt"))
    print(f"\n{identical}/{len(specs)} records identical; resume files left: {len(leftover)}")
    return 0 if identical == len(specs) and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
