"""Where a gated model's time goes: torch.profiler's top operators of the dense copy and of the model
really skipping, prepared as the timing pass prepares them (batch norms folded, channels-last images,
traced gates), for one kept model.

    python scripts/latency_profile.py results/latency_study 1a2b3c4d --batch 128 [--rows 12]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.data import resolve_data_root  # noqa: E402
from bench.evaluate import find_record, rebuild  # noqa: E402
from bench.gating.wrappers import dense_copy  # noqa: E402
from bench.measure.execution import compiled_gates, execution, fold_batchnorm  # noqa: E402
from bench.records import load_record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("record", help="spec hash (or prefix) or record path")
    parser.add_argument("--batch", type=int, default=128, help="1 (16 inputs one by one) or a batch size")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path, results = find_record(args.record, args.results)
    record = load_record(path)
    rebuilt = rebuild(record, results, resolve_data_root(None), torch.device("cpu"))
    model = fold_batchnorm(copy.deepcopy(rebuilt.model).eval())
    inputs = rebuilt.pipeline(rebuilt.test.x[:max(args.batch, 16)])
    if inputs.dim() == 4:
        model, inputs = model.to(memory_format=torch.channels_last), inputs.contiguous(memory_format=torch.channels_last)
    dense = dense_copy(model)
    samples = [inputs[i:i + 1] for i in range(16)] if args.batch == 1 else [inputs[:args.batch]]
    print(f"{record.run_spec.label}, batch {args.batch}, 1 thread, {args.repeats} passes")
    for name, module in (("dense", dense), ("dynamic", model)):
        with compiled_gates(model, samples), execution(model, "skip"), torch.inference_mode():
            for x in samples:  # warm-up
                module(x)
            with torch.profiler.profile() as profile:
                for _ in range(args.repeats):
                    for x in samples:
                        module(x)
        print(f"\n{name}:")
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
