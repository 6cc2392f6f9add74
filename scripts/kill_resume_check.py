"""Kill a `dynbench run` with SIGKILL at random moments, resume each to the end, and compare every resumed
record with an uninterrupted run's (everything but timings and the creation time must be equal).

    python scripts/kill_resume_check.py --dataset mnist --data-root /work/shared/datasets --profile quick \\
        --epochs 5 --method skipnet --kills 10 --work /tmp/kill_resume

Prints a markdown table: kill moment (seconds after start), epochs checkpointed when killed, the epoch the
second command resumed after, and whether the resumed record equals the uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.fixtures.records import comparable  # noqa: E402 (the tests compare records the same way)


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in differences(a.get(key), b.get(key), f"{prefix}.{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{prefix}[{i}]")]
    return [] if a == b else [prefix.lstrip(".")]


def checkpointed_epoch(results: Path) -> str:
    from bench.checkpoints import read_checkpoint

    files = list(results.glob("models/*.resume.pt"))
    if not files:
        return "none" if not list(results.glob("runs/*.json")) else "finished"
    try:
        return str(read_checkpoint(files[0])["epoch"])
    except ValueError as exc:
        return f"unreadable ({exc})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="skipnet")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root", default=os.environ.get("DYNBENCH_DATA"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", default="/tmp/kill_resume", help="scratch folder (emptied)")
    parser.add_argument("--reference-seconds", type=float, help="reuse the uninterrupted run in --work, which took "
                        "this many seconds (skips training it again)")
    parser.add_argument("extra", nargs="*", help="more `dynbench run` arguments, after --")
    args = parser.parse_args()

    work = Path(args.work)
    if args.reference_seconds is None:
        shutil.rmtree(work, ignore_errors=True)
    else:  # reuse the uninterrupted run already in `work` (its wall time as measured then)
        for folder in work.glob("kill*"):
            shutil.rmtree(folder)
    command = [sys.executable, "-m", "bench", "run", "--method", args.method, "--dataset", args.dataset, "--profile",
               args.profile, "--epochs", str(args.epochs), *(["--data-root", args.data_root] if args.data_root else []),
               *args.extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def dynbench(results: Path) -> subprocess.Popen:
        return subprocess.Popen([*command, "--results", str(results)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    if args.reference_seconds is None:
        started = time.perf_counter()
        reference = dynbench(work / "reference")
        _, err = reference.communicate()
        total = time.perf_counter() - started
        if reference.returncode != 0:
            print(err, file=sys.stderr)
            return 1
    else:
        total = args.reference_seconds
    (reference_record,) = (work / "reference").glob("runs/*.json")
    expected = comparable(json.loads(reference_record.read_text()))
    print(f"uninterrupted run: {total:.1f} s wall (process start to exit); {args.kills} kills at uniform random "
          f"moments in [0, {total:.1f}] s (seed {args.seed})\n")
    draw = random.Random(args.seed)
    moments = sorted(draw.uniform(0, total) for _ in range(args.kills))
    print("| kill | at (s) | epochs checkpointed when killed | resumed | resumed record vs uninterrupted |")
    print("|---|---|---|---|---|")
    identical = killed_mid_run = 0
    for number, moment in enumerate(moments, 1):
        results = work / f"kill{number}"
        victim = dynbench(results)
        time.sleep(moment)
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
        victim.communicate()
        reached = checkpointed_epoch(results)
        resumed = dynbench(results)
        _, err = resumed.communicate()
        line = next((line for line in err.splitlines() if "resuming after epoch" in line), "")
        how = line.split("resuming after epoch ")[1].split(" ")[0] if line else "fresh start"
        if reached == "finished":
            how = "nothing to resume (the run had finished)"
        if resumed.returncode != 0:
            print(f"| {number} | {moment:.1f} | {reached} | {how} | FAILED: {err.strip().splitlines()[-1]} |")
            continue
        (record,) = results.glob("runs/*.json")
        diff = differences(comparable(json.loads(record.read_text())), expected)
        identical += not diff
        killed_mid_run += reached != "finished"
        verdict = "identical" if not diff else f"DIFFERS in {', '.join(diff[:5])}"
        print(f"| {number} | {moment:.1f} | {reached} (of {args.epochs}) | {how} | {verdict} |", flush=True)
    print(f"\n{identical}/{len(moments)} records identical to the uninterrupted run, {killed_mid_run} of them from runs "
          f"killed mid-run (the others had finished before their kill moment); compared: every field but train/wall "
          f"seconds, created, per-epoch seconds and latency timings")
    return 0 if identical == len(moments) else 1


if __name__ == "__main__":
    sys.exit(main())
