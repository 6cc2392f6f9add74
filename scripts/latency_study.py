"""Realized latency of every method's trained model on ResNet-8 and ResNet-20 (CIFAR-10 input), for issue 19's
before / after comparison of the execution paths.

    python scripts/latency_study.py train              # train the models (CIFAR-10 sample, quick, 15 epochs, seed 0)
    python scripts/latency_study.py time --tag after   # time them all (the timing pass), keep a snapshot
    python scripts/latency_study.py time --tag eager --no-programs   # batch 1 in the eager form only

Models and records go to results/latency_study (models are not committed: `train` again on a new machine).
`time` runs `dynbench time --force --all-seeds` with the full protocol budget (or --budget seconds per
batch size), copies the latency records to results/latency_study/<tag>.json and prints the table. With
two tags, `compare --tags before after` prints both side by side.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.measure.latency as latency  # noqa: E402
from bench.data import resolve_data_root  # noqa: E402
from bench.records import load_record  # noqa: E402
from bench.timing import LATENCY_DIR, time_runs  # noqa: E402

RESULTS = ROOT / "results" / "latency_study"
METHODS = ["convnet_aig", "skipnet", "cosinegate:realizable", "cosinegate", "batch_shaping", "midl", "random_gate", "dense"]
BACKBONES = ["resnet8", "resnet20"]


def train(args: argparse.Namespace) -> None:
    for backbone in BACKBONES:
        for entry in METHODS:
            method, _, preset = entry.partition(":")
            subprocess.run([sys.executable, "-m", "bench", "run", "--method", method, "--preset", preset or "default",
                            "--dataset", "cifar10", "--backbone", backbone, "--profile", "quick", "--epochs", "15",
                            "--seed", "0", "--results", str(RESULTS)], check=True)


def time_all(args: argparse.Namespace) -> None:
    if args.no_programs:  # the same models timed without the batch-1 programs: their before / after
        latency.batch1_programs = lambda *_: None
    records = [str(path) for path in sorted((RESULTS / "runs").glob("*.json"))]  # named: timed even if stale
    failures = time_runs(RESULTS, resolve_data_root(args.data_root), records=records, force=True, threads=args.threads,
                         budget_s=args.budget)
    snapshot = {}
    for path in sorted((RESULTS / LATENCY_DIR).glob("*.json")):
        data = json.loads(path.read_text())
        record = load_record(RESULTS / "runs" / f"{data['training_spec_hash']}.json")
        snapshot[label(record)] = data
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(table({args.tag: snapshot}))
    if failures:
        sys.exit(f"{failures} run(s) could not be timed")


def label(record) -> str:
    spec = record.run_spec
    return f"{spec.backbone} {spec.method}" + ("" if spec.preset == "default" else f":{spec.preset}")


def _cell(batch: dict, field: str) -> str:
    low, high = batch[f"{field}_ci"]
    return f"{100 * batch[field]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _ratio(batch: dict) -> str:
    if batch["mac_saving"] <= 0.01:
        return "—"
    low, high = batch["realized_ci"]
    return f"{batch['realized']:.2f} [{low:.2f}, {high:.2f}]"


def table(snapshots: dict[str, dict]) -> str:
    lines = ["| model | timing | MAC saving (%) | saving b1 (%) [CI] | realized b1 | saving b128 (%) [CI] | realized b128 "
             "| all-on overhead b1 / b128 (%) | all-off saving b1 / b128 (%) (MACs) | execution |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = sorted({name for snapshot in snapshots.values() for name in snapshot})
    for name in names:
        for tag, snapshot in snapshots.items():
            if name not in snapshot:
                continue
            b = snapshot[name]["latency"]["batches"]
            one, many = b["1"], b["128"]
            real = "real skipping" if (one["skips_for_real"] or many["skips_for_real"]) else "MASKED"
            lines.append(f"| {name} | {tag} | {100 * one['mac_saving']:.1f} | {_cell(one, 'saving')} | {_ratio(one)} | "
                         f"{_cell(many, 'saving')} | {_ratio(many)} | {100 * one['all_on_overhead']:.1f} / "
                         f"{100 * many['all_on_overhead']:.1f} | {100 * one['all_off_saving']:.1f} / "
                         f"{100 * many['all_off_saving']:.1f} ({100 * one['all_off_mac_saving']:.1f}) | {real} |")
    return "\n".join(lines)


def compare(args: argparse.Namespace) -> None:
    print(table({tag: json.loads((RESULTS / f"{tag}.json").read_text()) for tag in args.tags}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    sub = commands.add_parser("train")
    sub.set_defaults(func=train)
    sub = commands.add_parser("time")
    sub.add_argument("--tag", required=True)
    sub.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds per batch size")
    sub.add_argument("--threads", type=int, default=1)
    sub.add_argument("--data-root")
    sub.add_argument("--no-programs", action="store_true",
                     help="time batch 1 in the eager form (the form before the TorchScript programs)")
    sub.set_defaults(func=time_all)
    sub = commands.add_parser("compare")
    sub.add_argument("--tags", nargs="+", required=True)
    sub.set_defaults(func=compare)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
