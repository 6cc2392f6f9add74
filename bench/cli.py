"""`dynbench` command line: argument parsing only; the work is done by the bench modules."""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from bench import DynBenchError, registry

DESCRIPTION = "DynBench: train, measure and compare dynamic-computation methods on shared backbones and data."


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are Python literals when they parse as one (0.5, true -> True), else strings."""
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise DynBenchError(f"option '{pair}' must look like key=value")
        raw = {"true": "True", "false": "False", "none": "None"}.get(raw.lower(), raw)
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    return options


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root

    root = resolve_data_root(args.data_root)
    print("methods:")
    for name, cls in registry.available("methods").items():
        presets = ", ".join(cls.presets)
        print(f"  {name:<16} {cls.description} [presets: {presets}]")
    print(f"datasets (data root {root}):")
    for name, cls in registry.available("datasets").items():
        availability = cls().availability(root)
        state = "available" if availability.ok else "unavailable"
        print(f"  {name:<16} {cls.description} [{state}: {availability.detail}]")
    for kind in registry.KINDS:
        for name, failed in registry.broken(kind).items():
            print(f"BROKEN {kind[:-1]} plugin '{name}' ({failed.origin}): {failed.error}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root
    from bench.train import make_spec, run

    spec = make_spec(args.method, args.dataset, profile=args.profile, seed=args.seed, preset=args.preset,
                     backbone=args.backbone, method_options=parse_options(args.option),
                     backbone_options=parse_options(args.backbone_option), epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer)
    record, reused = run(spec, resolve_data_root(args.data_root), Path(args.results), force=args.force, device=args.device)
    primary, macs = record.metrics["primary_metric"], record.metrics["executed_macs"]
    how = "reused the existing record" if reused else f"trained in {record.train_seconds:.1f}s"
    print(f"{spec.label}: {how}\n  test {primary} {record.metrics['test'][primary]:.4f}, "
          f"val {primary} {record.metrics['val'][primary]:.4f}\n"
          f"  executed MACs {macs['mean'] / 1e6:.3f} M (dense {record.metrics['dense_macs'] / 1e6:.3f} M, saving "
          f"{100 * record.metrics['mac_saving']:.1f} %), params {record.metrics['params']:,}\n"
          f"  record: {Path(args.results) / 'runs' / (record.spec_hash + '.json')}")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root
    from bench.suite import load_suite, run_suite

    failures = run_suite(load_suite(args.suite), resolve_data_root(args.data_root), Path(args.results),
                         device=args.device, jobs=args.jobs)
    if failures:
        print(f"{failures} run(s) failed; completed runs are kept", file=sys.stderr)
    return 1 if failures else 0


def cmd_tables(args: argparse.Namespace) -> int:
    from bench.tables import write_tables

    print(f"wrote {write_tables(Path(args.results))}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data import dataset_status, describe_sizes, download, prepare, resolve_data_root

    root = resolve_data_root(args.data_root)
    if args.action == "list":
        print(f"datasets (data root {root}):")
        for name, cls in registry.available("datasets").items():
            status = dataset_status(cls(), root)
            print(f"  {name:<14} {'available' if status.available else 'unavailable'}: {status.detail}")
            if status.available:
                print(f"  {'':<14} {describe_sizes(status.sizes, cls.val_fraction)}; cache: {status.cache}")
        return 0
    if not args.name:
        raise DynBenchError(f"`dynbench data {args.action}` needs a dataset name; `dynbench data list` shows them")
    plugin = registry.get_dataset(args.name)()
    status = prepare(plugin, root, force=args.force) if args.action == "prepare" else download(plugin, root)
    print(f"{status.name}: {status.detail}\n  {describe_sizes(status.sizes, plugin.val_fraction)}; cache: {status.cache}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynbench", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, data: bool = True) -> None:
        sub.add_argument("--results", default="results", help="results folder (records in <results>/runs); default ./results")
        if data:
            sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")

    sub = commands.add_parser("list", help="list methods and datasets (and whether each dataset's files are present)",
                              description="List registered methods with their presets, datasets with their availability "
                                          "under the data root, and plugins that failed to import.")
    sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")
    sub.set_defaults(func=cmd_list)

    sub = commands.add_parser("run", help="train and evaluate one method on one dataset",
                              description="Train and evaluate one method on one dataset and write its run record. An "
                                          "existing record of the same spec is reused unless --force.")
    sub.add_argument("--method", required=True, help="method name (see `dynbench list`)")
    sub.add_argument("--dataset", required=True, help="dataset name (see `dynbench list`)")
    sub.add_argument("--preset", default="default", help="method preset (default: default)")
    sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)")
    sub.add_argument("--backbone", help="backbone name, e.g. resnet20 (default: the dataset's)")
    sub.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE", help="backbone option (repeatable)")
    sub.add_argument("--profile", default="quick", help="smoke | quick | standard | paper (default quick)")
    sub.add_argument("--epochs", type=int, help="override the profile's epochs")
    sub.add_argument("--batch-size", type=int, help="override the profile's batch size")
    sub.add_argument("--lr", type=float, help="override the profile's learning rate")
    sub.add_argument("--optimizer", choices=["sgd", "adamw"], help="override the profile's optimizer")
    sub.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sub.add_argument("--force", action="store_true", help="retrain even if a record exists")
    common(sub)
    sub.set_defaults(func=cmd_run)

    sub = commands.add_parser("suite", help="run a suite of runs (skips runs already recorded)",
                              description="Run every run of a suite (TOML) that has no record yet; interrupted suites "
                                          "resume where they stopped.")
    sub.add_argument("suite", help="suite name in bench/suites (e.g. quick) or a path to a .toml file")
    sub.add_argument("--jobs", type=int, default=1, help="runs in parallel worker processes (default 1)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    common(sub)
    sub.set_defaults(func=cmd_suite)

    sub = commands.add_parser("tables", help="rebuild leaderboards under results/ from the run records",
                              description="Rebuild results/leaderboard.md, leaderboard.csv and runs.csv from the run records alone.")
    common(sub, data=False)
    sub.set_defaults(func=cmd_tables)

    sub = commands.add_parser("data", help="dataset files: list their state, build the tensor cache, download",
                              description="`data list` shows each dataset's availability, source, sizes and cache; "
                                          "`data prepare NAME` parses the original files into the tensor cache "
                                          "($DYNBENCH_CACHE, else <data root>/.cache, else ~/.cache/dynbench); "
                                          "`data download NAME` fetches the official files where a public URL exists.")
    sub.add_argument("action", choices=["list", "prepare", "download"])
    sub.add_argument("name", nargs="?", help="dataset name (prepare, download)")
    sub.add_argument("--force", action="store_true", help="prepare: rebuild a valid cache too")
    sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")
    sub.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DynBenchError as exc:
        print(f"dynbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dynbench: interrupted: the unfinished run wrote no record; completed runs are kept. "
              "Run the same command again to resume.", file=sys.stderr)
        return 130
