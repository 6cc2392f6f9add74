"""Train every row of one board: dense at every seed, then each gating method's default preset with its
matched controls (methods.md §7), seed by seed, in two lanes of one thread each (2 cores).

A control is paired with the gated run of the same seed: random gates at that run's validation rates
(per block, or per channel for batch-shaping), MID-L's random top-k at the same k, and a static smaller
net at that run's validation executed MACs; CosineGate also gets dense in its block form (no post-add ReLU). The all-on control is scored inside every gated record.
Runs are ordered so that each finished record leaves a usable board: every dense seed first, then
seed 0 of every method and its controls, then the other seeds. Finished runs are reused (resume by
running the same command again); records land in OUT/runs, then `dynbench tables --results OUT`.
Latency: with one lane each gated run is timed right after it trains (nothing else runs then); with two,
every gated run is timed at the end, once both lanes are idle (`dynbench time`).

    .venv/bin/python scripts/board_runs.py --dataset mnist --backbone resnet20 --epochs 5 \\
        --out results/boards/mnist_resnet20 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """A gated method and its controls: `random` is the composition of its block random gate, "channel"
    for channel-level random gates, None for none; `extra` are further control entries of the same seed,
    "method[:preset] [option=value ...]"."""

    entry: str
    random: str | None
    static: bool = True
    extra: tuple[str, ...] = field(default_factory=tuple)


# CosineGate's dense control has its block form, no ReLU after the addition (methods.md §7): random gates
# kept at rate 1 (one run per seed, shared by both CosineGate rows)
COSINEGATE_DENSE = "random_gate keep_rate=1.0 composition=no_act"
ROWS = [
    Row("convnet_aig", "aig"),
    Row("skipnet", "skipnet"),
    Row("cosinegate:realizable", "no_act", extra=(COSINEGATE_DENSE,)),
    Row("cosinegate", "no_act", static=False, extra=(COSINEGATE_DENSE,)),  # faithful: executes more than dense
    Row("batch_shaping", "channel"),
    Row("midl", None, extra=("midl:random_topk",)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, help="results folder of this board")
    parser.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA)")
    parser.add_argument("--lanes", type=int, default=2, help="runs in parallel, one thread each (default 2)")
    parser.add_argument("--only", nargs="*", help="method entries to run (default: every row)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a", buffering=1)
    lock = threading.Lock()
    rows = [row for row in ROWS if not args.only or row.entry in args.only]

    def run(entry: str, seed: int, *options: str) -> str | None:
        """One `dynbench run` (a control whose matched run was retrained is retrained by `run` itself);
        returns the record path."""
        method, _, preset = entry.partition(":")
        command = [sys.executable, "-m", "bench", "run", "--method", method, "--preset", preset or "default",
                   "--dataset", args.dataset, "--backbone", args.backbone, "--profile", args.profile,
                   "--epochs", str(args.epochs), "--seed", str(seed), "--results", str(out),
                   *[item for option in options for item in ("--option", option)]]
        if args.data_root:
            command += ["--data-root", args.data_root]
        started = time.time()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        match = re.search(r"record: (\S+)", result.stdout)
        with lock:
            status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
            print(f"{time.strftime('%H:%M:%S')} {entry} {' '.join(options)} seed {seed}: {status} "
                  f"in {time.time() - started:.0f}s", file=sys.stderr)
            log.write(" ".join(command) + "\n" + result.stdout + result.stderr[-2000:] + "\n")
        record = match.group(1) if match and result.returncode == 0 else None
        if record is not None and args.lanes == 1 and method not in ("dense", "static_small"):
            subprocess.run([sys.executable, "-m", "bench", "time", record, "--results", str(out)], cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        return record

    def gated_with_controls(row: Row, seed: int) -> None:
        record = run(row.entry, seed)
        if record is None:
            return
        if row.random == "channel":
            run("random_gate", seed, f"match_record={record}", "unit=channel")
        elif row.random is not None:
            run("random_gate", seed, f"match_record={record}", f"composition={row.random}")
        if row.static:
            run("static_small", seed, f"match_record={record}")
        for extra in row.extra:
            entry, *options = extra.split()
            run(entry, seed, *options)

    with ThreadPoolExecutor(args.lanes) as lanes:
        list(lanes.map(lambda seed: run("dense", seed), args.seeds))
        for seed in args.seeds:
            list(lanes.map(lambda row: gated_with_controls(row, seed), rows))
    subprocess.run([sys.executable, "-m", "bench", "time", "--all-seeds", "--results", str(out)], cwd=ROOT)
    subprocess.run([sys.executable, "-m", "bench", "tables", "--results", str(out)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
