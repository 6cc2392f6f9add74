"""Realized latency: how long a gated model takes beside its dense copy, really skipping (design.md,
"Counting and timing rules").

`time_model` is the protocol every latency figure of the boards comes from (see its docstring): batch 1
and batched, paired rounds in rotating order with the dense copy, gates forced on and off and a fixed
anchor network, medians with order-statistics CIs, threads fixed. The execution paths it times live in
`bench.measure.execution`; `bench.timing` runs it on kept models after training.
"""
from __future__ import annotations

import contextlib
import copy
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone
from bench.gating.gates import GateTrace, RandomGate
from bench.measure.macs import MacSummary, count_macs, unit_table
from bench.gating.pruning import width_of
from bench.gating.wrappers import BlockGate, ChannelGate, dense_copy, gated_units, gates_forced, wrap_blocks
from bench.measure.execution import batch1_program, compiled_gates, execution, fold_batchnorm, same_as_eager
from bench.records import hardware_info


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """Run with `threads` intra-op threads (None: keep the current setting); yields the count in force."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(passes: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        device: torch.device = torch.device("cpu"), before: Callable[[], None] | None = None
                        ) -> dict[str, float]:
    """Median seconds of each pass, alternating the passes every repeat so drift hits all alike (machine
    throughput and train steps; latency uses `time_model`). `before` runs untimed ahead of every pass."""
    times: dict[str, list[float]] = {name: [] for name in passes}
    for r in range(warmup + repeats):
        for name, run in passes.items():
            if before is not None:
                before()
            _sync(device)
            started = time.perf_counter()
            run()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def random_gated(backbone: Backbone, kind: str = "block", keep_rate: float = 0.5) -> Backbone:
    """Wrap every block of `backbone` with input-independent Bernoulli(keep_rate) gates: whole blocks
    (`block`) or the channels of `first` (`channel`). For latency runs and the random-gate control."""
    if kind == "block":
        return wrap_blocks(backbone, lambda name, block: BlockGate(block, RandomGate(keep_rate), name))
    if kind == "channel":
        return wrap_blocks(backbone, lambda name, block: ChannelGate(block, RandomGate(keep_rate, width_of(block.first)), name))
    raise DynBenchError(f"unknown gate kind '{kind}': choose block or channel")


# ---- the board's protocol: paired rounds, a CI on the saving, all-on / all-off probes, a dense anchor ----

ANCHOR = ("resnet8", (3, 32, 32), 10)  # the fixed dense network every figure is timed beside (seeded weights)
ANCHOR_BATCH = 16  # the anchor runs at most this many samples per pass: it calibrates, it must not dominate
CONFIDENCE = 0.95


def median_ci(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Median and its distribution-free confidence interval (order statistics of a Binomial(n, 1/2)):
    (median, low, high). Needs no assumption on the shape of timing noise, which has a long right tail."""
    from scipy.stats import binom

    ordered = sorted(values)
    n = len(ordered)
    if n < 6:  # fewer rounds than the smallest 95 % interval needs: no interval
        return statistics.median(ordered), float("nan"), float("nan")
    low = max(int(binom.ppf((1 - confidence) / 2, n, 0.5)) - 1, 0)
    return statistics.median(ordered), ordered[low], ordered[n - 1 - low]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def anchor_network(device: torch.device) -> nn.Module:
    from bench.backbones import build_backbone

    name, in_shape, classes = ANCHOR
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_backbone(name, in_shape, classes).eval().to(device)


def timed_rounds(passes: dict[str, Callable[[], list[float]]], min_rounds: int, max_rounds: int, budget_s: float,
                 warmup: int, enough: Callable[[dict[str, list[list[float]]]], bool],
                 device: torch.device = torch.device("cpu"), before: Callable[[], None] | None = None
                 ) -> dict[str, list[list[float]]]:
    """Rounds of every pass, the order rotating each round so that drift and caches hit all alike. A pass
    returns its per-sample seconds. Stops after `min_rounds` once `enough(times)` holds, or at `max_rounds`
    or `budget_s`. Returns, per pass, one list of per-sample seconds per timed round."""
    names = list(passes)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    started = time.perf_counter()
    for r in range(warmup + max_rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if before is not None:
                before()
            _sync(device)
            seconds = passes[name]()
            if r >= warmup:
                times[name].append(seconds)
        timed = r + 1 - warmup
        if timed >= min_rounds and (enough(times) or time.perf_counter() - started > budget_s):
            break
    return times


def _per_sample_pass(model: nn.Module, samples: list[torch.Tensor], device: torch.device) -> Callable[[], list[float]]:
    if device.type == "cuda":  # CUDA events time the kernels on the device's own clock
        def run_cuda() -> list[float]:
            seconds = []
            for x in samples:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                end.synchronize()
                seconds.append(start.elapsed_time(end) / 1e3)
            return seconds
        return run_cuda

    def run() -> list[float]:
        seconds = []
        for x in samples:
            started = time.perf_counter()
            model(x)
            _sync(device)
            seconds.append(time.perf_counter() - started)
        return seconds
    return run


def _summary(rounds: list[list[float]], per_pass: int) -> dict[str, float]:
    """p50 / p95 of one forward pass (seconds; at batch 1, one sample) over every timed pass."""
    flat = [s for round_ in rounds for s in round_]
    return {"p50": statistics.median(flat), "p95": percentile(flat, 0.95), "samples_per_pass": per_pass}


def _paired(numerator: list[list[float]], denominator: list[list[float]]) -> list[float]:
    return [sum(a) / sum(b) for a, b in zip(numerator, denominator)]


@torch.no_grad()
def time_model(model: nn.Module, inputs: torch.Tensor, batch_sizes: tuple[int, ...] = (1, 128), threads: int = 1,
               b1_samples: int = 16, min_rounds: int = 12, max_rounds: int = 120, budget_s: float = 20.0,
               target_halfwidth: float = 0.01, warmup: int = 2, seed: int = 0) -> dict[str, Any]:
    """The board's latency of a gated `model` on `inputs` (on their device), per batch size.

    Timed is a copy with batch norms folded into the layers before them and, for images, channels-last
    memory, for the dense and the gated model alike; the gates run as TorchScript traces where those decide
    exactly as the trained gates (`compiled_gates`; `traced_gates` names the units whose gate ran traced, per
    batch size). At batch 1 a gated model and its dense copy run as TorchScript programs where the program
    decides and computes as the eager path (`batch1_programs`; `path` says which form was timed).

    Each round times, in rotating order: the dense copy, the model as trained (really skipping), the model
    with every gate forced on (its overhead over dense) and forced off (does time fall when units are
    skipped?), and the fixed anchor network (for comparing machines). Batch 1 runs `b1_samples` inputs one
    by one, each timed; a batch of b runs the first b inputs once. Saving = 1 − dynamic / dense, paired per
    round; its median and 95 % CI (order statistics). Rounds go on until the CI is ±`target_halfwidth`
    or the budget is spent."""
    device = inputs.device
    # timed: a copy with batch norms folded, images in channels-last, for the dense and the gated model alike
    model = fold_batchnorm(copy.deepcopy(model).eval())
    dense = dense_copy(model).eval()
    if inputs.dim() == 4 and inputs.is_floating_point():
        model, dense = model.to(memory_format=torch.channels_last), dense.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    anchor = anchor_network(device).to(memory_format=torch.channels_last)
    counted: dict[str, Any] = {}
    results: dict[str, Any] = {"device": str(device), "threads": None, "batches": {}, "anchor": ANCHOR[0],
                               "unit_kinds": sorted({unit.kind for unit in gated_units(model)})}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), fixed_threads(threads) as used:
        results["threads"] = used if device.type == "cpu" else None
        for batch_size in batch_sizes:
            samples = [inputs[i:i + 1] for i in range(min(b1_samples, len(inputs)))] if batch_size == 1 \
                else [inputs[:batch_size]]
            if batch_size > 1 and len(inputs) < batch_size:
                raise DynBenchError(f"batch {batch_size} needs {batch_size} inputs, got {len(inputs)}")
            anchor_samples = [anchor_network_input(x[:ANCHOR_BATCH], device) for x in samples]
            macs = _macs_of(model, dense, samples, seed, counted)
            computes_skipped = _computes_skipped_units(model, samples[0])
            programs = batch1_programs(model, dense, samples, seed) if batch_size == 1 else None
            with compiled_gates(model, samples) as gates, execution(model, "skip"), torch.inference_mode():
                def dynamic_pass(value: float | None) -> Callable[[], list[float]]:
                    if programs is not None:  # the gated program, its gates forced to `value` (-1: as trained)
                        return _per_sample_pass(lambda x: programs[0](x, -1.0 if value is None else value), samples, device)

                    def run() -> list[float]:
                        if value is None:
                            return _per_sample_pass(model, samples, device)()
                        with gates_forced(model, value):
                            return _per_sample_pass(model, samples, device)()
                    return run

                dense_pass = dense if programs is None else (lambda x: programs[1](x, -1.0))
                passes = {"dense": _per_sample_pass(dense_pass, samples, device), "dynamic": dynamic_pass(None),
                          "all_on": dynamic_pass(1.0), "all_off": dynamic_pass(0.0),
                          "anchor": _per_sample_pass(anchor, anchor_samples, device)}

                def enough(times: dict[str, list[list[float]]]) -> bool:
                    _, low, high = median_ci(_paired(times["dynamic"], times["dense"]))
                    return high - low <= 2 * target_halfwidth

                times = timed_rounds(passes, min_rounds, max_rounds, budget_s, warmup, enough, device,
                                     before=lambda: torch.manual_seed(seed))
            traced = [unit.name for unit in gated_units(model)] if programs is not None else gates.traced
            results["batches"][str(batch_size)] = {**_batch_result(batch_size, len(samples), times, macs, computes_skipped),
                                                   "path": "torchscript" if programs is not None else "eager",
                                                   "compiled_gates": gates.checked or programs is not None,
                                                   "traced_gates": traced}
    return results


def batch1_programs(model: nn.Module, dense: nn.Module, samples: list[torch.Tensor], seed: int
                    ) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule] | None:
    """The gated model and its dense copy as TorchScript programs (`bench.measure.execution.batch1_program`),
    timed in place of the eager paths at batch 1 when both build and each decides and computes as its eager
    path on `samples`; None keeps both eager, so that the two are always timed in one form."""
    gated_program, dense_program = batch1_program(model, samples[0]), batch1_program(dense, samples[0])
    if gated_program is None or dense_program is None or not same_as_eager(gated_program, model, samples, seed) \
            or not same_as_eager(dense_program, dense, samples, seed):
        return None
    return gated_program, dense_program


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux, where `platform.processor()` is empty), else
    `platform.processor()`, else "unknown"."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or "unknown")


def timing_hardware(device: torch.device) -> dict[str, Any]:
    """`hardware_info` with the CPU model: two CPUs of one architecture time differently."""
    return {**hardware_info(device), "cpu_model": cpu_model()}


def anchor_network_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fixed CIFAR-shaped input batch of the same size as `x` for the anchor."""
    generator = torch.Generator().manual_seed(len(x))
    shaped = torch.randn(len(x), *ANCHOR[1], generator=generator).to(device)
    return shaped.contiguous(memory_format=torch.channels_last)


def _macs_of(model: nn.Module, dense: nn.Module, samples: list[torch.Tensor], seed: int,
             counted: dict[str, Any]) -> dict[str, float]:
    """Executed-MAC savings of the timed samples: as trained, and with every gate forced off (vs forced on).
    fvcore counts the model once per timing (`counted` keeps the dense count and the unit table)."""
    traces = {}
    for name, forced in (("dynamic", None), ("all_off", 0.0)):
        torch.manual_seed(seed)
        with GateTrace.recording() as trace, (gates_forced(model, forced) if forced is not None else contextlib.nullcontext()):
            for x in samples:
                model(x)
        traces[name] = trace
    if not counted:
        device, example = samples[0].device, samples[0][:1].cpu()
        counted["dense"], counted["table"] = count_macs(dense.cpu(), example), unit_table(model.cpu(), example)
        model.to(device)
        dense.to(device)
    return {name: MacSummary.from_samples(counted["dense"], counted["table"].per_sample(trace)).saving
            for name, trace in traces.items()}


def _computes_skipped_units(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the really-skipping path still runs a unit's scaled modules (its branch, its channels' layers)
    when every gate is off: masked execution, the trap of computing everything and multiplying by 0."""
    calls = []
    hooks = [module.register_forward_hook(lambda *_: calls.append(1))
             for unit in gated_units(model) for module in unit.unit().scaled]
    try:
        with execution(model, "skip"), gates_forced(model, 0.0), torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return bool(calls)


def _batch_result(batch_size: int, per_pass: int, times: dict[str, list[list[float]]], macs: dict[str, float],
                  computes_skipped: bool) -> dict[str, Any]:
    rounds = len(times["dense"])
    ratio, low, high = median_ci(_paired(times["dynamic"], times["dense"]))
    on, on_low, on_high = median_ci(_paired(times["all_on"], times["dense"]))
    off, off_low, off_high = median_ci(_paired(times["all_off"], times["all_on"]))
    # what skipping every unit saves in MACs relative to all-on: the probe of real skipping
    off_mac_saving = macs["all_off"]
    off_saving = 1 - off
    return {
        "batch_size": batch_size, "rounds": rounds,
        **{name: _summary(values, per_pass) for name, values in times.items()},
        "saving": 1 - ratio, "saving_ci": [1 - high, 1 - low],
        "mac_saving": macs["dynamic"],
        "realized": (1 - ratio) / macs["dynamic"] if macs["dynamic"] > 0 else float("nan"),
        "realized_ci": ([(1 - high) / macs["dynamic"], (1 - low) / macs["dynamic"]] if macs["dynamic"] > 0
                        else [float("nan"), float("nan")]),
        "all_on_overhead": on - 1, "all_on_overhead_ci": [on_low - 1, on_high - 1],
        "all_off_saving": off_saving, "all_off_saving_ci": [1 - off_high, 1 - off_low],
        "all_off_mac_saving": off_mac_saving,
        # real skipping: with every gate off, no unit's scaled modules run and executed MACs fall
        "skips_for_real": bool(off_mac_saving > 0 and not computes_skipped),
        # and time falls with them: skipping every unit saves at least a fifth of the MACs it removes
        "time_falls": bool(off_mac_saving > 0 and (1 - off_high) >= 0.2 * off_mac_saving),
        "anchor_ratio": statistics.median(_paired(times["dynamic"], times["anchor"])),
    }


LATENCY_SAMPLES = 128  # test inputs a timing reads: batch 128 runs them all, batch 1 the first `b1_samples`


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def describe_latency(latency: dict[str, Any]) -> list[str]:
    """Lines for a terminal: per batch size, the saving with its CI beside the MAC saving, the all-on
    overhead and whether skipping every unit really saves time."""
    lines = []
    for key, batch in latency["batches"].items():
        threads = f", {latency['threads']} thread(s)" if latency.get("threads") else ""
        lines.append(f"batch {key} on {latency['device']}{threads}, {batch['rounds']} paired rounds: dense p50 "
                     f"{1e3 * batch['dense']['p50']:.3f} ms, dynamic p50 {1e3 * batch['dynamic']['p50']:.3f} / p95 "
                     f"{1e3 * batch['dynamic']['p95']:.3f} ms; latency saving {_pct(batch['saving'])} % "
                     f"[{_pct(batch['saving_ci'][0])}, {_pct(batch['saving_ci'][1])}] vs MAC saving "
                     f"{_pct(batch['mac_saving'])} %; all-on overhead {_pct(batch['all_on_overhead'])} %; "
                     + ("skips for real" if batch["skips_for_real"] else "MASKED EXECUTION: no real skipping"))
    return lines
