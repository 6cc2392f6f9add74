"""`dynbench` command line: argument parsing only; the work is done by the bench modules."""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
from pathlib import Path
from typing import Any

import bench
from bench import DynBenchError, registry

DESCRIPTION = "DynBench: train, measure and compare dynamic-computation methods on shared backbones and data."
EPILOG = ("Interrupting: Ctrl-C (SIGINT) or kill (SIGTERM) stops a run without writing a partial record; the run "
          "keeps its last completed epoch and the same command resumes from there. A dynbench started with SIGINT "
          "ignored (nohup, `cmd &` from a script) keeps ignoring it, like any Unix tool: stop it with kill.")


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


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: `dynbench run: error: argument --lr: ...` (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def whole_number(minimum: int):
    """argparse type: an int of at least `minimum`, refused at parse time with a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def number(low: float, high: float = math.inf, low_open: bool = False):
    """argparse type: a finite float in [low, high] (or (low, high] when `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not '{text}'") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            bound = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else \
                f"{'greater than' if low_open else 'at least'} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {'in ' if high < math.inf else ''}{bound}, not '{text}'")
        return value
    return parse


def cmd_describe(args: argparse.Namespace) -> int:
    """A method's options with their defaults and every preset's values (or a dataset's settings)."""
    if args.name in registry.available("methods") or args.name not in registry.available("datasets"):
        cls = registry.get_method(args.name)
        print(f"method {cls.name}: {cls.description}\n  defined in {sys.modules[cls.__module__].__file__}")
        print("options (default; set with --option KEY=VALUE):")
        for key, default in cls.options.items():
            print(f"  {key:<18} {default!r}")
        if not cls.options:
            print("  (none)")
        print("presets (--preset NAME; the options each one sets):")
        for name, values in cls.presets.items():
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the defaults"
            print(f"  {name:<18} {shown}")
        return 0
    cls = registry.get_dataset(args.name)
    print(f"dataset {cls.name}: {cls.description}\n  defined in {sys.modules[cls.__module__].__file__}")
    print(f"  task {cls.task}, {cls.num_classes} classes, primary metric {cls.primary_metric}, backbone {cls.backbone} "
          f"{cls.backbone_options or ''}".rstrip())
    for profile, values in cls.profile_overrides.items():
        print(f"  profile {profile}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return 0


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
                     batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                     precision=args.precision)
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
    from bench.executors import format_status, options_from_args, resolve_options, submit_suite, suite_status
    from bench.suite import load_suite, run_suite

    suite, data_root, results = load_suite(args.suite), resolve_data_root(args.data_root), Path(args.results)
    if args.status:
        print(format_status(suite_status(suite, data_root, results), suite.name))
        return 0
    options = resolve_options(suite.executor, options_from_args(args))
    if options.name == "submitit":
        failures = submit_suite(suite, data_root, results, options, device=args.device, wait=not args.no_wait)
    else:
        failures = run_suite(suite, data_root, results, device=args.device, jobs=args.jobs)
    if not args.no_timing and not (options.name == "submitit" and args.no_wait):
        from bench.timing import time_runs

        print("timing the gated runs' kept models, one at a time (training has finished)", flush=True)
        time_runs(results, data_root, device=args.device)  # an untimed run is reported; its record stands
    if failures:
        print(f"{failures} run(s) failed (tracebacks in {Path(args.results) / 'logs'}); completed runs are kept; "
              "run the suite again to retry them", file=sys.stderr)
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root
    from bench.evaluate import describe, evaluate_record

    evaluation = evaluate_record(args.record, Path(args.results), resolve_data_root(args.data_root), split=args.split,
                                 device=args.device, threads=args.threads)
    print(describe(evaluation))
    return 0


def cmd_time(args: argparse.Namespace) -> int:
    from bench.data import resolve_data_root
    from bench.timing import time_runs

    failures = time_runs(Path(args.results), resolve_data_root(args.data_root), records=args.record or None,
                         device=args.device, threads=args.threads, force=args.force, all_seeds=args.all_seeds)
    return 1 if failures else 0


def cmd_tables(args: argparse.Namespace) -> int:
    from bench.reporting.tables import write_tables

    print(f"wrote {write_tables(Path(args.results), select_on=args.select_on)}")
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
    parser = Parser(prog="dynbench", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dynbench {bench.__version__}")
    parser.add_argument("--plugin-path", action="append", default=[], metavar="DIR",
                        help="also load plugins from DIR/methods and DIR/datasets (repeatable; like "
                             f"${registry.PLUGIN_PATH_ENV}); the working directory is never searched unless named")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def common(sub: argparse.ArgumentParser, data: bool = True) -> None:
        sub.add_argument("--results", default="results", help="results folder (records in <results>/runs); default ./results")
        if data:
            sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")

    sub = commands.add_parser("list", help="list methods and datasets (and whether each dataset's files are present)",
                              description="List registered methods with their presets, datasets with their availability "
                                          "under the data root, and plugins that failed to import.")
    sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")
    sub.set_defaults(func=cmd_list)

    sub = commands.add_parser("describe", help="show a method's options with their defaults, and its presets",
                              description="Show a method's options (with defaults) and each preset's values, or a "
                                          "dataset's settings.")
    sub.add_argument("name", help="method (or dataset) name, see `dynbench list`")
    sub.set_defaults(func=cmd_describe)

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
    sub.add_argument("--epochs", type=whole_number(1), help="override the profile's epochs")
    sub.add_argument("--batch-size", type=whole_number(1), help="override the profile's batch size")
    sub.add_argument("--lr", type=number(0.0, low_open=True), help="override the profile's learning rate")
    sub.add_argument("--optimizer", choices=["sgd", "adamw"], help="override the profile's optimizer")
    sub.add_argument("--weight-decay", type=number(0.0), help="override the profile's weight decay")
    sub.add_argument("--precision", choices=["fp32", "bf16"], help="override the profile's training precision (bf16: autocast)")
    sub.add_argument("--seed", type=whole_number(0), default=0, help="master seed (default 0)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sub.add_argument("--force", action="store_true", help="retrain even if a record exists")
    common(sub)
    sub.set_defaults(func=cmd_run)

    sub = commands.add_parser("suite", help="run a suite of runs (skips runs already recorded)",
                              description="Run every run of a suite (TOML) that has no record yet; interrupted suites "
                                          "resume where they stopped.")
    sub.add_argument("suite", help="suite name in bench/suites (e.g. quick) or a path to a .toml file")
    sub.add_argument("--jobs", type=whole_number(1), default=1, help="runs in parallel worker processes (default 1; local executor)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sub.add_argument("--status", action="store_true", help="show each run's state (done, queued, running, failed, "
                                                           "interrupted at epoch k/N, not started) and exit")
    cluster = sub.add_argument_group("cluster (submitit) options; also an [executor] table in the suite file, "
                                     "which these override")
    cluster.add_argument("--executor", choices=["local", "submitit"], help="local worker processes (default) or one "
                         "submitit job per run, as a job array (SLURM; requeued and resumed when preempted or timed out)")
    cluster.add_argument("--cluster", choices=["slurm", "local", "debug"], help="submitit's cluster (default: auto, "
                         "slurm where sbatch exists; local = processes on this machine)")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--gpus-per-run", type=int, help="GPUs per job (default 0)")
    cluster.add_argument("--cpus-per-run", type=int, help="CPUs per job, also its torch threads (default 1)")
    cluster.add_argument("--mem-gb", type=float, help="memory per job in GB (default: the partition's)")
    cluster.add_argument("--time-min", type=int, help="time limit per job in minutes (default 240); a run that needs "
                         "longer is requeued and resumes from its last epoch")
    cluster.add_argument("--array-parallelism", type=int, help="jobs of the array running at once (default 32)")
    cluster.add_argument("--no-wait", action="store_true", help="submit and return instead of waiting for the jobs")
    sub.add_argument("--no-timing", action="store_true",
                     help="skip the timing pass after training (run `dynbench time` later for the latency columns)")
    common(sub)
    sub.set_defaults(func=cmd_suite)

    sub = commands.add_parser("eval", help="re-measure a trained model: metrics, executed MACs, latency on this machine",
                              description="Rebuild the trained model of a run record (kept in <results>/models by `dynbench "
                                          "run`), evaluate it on a split, recount its executed MACs, time its realized "
                                          "latency on this machine, and write an evaluation record to "
                                          "<results>/evals/<hash>.json linked to the run record. On the training machine "
                                          "the test split reproduces the record's test metrics and MACs exactly.")
    sub.add_argument("record", help="a run record's path, or its spec hash (or a unique prefix) in <results>/runs")
    sub.add_argument("--split", choices=["test", "val"], default="test", help="split to evaluate (default test)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available); latency is timed there")
    sub.add_argument("--threads", type=int, default=1, help="intra-op CPU threads for the latency timing (default 1, "
                                                            "as in training records)")
    common(sub)
    sub.set_defaults(func=cmd_eval)

    sub = commands.add_parser("time", help="time the kept models of gated runs: realized latency on this machine",
                              description="Time each gated run's kept model alone (dense copy, as trained, gates forced "
                                          "on and off, a fixed anchor network; batch 1 and 128; paired rounds until the "
                                          "saving's 95 %% CI is ±1 point) and write <results>/latency/<hash>.<machine>.json. "
                                          "Runs whose latency record for this machine is current are skipped; by default one seed per "
                                          "configuration is timed.")
    sub.add_argument("record", nargs="*", help="run record paths or spec hashes (default: every gated run in --results)")
    sub.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sub.add_argument("--threads", type=int, default=1, help="intra-op CPU threads (default 1)")
    sub.add_argument("--force", action="store_true", help="time again even where a current latency record exists")
    sub.add_argument("--all-seeds", action="store_true",
                     help="time every seed of each configuration (default: the lowest seed; named records: all)")
    common(sub)
    sub.set_defaults(func=cmd_time)

    sub = commands.add_parser("tables", help="rebuild leaderboards under results/ from the run records",
                              description="Rebuild results/leaderboard.md, leaderboard.csv and runs.csv from the run records alone.")
    common(sub, data=False)
    sub.add_argument("--select-on", choices=["val"], default=None,
                     help="sweep boards: rank and choose on validation, show test only for the rows finally reported")
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

    add_backbone_commands(commands)
    return parser


# ---- backbones: `macs` and `latency` (one block, so the `data` subcommand merges beside it) ----------

def _backbone_from_args(args: argparse.Namespace):
    """The backbone named by --backbone (default: the dataset's) for --dataset or --input-shape/--num-classes."""
    from bench.backbones import build_backbone

    name, options, num_classes, in_shape = args.backbone, parse_options(args.backbone_option), args.num_classes, None
    if args.input_shape:
        try:
            in_shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise DynBenchError(f"--input-shape must be comma-separated integers like 3,32,32, not '{args.input_shape}'") from None
    if args.dataset:
        dataset_cls = registry.get_dataset(args.dataset)
        name = name or dataset_cls.backbone
        options = {**dataset_cls.backbone_options, **options}
        num_classes = num_classes or dataset_cls.num_classes
        if in_shape is None:
            in_shape = getattr(dataset_cls, "input_shape", None)
        if in_shape is None:  # the plugin does not declare it: read one parsed sample (cached after the first time)
            from bench.data import load_splits, resolve_data_root

            in_shape = tuple(load_splits(dataset_cls(), resolve_data_root(args.data_root)).test.x.shape[1:])
    if not name or in_shape is None or not num_classes:
        raise DynBenchError("give --dataset, or --backbone with --input-shape (e.g. 3,32,32) and --num-classes")
    return build_backbone(name, in_shape, num_classes, **options)


def cmd_macs(args: argparse.Namespace) -> int:
    from bench.measure.latency import random_gated
    from bench.measure.macs import count_macs, describe_backbone, unit_table

    backbone = _backbone_from_args(args)
    example = backbone.example_input(1)
    print(f"{backbone.family}: input {list(backbone.in_shape)}")
    if args.gate:  # the unit table a method with these units gets (gates here are free random ones)
        dense_macs = count_macs(backbone, example)
        print(unit_table(random_gated(backbone, args.gate, 1.0), example).format(dense_macs))
    else:
        print(describe_backbone(backbone, example))
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    import torch

    from bench.measure.latency import describe_latency, random_gated, time_model

    backbone = _backbone_from_args(args)
    inputs = backbone.example_input(args.batch_size, torch.Generator().manual_seed(args.seed))
    model = random_gated(backbone, args.gate, args.keep_rate)
    print(f"{backbone.family}, {args.gate} gates, random keep rate {args.keep_rate}")
    result = time_model(model, inputs, batch_sizes=(1, args.batch_size), threads=args.threads, b1_samples=args.samples,
                        budget_s=args.budget, seed=args.seed)
    for line in describe_latency(result):
        print("  " + line)
    return 0


def add_backbone_commands(commands: argparse._SubParsersAction) -> None:
    def backbone_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--backbone", help="backbone name, e.g. resnet20 (default: the dataset's)")
        sub.add_argument("--dataset", help="dataset whose input shape and classes to use (see `dynbench list`)")
        sub.add_argument("--input-shape", help="per-sample input shape instead of --dataset, e.g. 3,32,32 or 256")
        sub.add_argument("--num-classes", type=whole_number(1), help="number of classes instead of --dataset")
        sub.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                         help="backbone option (repeatable), e.g. width=32")
        sub.add_argument("--data-root", help="datasets folder (default $DYNBENCH_DATA, else ./data)")

    sub = commands.add_parser("macs", help="print a backbone's per-block MAC table (fvcore)",
                              description="Count a backbone with fvcore: parameters, per-block shortcut and residual-"
                                          "branch MACs (the unit a block gate skips), stem, head, total.")
    backbone_args(sub)
    sub.add_argument("--gate", choices=["block", "channel"], help="print the unit table with every block gated this way")
    sub.set_defaults(func=cmd_macs)

    sub = commands.add_parser("latency", help="time dense vs really-skipping inference with random gates",
                              description="Wrap every block with random gates at --keep-rate and time real skipping "
                                          "against the dense backbone at batch 1 and --batch-size (the boards' protocol: "
                                          "paired rounds, median and 95 %% CI of the saving, all-on and all-off probes).")
    backbone_args(sub)
    sub.add_argument("--gate", choices=["block", "channel"], default="block", help="gate whole blocks or channels")
    sub.add_argument("--keep-rate", type=number(0.0, 1.0), default=0.5, help="probability that a unit runs (default 0.5)")
    sub.add_argument("--batch-size", type=whole_number(2), default=64, help="the batched pass's size (default 64)")
    sub.add_argument("--samples", type=whole_number(1), default=16, help="samples timed one by one at batch 1 (default 16)")
    sub.add_argument("--threads", type=whole_number(1), default=1, help="intra-op threads (default 1)")
    sub.add_argument("--budget", type=number(0.0, 600.0), default=5.0,
                     help="seconds of timed rounds per batch size (default 5; more rounds, narrower CIs)")
    sub.add_argument("--seed", type=whole_number(0), default=0, help="seed of inputs and gate draws (default 0)")
    sub.set_defaults(func=cmd_latency)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plugin_path:  # through the environment, so suite worker processes find the same plugins
        named = [str(Path(p).resolve()) for p in args.plugin_path]
        os.environ[registry.PLUGIN_PATH_ENV] = os.pathsep.join(named + [p for p in os.environ.get(
            registry.PLUGIN_PATH_ENV, "").split(os.pathsep) if p])
        registry.discover(force=True)  # in case something was discovered before (main() called in-process)
    try:
        return args.func(args)
    except DynBenchError as exc:
        print(f"dynbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dynbench: interrupted: the unfinished run wrote no record (its last completed epoch is kept); "
              "completed runs are kept. Run the same command again to resume.", file=sys.stderr)
        return 130
