"""Batch-1 latency in both forms the timing protocol knows: eager PyTorch paths and TorchScript programs
(`bench.measure.execution.batch1_program`), with the boards' protocol (`time_model`, one thread), for each
method's untrained ResNet-20 at CIFAR-10 input and ResNet-56 with random gates at rate 0.5. Untrained gates
decide differently from trained ones; what this isolates is the cost of the execution form: all-on overhead
(every gate forced on vs dense) and the dense time itself. `--slices` times instead what a channel mask can
save at batch 1 at best: a ResNet-20 block's convolution pair with its hidden channels sliced to a fraction
(the weights' kept rows and columns), against the full pair, per stage and memory format.

    .venv/bin/python scripts/batch1_forms.py [--out results/latency_study/batch1_forms.json] [--budget 8]
    .venv/bin/python scripts/batch1_forms.py --slices [--out results/latency_study/batch1_slices.json]

Run it on a quiet machine (nothing else on the cores): it prints one line per method and form.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.measure.latency as latency  # noqa: E402
from bench import registry  # noqa: E402
from bench.backbones import build_backbone  # noqa: E402
from bench.measure.latency import random_gated, time_model  # noqa: E402
from bench.records import hardware_info  # noqa: E402

ENTRIES = ["convnet_aig", "skipnet", "cosinegate:realizable", "random_gate", "batch_shaping", "midl", "midl:zero",
           "random_gate@resnet56"]


def model_of(entry: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if entry == "random_gate@resnet56":
        return random_gated(build_backbone("resnet56", (3, 32, 32), 10), "block", keep_rate=0.5)
    name, _, preset = entry.partition(":")
    return registry.get_method(name)(preset or "default").build(build_backbone("resnet20", (3, 32, 32), 10))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="JSON file (default results/latency_study/batch1_forms.json, or "
                                          "batch1_slices.json with --slices)")
    parser.add_argument("--slices", action="store_true", help="time sliced convolution pairs instead")
    parser.add_argument("--entries", nargs="+", default=ENTRIES, help=f"models to time (default: {' '.join(ENTRIES)})")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of rounds per method and form")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "results/latency_study" / ("batch1_slices.json" if args.slices else "batch1_forms.json"))
    rows = sliced_pairs() if args.slices else forms(args.entries, args.budget)
    out.write_text(json.dumps({"hardware": {**hardware_info(torch.device("cpu")), "cpu_model": latency.cpu_model()},
                               "torch": torch.__version__, "rows": rows}, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def forms(entries: list[str], budget: float) -> dict[str, dict]:
    programs = latency.batch1_programs
    inputs = torch.randn(128, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = {}
    for entry in entries:
        model = model_of(entry)
        for form, build in (("eager", lambda *_: None), ("program", programs)):
            latency.batch1_programs = build  # "eager" times the eager paths even where a program would hold
            batch = time_model(model, inputs, batch_sizes=(1,), threads=1, budget_s=budget)["batches"]["1"]
            rows[f"{entry} {form}"] = batch
            print(f"{entry:22s} {form:8s} timed {batch['path']:11s} dense p50 {1e3 * batch['dense']['p50']:.3f} ms, "
                  f"all-on overhead {100 * batch['all_on_overhead']:5.1f} % [{100 * batch['all_on_overhead_ci'][0]:.1f}, "
                  f"{100 * batch['all_on_overhead_ci'][1]:.1f}], saving {100 * batch['saving']:6.1f} % of MACs "
                  f"{100 * batch['mac_saving']:.1f} %", flush=True)
    latency.batch1_programs = programs
    return rows


def sliced_pairs(fractions: tuple[float, ...] = (0.75, 0.5, 0.25), calls: int = 300) -> dict[str, dict]:
    """Median µs of conv3×3 → ReLU → conv3×3 at batch 1 (ResNet-20's three stages), full and with the hidden
    channels sliced to each fraction, NCHW and channels-last."""
    def median_us(run) -> float:  # noqa: ANN001
        for _ in range(20):
            run()
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - started)
        return 1e6 * statistics.median(seconds)

    rows = {}
    generator = torch.Generator().manual_seed(0)
    for channels, size in ((16, 32), (32, 16), (64, 8)):
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(1, channels, size, size, generator=generator).contiguous(memory_format=layout)
            w1, w2 = (torch.randn(channels, channels, 3, 3, generator=generator).contiguous(memory_format=layout)
                      for _ in range(2))
            bias = torch.randn(channels, generator=generator)
            full = median_us(lambda: F.conv2d(torch.relu(F.conv2d(x, w1, bias, 1, 1)), w2, bias, 1, 1))
            row = {"full_us": full}
            for fraction in fractions:
                kept = torch.arange(int(channels * fraction))
                row[str(fraction)] = median_us(lambda: F.conv2d(
                    torch.relu(F.conv2d(x, w1.index_select(0, kept), bias.index_select(0, kept), 1, 1)),
                    w2.index_select(1, kept), bias, 1, 1)) / full
            name = f"{channels} channels {size}x{size} {'channels-last' if layout == torch.channels_last else 'NCHW'}"
            rows[name] = row
            print(f"{name}: full {full:.0f} µs; sliced / full: "
                  + ", ".join(f"{f}: {row[str(f)]:.2f}" for f in fractions), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
