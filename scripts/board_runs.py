"""Train every row of one board: dense at every seed, then each gating method's default preset with its
matched controls (methods.md §7), seed by seed, in two lanes of one thread each (2 cores), or one lane
with the whole machine (`--lanes 1 --threads 2`, for runs too long to finish otherwise).

A control is paired with the gated run of the same seed: random gates at that run's validation rates
(per block, or per channel for batch-shaping), MID-L's random top-k at the same k, and a static smaller
net at that run's validation executed MACs; CosineGate also gets dense in its block form (no post-add
ReLU). The all-on control is scored inside every gated record.
`--presets METHOD:PRESET ...` adds further operating points, each with its method's controls.
Runs are ordered so that each finished record leaves a usable board: every dense seed first, then
seed 0 of every method, then their controls, then the other seeds. Finished runs are reused (resume by
running the same command again); records land in OUT/runs, then `dynbench tables --results OUT`.
Latency: with one lane each gated run is timed right after it trains (nothing else runs then); with two,
every gated run is timed at the end, once both lanes are idle (`dynbench time`).

    .venv/bin/python scripts/board_runs.py --dataset mnist --backbone resnet20 --epochs 5 \\
        --out results/boards/mnist_resnet20 --seeds 0 1 2
    .venv/bin/python scripts/board_runs.py --dataset cifar10 --backbone resnet20 --epochs 40 \\
        --out results/cifar10_resnet20 --lanes 1 --threads 2 --stop-at 21:00 --data-root DIR

An interrupted run (Ctrl-C, kill, the end of a session) keeps its last completed epoch: where the results
folder survives, the same command resumes it. `--stop-at HH:MM` is for machines whose disk does not survive:
it starts no training that would not finish by then (estimated from this board's log of earlier trainings of
the same entry, else from its dense runs times the method's step ratio; trainings logged on a machine of this
one's probed speed first; a resumed run needs only its epochs left), since an unfinished run is lost there and
its CPU time is better spent on a run that fits.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import DynBenchError, registry  # noqa: E402
from bench.checkpoints import read_checkpoint, resume_path  # noqa: E402
from bench.cli import parse_options  # noqa: E402
from bench.matching import matched_run_changed  # noqa: E402
from bench.measure.latency import cpu_model  # noqa: E402
from bench.records import code_hash, load_record, record_path  # noqa: E402
from bench.train import make_spec, plugin_file  # noqa: E402

# a method's training step relative to dense (`make bench-perf`, ResNet-20, batch 128, 1 thread, 2026-12-03,
# commit 791f0be): sizes a run that has no finished record of its own entry on this board yet
DURATION_MARK = "# trained:"  # log.txt line: "# trained: method:preset seconds [speed]"
# speed: this machine's dense ResNet-20 training images/s (synthetic CIFAR-shaped batches of 128, the run's
# threads) probed when board_runs starts; durations logged at a speed within SAME_SPEED of this machine's
# size its runs first (lent machines differ: 231 to 776 probe images/s on 2 threads so far)
SPEED_PROBE = {"backbone": "resnet20", "input_shape": (3, 32, 32), "num_classes": 10, "batch_size": 128}
SAME_SPEED = 0.15
STEP_RATIO = {"convnet_aig": 1.10, "skipnet": 1.17, "cosinegate": 1.24, "batch_shaping": 1.16, "midl": 1.27,
              "random_gate": 1.02, "static_small": 1.0, "dense": 1.0}


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
    parser.add_argument("--lanes", type=int, default=2, help="runs in parallel (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of each run (default 1; `--lanes 1 --threads 2` gives one run the whole machine)")
    parser.add_argument("--stop-at", type=clock_time,
                        help="HH:MM: start no training that would not finish by then (a machine lent until a fixed "
                             "time loses an unfinished run); its length is estimated from this board's records")
    parser.add_argument("--only", nargs="*",
                        help="method entries to run (default: every row; none: only the --presets rows)")
    parser.add_argument("--presets", nargs="*", default=[], metavar="METHOD:PRESET",
                        help="further operating points, each a row with the controls of its method's default row "
                             "(e.g. skipnet:baseline_alpha0.75); they run after the rows of each seed")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a", buffering=1)
    lock = threading.Lock()
    rows = [row for row in ROWS if args.only is None or row.entry in args.only] + [preset_row(p) for p in args.presets]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    speed = machine_speed(args.threads)  # before any run starts: nothing else loads the machine
    log.write(f"# machine: {cpu_model()}, {os.cpu_count()} cores; probe {speed:.1f} images/s on {args.threads} "
              f"thread(s) ({time.strftime('%Y-%m-%d %H:%M')}; records keep no CPU model)\n")
    data_root = ["--data-root", args.data_root] if args.data_root else []

    def too_late(method: str, preset: str, seed: int, options: tuple[str, ...]) -> str | None:
        """Why this run is not started before `--stop-at` (None: start it): it has no current record and
        its estimated length does not fit in the time left."""
        if args.stop_at is None:
            return None
        try:
            spec = make_spec(method, args.dataset, args.profile, seed, preset, backbone=args.backbone,
                             method_options=parse_options(list(options)), epochs=args.epochs)
        except DynBenchError:
            return None  # `dynbench run` reports it
        path = record_path(out, spec)
        if path.exists():
            record = load_record(path)
            current = code_hash(plugin_file(registry.get_method(method)), plugin_file(registry.get_dataset(args.dataset)))
            if record.code_hash == current and not matched_run_changed(record):
                return None  # reused at once
        needed = estimated_seconds(out, method, preset, speed)
        resume = resume_path(out, spec.hash)
        if needed is not None and resume.exists():
            try:
                needed *= 1 - read_checkpoint(resume)["epoch"] / spec.epochs
            except (ValueError, KeyError):
                pass  # `dynbench run` warns and trains from the first epoch
        left = args.stop_at - time.time()
        if needed is not None and needed > left:
            return f"needs about {needed / 60:.0f} min, {max(left, 0) / 60:.0f} min left before --stop-at"
        return None

    def run(entry: str, seed: int, *options: str) -> str | None:
        """One `dynbench run` (a control whose matched run was retrained is retrained by `run` itself);
        returns the record path."""
        method, _, preset = entry.partition(":")
        late = too_late(method, preset or "default", seed, options)
        if late:
            with lock:
                print(f"{time.strftime('%H:%M:%S')} {entry} {' '.join(options)} seed {seed}: not started ({late})",
                      file=sys.stderr)
            return None
        command = [sys.executable, "-m", "bench", "run", "--method", method, "--preset", preset or "default",
                   "--dataset", args.dataset, "--backbone", args.backbone, "--profile", args.profile,
                   "--epochs", str(args.epochs), "--seed", str(seed), "--results", str(out),
                   *[item for option in options for item in ("--option", option)]]
        command += data_root
        started = time.time()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        match = re.search(r"record: (\S+)", result.stdout)
        with lock:
            status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
            if method == "static_small" and "(no saving)" in result.stderr:
                status = "not needed (the gated run saves no MACs: dense is its static control)"
            print(f"{time.strftime('%H:%M:%S')} {entry} {' '.join(options)} seed {seed}: {status} "
                  f"in {time.time() - started:.0f}s", file=sys.stderr)
            log.write(" ".join(command) + "\n" + result.stdout + result.stderr[-2000:] + "\n")
            trained = result.returncode == 0 and "trained in" in result.stdout  # not a reused record
            resumed = "resuming after epoch" in result.stderr  # its wall time covers only the epochs left
            if trained and not resumed:  # what --stop-at reads
                log.write(f"{DURATION_MARK} {method}:{preset or 'default'} {time.time() - started:.0f} {speed:.1f}\n")
        record = match.group(1) if match and result.returncode == 0 else None
        # a reused record was timed when it trained (its model may not even be kept here)
        if record is not None and trained and args.lanes == 1 and method not in ("dense", "static_small"):
            settle()
            subprocess.run([sys.executable, "-m", "bench", "time", record, "--results", str(out), *data_root],
                           cwd=ROOT, env=env)
        return record

    def controls(row: Row, seed: int, record: str | None) -> list[tuple[str, ...]]:
        """The control runs (entry, option ...) matched to a gated run's record."""
        if record is None:
            return []
        runs: list[tuple[str, ...]] = []
        if row.random is not None and executes_every_unit(ROOT / record):
            with lock:
                print(f"{time.strftime('%H:%M:%S')} random_gate match_record={record} seed {seed}: not needed (the "
                      f"gated run executes every unit: random gates at rate 1 are its dense control)", file=sys.stderr)
        elif row.random == "channel":
            runs.append(("random_gate", f"match_record={record}", "unit=channel"))
        elif row.random is not None:
            runs.append(("random_gate", f"match_record={record}", f"composition={row.random}"))
        if row.static:
            runs.append(("static_small", f"match_record={record}"))
        return runs + [tuple(extra.split()) for extra in row.extra]

    with ThreadPoolExecutor(args.lanes) as lanes:
        list(lanes.map(lambda seed: run("dense", seed), args.seeds))
        every_control: list[Future] = []
        for seed in args.seeds:
            # every method's gated run of a seed is queued before any control; each control is queued as soon as
            # its gated run has finished, so no lane waits for the slowest gated run; the next seed's gated runs
            # queue behind this seed's controls instead of waiting for them, so no lane waits for the slowest control
            gated = {lanes.submit(run, row.entry, seed): row for row in rows}
            queued: dict[tuple[str, ...], Future] = {}  # CosineGate's two rows share their dense control
            for finished in as_completed(gated):
                for control in controls(gated[finished], seed, finished.result()):
                    if control not in queued:
                        queued[control] = lanes.submit(run, control[0], seed, *control[1:])
            every_control += queued.values()
        for future in every_control:
            future.result()
    subprocess.run([sys.executable, "-m", "bench", "time", "--all-seeds", "--results", str(out), *data_root], cwd=ROOT)
    subprocess.run([sys.executable, "-m", "bench", "tables", "--results", str(out)], cwd=ROOT)
    return 0


def settle(longest: float = 300.0) -> None:
    """Wait until the load average left by the training just finished has decayed (it lags by about a
    minute) to the one thread the timing uses, so that the timing is not marked busy; at most `longest` s."""
    deadline = time.time() + longest
    while os.getloadavg()[0] > 1.0 and time.time() < deadline:
        time.sleep(10)


def executes_every_unit(record: Path) -> bool:
    """Whether a gated run executed every gated unit on all validation inputs (random gates at its rates
    would be its dense network)."""
    rates = load_record(record).metrics.get("val_exec_rate_per_unit") or {}
    return bool(rates) and min(rates.values()) >= 1.0


def preset_row(entry: str) -> Row:
    """The row of another preset of a method: the controls of that method's default row."""
    method, _, preset = entry.partition(":")
    default = next((row for row in ROWS if row.entry.partition(":")[0] == method and ":" not in row.entry), None)
    if default is None or not preset:
        raise SystemExit(f"--presets {entry}: expected METHOD:PRESET of a method with a board row "
                         f"({', '.join(row.entry for row in ROWS if ':' not in row.entry)})")
    return Row(entry, default.random, default.static, default.extra)


def clock_time(text: str) -> float:
    """HH:MM today (tomorrow if that has passed) as a Unix time."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        moment = datetime.datetime.now().replace(hour=hours, minute=minutes, second=0, microsecond=0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM, not {text!r}") from None
    if moment < datetime.datetime.now():
        moment += datetime.timedelta(days=1)
    return moment.timestamp()


def machine_speed(threads: int) -> float:
    """Dense training images/s of this machine on the speed probe (a few seconds)."""
    from bench.backbones import build_backbone
    from bench.measure.throughput import train_step_throughput

    probe = dict(SPEED_PROBE)
    model = build_backbone(probe.pop("backbone"), probe["input_shape"], probe["num_classes"])
    return train_step_throughput(model, **probe, steps=5, warmup=2, threads=threads).images_per_second


def estimated_seconds(out: Path, method: str, preset: str, speed: float | None = None) -> float | None:
    """Wall time of training a run of this entry, from this board's log of earlier trainings (whole
    `dynbench run` processes): the median of the same method and preset, else that of every logged run
    converted by the methods' step ratios; None before any. Durations logged on a machine of this one's speed
    (probe within SAME_SPEED) are preferred; else every logged duration counts as it is (a synthetic probe
    does not scale a whole run between machines: 3.4x the probe speed of an AVX2 EPYC trained 2.7x as fast)."""
    similar: dict[str, list[float]] = {}
    every: dict[str, list[float]] = {}
    log = out / "log.txt"
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith(DURATION_MARK):
            entry, seconds, *logged_speed = line[len(DURATION_MARK):].split()
            every.setdefault(entry, []).append(float(seconds))
            if speed and logged_speed and abs(float(logged_speed[0]) / speed - 1) <= SAME_SPEED:
                similar.setdefault(entry, []).append(float(seconds))
    for walls in (similar, every):
        if f"{method}:{preset}" in walls:
            return statistics.median(walls[f"{method}:{preset}"])
        if walls:
            dense_equivalents = [seconds / step_ratio(entry.partition(":")[0])
                                 for entry, durations in walls.items() for seconds in durations]
            return statistics.median(dense_equivalents) * step_ratio(method)
    return None


def step_ratio(method: str) -> float:
    return STEP_RATIO.get(method, max(STEP_RATIO.values()))


if __name__ == "__main__":
    sys.exit(main())
