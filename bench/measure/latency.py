"""Real-skipping inference timing (design.md, "Counting and timing rules").

Modes: `masked` = compute every unit then multiply (never faster than dense: not a speed figure),
`skip-b1` = batch size 1 with real per-block branches / sliced channels, `gather` = batched, per block
the samples whose gate is on are gathered, run and scattered back (channel gates: samples grouped by
mask). Each figure is a median over repeats after warm-up, with dense and dynamic passes interleaved,
threads fixed, and states its mode, device, threads and batch size; realized latency saving is
reported beside the MAC saving of the same inputs.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench import DynBenchError
from bench.backbones.base import Backbone
from bench.gating.gates import GateTrace, RandomGate
from bench.measure.macs import count_macs, executed_macs
from bench.gating.pruning import width_of
from bench.gating.wrappers import BlockGate, ChannelGate, dense_copy, execution, wrap_blocks

MODES = {"masked": "masked", "skip-b1": "skip", "gather": "skip"}  # mode -> wrapper execution


@dataclass(frozen=True)
class LatencyReport:
    """Dense vs dynamic wall time of one forward pass (seconds, median over `repeats`)."""

    mode: str
    device: str
    threads: int
    batch_size: int  # samples per forward pass (1 in skip-b1)
    repeats: int
    dense_seconds: float
    dynamic_seconds: float
    mac_saving: float  # fraction 0-1 of dense MACs saved on the timed samples

    @property
    def latency_saving(self) -> float:
        """Fraction (0-1) of dense wall time saved."""
        return 1.0 - self.dynamic_seconds / self.dense_seconds

    @property
    def realized_fraction(self) -> float:
        """Latency saving / MAC saving: 1.0 = every saved MAC turned into saved time."""
        return self.latency_saving / self.mac_saving if self.mac_saving else float("nan")

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "latency_saving": self.latency_saving}

    def format(self) -> str:
        return (f"{self.mode:<8} batch {self.batch_size:<4} {self.device} {self.threads} thread(s): dense "
                f"{1e3 * self.dense_seconds:9.3f} ms, dynamic {1e3 * self.dynamic_seconds:9.3f} ms per pass; latency "
                f"saving {100 * self.latency_saving:6.1f} % vs MAC saving {100 * self.mac_saving:6.1f} % "
                f"(median of {self.repeats})")


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
    """Median seconds of each pass, alternating the passes every repeat so drift hits all alike.
    `before` runs untimed ahead of every pass (e.g. reseeding random gates)."""
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


@torch.no_grad()
def measure_latency(model: nn.Module, inputs: torch.Tensor, mode: str = "gather", repeats: int = 3, warmup: int = 1,
                    threads: int | None = None, max_samples_b1: int = 8, seed: int = 0) -> LatencyReport:
    """Time `model` (with gated wrappers) against its dense copy on `inputs` in `mode`.

    `gather` and `masked` time one pass over the whole batch; `skip-b1` times one sample per pass over
    the first `max_samples_b1` samples. Gate randomness is reseeded (`seed`) before every pass, so every
    pass and the MAC count see the same decisions. Cheap by default (3 repeats, 1 warm-up).
    """
    if mode not in MODES:
        raise DynBenchError(f"unknown latency mode '{mode}': choose one of {', '.join(MODES)}")
    if repeats < 1 or warmup < 0:
        raise DynBenchError(f"repeats must be >= 1 and warmup >= 0, not {repeats}, {warmup}")
    batches = [inputs[i:i + 1] for i in range(min(len(inputs), max_samples_b1))] if mode == "skip-b1" else [inputs]
    was_training = model.training
    model.eval()
    dense = dense_copy(model).eval()
    device = inputs.device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), fixed_threads(threads) as used:
            torch.manual_seed(seed)
            with GateTrace.recording() as trace:
                for batch in batches:
                    model(batch)
            example = inputs[:1].cpu()  # fvcore counts on CPU
            macs = executed_macs(model.cpu(), example, trace, count_macs(dense.cpu(), example))
            model.to(device)
            dense.to(device)
            with execution(model, MODES[mode]), torch.inference_mode():  # least per-op overhead, for dense and dynamic alike
                medians = interleaved_medians({"dense": lambda: [dense(b) for b in batches],
                                               "dynamic": lambda: [model(b) for b in batches]},
                                              repeats, warmup, device, before=lambda: torch.manual_seed(seed))
    finally:
        model.train(was_training)
    per_pass = len(batches)
    return LatencyReport(mode, str(device), used, len(batches[0]), repeats, medians["dense"] / per_pass,
                         medians["dynamic"] / per_pass, macs.saving)


def random_gated(backbone: Backbone, kind: str = "block", keep_rate: float = 0.5) -> Backbone:
    """Wrap every block of `backbone` with input-independent Bernoulli(keep_rate) gates: whole blocks
    (`block`) or the channels of `first` (`channel`). For latency runs and the random-gate control."""
    if kind == "block":
        return wrap_blocks(backbone, lambda name, block: BlockGate(block, RandomGate(keep_rate), name))
    if kind == "channel":
        return wrap_blocks(backbone, lambda name, block: ChannelGate(block, RandomGate(keep_rate, width_of(block.first)), name))
    raise DynBenchError(f"unknown gate kind '{kind}': choose block or channel")
