"""Dense ResNet-20 training and evaluation throughput on this machine, against its own matmul ceilings
(issue 17, "Speed first"); each gating method's train step relative to dense.

CIFAR-10-shaped synthetic inputs (3x32x32, 10 classes; throughput does not depend on pixel values),
SGD batch 128. Ceilings: a 2048x2048 matrix product in fp32 and bf16, same process, same threads.
Rows: fp32 and bf16-autocast train steps (interleaved), optionally `torch.compile`d (reported as failed when it does
not work here); eval at batches 512 and 1024; two 1-thread worker processes vs one 2-thread process;
each method's train step / dense (target <= 1.3x). Medians after warm-up; timings on a loaded machine
are noise. Default run: a few minutes on 2 cores; --steps/--warmup make it longer.

    .venv/bin/python scripts/throughput.py --out throughput.json
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path

import torch

from bench import DynBenchError, registry
from bench.backbones import build_backbone
from bench.measure.latency import fixed_threads, interleaved_medians
from bench.measure.throughput import (Throughput, eval_throughput, make_train_step, matmul_ceiling,
                              parallel_train_throughput, synthetic_batch, train_step_throughput,
                              train_step_throughputs)

INPUT_SHAPE, NUM_CLASSES, BACKBONE = (3, 32, 32), 10, "resnet20"
METHODS = {"convnet_aig": "default", "skipnet": "default", "cosinegate": "realizable", "batch_shaping": "default",
           "midl": "default", "random_gate": "default"}  # method -> preset
STEP_RATIO_TARGET = 1.3


def dense_resnet20(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(BACKBONE, INPUT_SHAPE, NUM_CLASSES)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the one-process rows")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch")
    parser.add_argument("--eval-batches", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--ceiling-size", type=int, default=2048)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd train steps")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help="gating methods to compare (none: skip)")
    parser.add_argument("--no-workers", action="store_true", help="skip the two-worker comparison")
    return parser.parse_args(argv)


def train_row(result: Throughput, ceilings: dict[str, float]) -> dict[str, object]:
    return {**result.to_dict(), **{f"fraction_of_{name}_ceiling": result.macs_per_second / rate
                                   for name, rate in ceilings.items()}}


def compiled_train_rows(args: argparse.Namespace, ceilings: dict[str, float]) -> list[dict[str, object]]:
    """torch.compile'd train steps; a failure becomes a row that says so instead of stopping the script."""
    rows = []
    for label, dtype in (("train fp32 compiled", None), ("train bf16 compiled", torch.bfloat16)):
        try:
            result = train_step_throughput(dense_resnet20(), INPUT_SHAPE, NUM_CLASSES, args.batch_size, args.steps,
                                           args.warmup, args.threads, dtype, compile_model=True, label=label)
            rows.append(train_row(result, ceilings))
        except Exception as error:  # noqa: BLE001 - any compiler failure means "unsupported here"
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            rows.append({"label": label, "failed": f"{type(error).__name__}: {first_line}"})
    return rows


def method_ratios(args: argparse.Namespace) -> list[dict[str, object]]:
    """Each method's train step / dense, the two steps interleaved (same threads, batch, fp32)."""
    registry.discover()
    inputs, targets = synthetic_batch(INPUT_SHAPE, NUM_CLASSES, args.batch_size)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    rows = []
    for name in args.methods:
        try:
            method = registry.get_method(name)(METHODS.get(name, "default"))
            dense = dense_resnet20().to(memory_format=torch.channels_last)
            gated = method.build(copy.deepcopy(dense)).to(memory_format=torch.channels_last)
            steps = {"dense": make_train_step(dense, inputs, targets), name: make_train_step(gated, inputs, targets, method)}
            with fixed_threads(args.threads):
                medians = interleaved_medians(steps, args.steps, args.warmup)
        except Exception as error:  # noqa: BLE001 - one broken method must not hide the others
            rows.append({"method": name, "failed": f"{type(error).__name__}: {str(error)[:200]}"})
            continue
        ratio = medians[name] / medians["dense"]
        rows.append({"method": name, "preset": method.preset, "dense_seconds": medians["dense"],
                     "method_seconds": medians[name], "step_ratio": ratio, "target": STEP_RATIO_TARGET,
                     "meets_target": ratio <= STEP_RATIO_TARGET})
    return rows


def workers_row(args: argparse.Namespace, one_process: Throughput) -> dict[str, object]:
    workers = parallel_train_throughput(functools.partial(dense_resnet20), INPUT_SHAPE, NUM_CLASSES, workers=2,
                                        threads_per_worker=1, batch_size=args.batch_size, steps=args.steps,
                                        warmup=args.warmup)
    aggregate = sum(w["images_per_second"] for w in workers)
    return {"two_1thread_workers_images_per_second": aggregate,
            "per_worker_images_per_second": [w["images_per_second"] for w in workers],
            "one_process_images_per_second": one_process.images_per_second,
            "workers_over_one_process": aggregate / one_process.images_per_second}


def measure(args: argparse.Namespace) -> dict[str, object]:
    ceilings = {"fp32": matmul_ceiling(torch.float32, args.ceiling_size, args.threads),
                "bf16": matmul_ceiling(torch.bfloat16, args.ceiling_size, args.threads)}
    precisions = {"train fp32": None, "train bf16 autocast": torch.bfloat16}
    train = train_step_throughputs({label: dense_resnet20() for label in precisions}, INPUT_SHAPE, NUM_CLASSES,
                                   args.batch_size, args.steps, args.warmup, args.threads, precisions)
    train_rows = [train_row(result, ceilings) for result in train]
    if args.compile:
        train_rows += compiled_train_rows(args, ceilings)
    eval_rows = [train_row(eval_throughput(dense_resnet20(), INPUT_SHAPE, batch, max(3, args.steps // 2),
                                           max(1, args.warmup // 2), args.threads, label=f"eval fp32 batch {batch}"),
                           ceilings) for batch in args.eval_batches]
    return {"backbone": BACKBONE, "input": "synthetic CIFAR-10-shaped (3x32x32, 10 classes)",
            "threads": args.threads, "batch_size": args.batch_size, "torch": torch.__version__,
            "ceilings_macs_per_second": ceilings, "train": train_rows, "eval": eval_rows,
            "workers": None if args.no_workers else workers_row(args, train[0]),
            "methods": method_ratios(args) if args.methods else []}


def format_table(table: dict[str, object]) -> str:
    ceilings = table["ceilings_macs_per_second"]
    lines = [f"{table['backbone']}, {table['input']}, {table['threads']} threads, torch {table['torch']}",
             f"matmul ceiling: fp32 {ceilings['fp32'] / 1e9:.1f} G MAC/s, bf16 {ceilings['bf16'] / 1e9:.1f} G MAC/s",
             f"{'configuration':<24} {'batch':>5} {'s/step':>8} {'images/s':>9} {'G MAC/s':>8} {'of fp32':>8} {'of bf16':>8}"]
    for row in table["train"] + table["eval"]:
        if "failed" in row:
            lines.append(f"{row['label']:<24} failed: {row['failed']}")
            continue
        lines.append(f"{row['label']:<24} {row['batch_size']:>5} {row['seconds_per_step']:>8.3f} "
                     f"{row['images_per_second']:>9.1f} {row['macs_per_second'] / 1e9:>8.1f} "
                     f"{100 * row['fraction_of_fp32_ceiling']:>7.1f}% {100 * row['fraction_of_bf16_ceiling']:>7.1f}%")
    workers = table["workers"]
    if workers:
        lines.append(f"two 1-thread workers: {workers['two_1thread_workers_images_per_second']:.1f} images/s in all vs "
                     f"one {table['threads']}-thread process {workers['one_process_images_per_second']:.1f}"
                     f" ({workers['workers_over_one_process']:.2f}x)")
    for row in table["methods"]:
        if "failed" in row:
            lines.append(f"{row['method']:<14} failed: {row['failed']}")
        else:
            lines.append(f"{row['method']:<14} ({row['preset']}) train step {row['step_ratio']:.2f}x dense "
                         f"(target <= {row['target']}x: {'met' if row['meets_target'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        table = measure(args)
    except DynBenchError as error:
        print(f"dynbench: error: {error}", file=sys.stderr)
        return 2
    print(format_table(table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
