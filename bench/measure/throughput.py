"""Training and evaluation throughput against the machine's own matrix-multiply ceiling (issue 17, "Speed first").

Figures are images/s and executed multiply-accumulates/s (MACs/s). The ceiling is the MAC rate of one
size x size matrix product in the same dtype, measured in the same process with the same threads, so
`macs_per_second / ceiling` says how much of the physically reachable rate a model step uses. Timings
are medians after warm-up (`bench.measure.latency.interleaved_medians`), threads fixed (`fixed_threads`); inputs
are synthetic (standard-normal images, uniform labels): throughput does not depend on pixel values.
"""
from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench import DynBenchError
from bench.gating.gates import GateTrace
from bench.measure.latency import fixed_threads, interleaved_medians
from bench.measure.macs import count_macs
from bench.method import Method, StepContext
from bench.train import task_loss

TRAIN_MACS_PER_FORWARD = 3  # forward + backward (grad w.r.t. inputs and w.r.t. weights): 3x the forward MACs
NOMINAL_EPOCHS = 10  # the schedule a method's step sees: step 0 of epoch 0 of 10 (SkipNet: its supervised phase)


@dataclass(frozen=True)
class Throughput:
    """Median throughput of one configuration. `macs_per_image` is what one image executes in a step:
    3 x forward MACs for a training step, 1 x for evaluation."""

    label: str
    threads: int
    batch_size: int
    steps: int  # timed steps (after warm-up)
    seconds_per_step: float  # median
    forward_macs_per_image: int
    macs_per_image: int

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.seconds_per_step

    @property
    def macs_per_second(self) -> float:
        return self.images_per_second * self.macs_per_image

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "images_per_second": self.images_per_second, "macs_per_second": self.macs_per_second}


def matmul_ceiling(dtype: torch.dtype = torch.float32, size: int = 2048, threads: int | None = None,
                   repeats: int = 5, warmup: int = 2) -> float:
    """Multiply-accumulates per second of a `size` x `size` matrix product in `dtype` (size**3 MACs per
    product; median of `repeats`): the physical ceiling a model step in that precision can approach."""
    if size < 1 or repeats < 1 or warmup < 0:
        raise DynBenchError(f"size and repeats must be >= 1 and warmup >= 0, not {size}, {repeats}, {warmup}")
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    out = torch.empty(size, size, dtype=dtype)
    with fixed_threads(threads):
        median = interleaved_medians({"matmul": lambda: torch.mm(a, b, out=out)}, repeats, warmup)["matmul"]
    return size ** 3 / median


def synthetic_batch(input_shape: tuple[int, ...], num_classes: int, batch_size: int, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard-normal inputs and uniform labels (throughput does not depend on the values)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, *input_shape, generator=generator),
            torch.randint(0, num_classes, (batch_size,), generator=generator))


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward MACs of one image (`bench.measure.macs.count_macs`; a gated model in training computes every unit
    then multiplies, so this is what it executes in a train step)."""
    return count_macs(model, torch.zeros(1, *input_shape))


def make_train_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, method: Method | None = None,
                    autocast_dtype: torch.dtype | None = None, lr: float = 0.01) -> Callable[[], None]:
    """One full SGD step as `bench.train` runs it: forward under a gate trace, task loss plus the method's
    extra losses, backward, optimizer step; forward and losses under CPU autocast when `autocast_dtype`."""
    method = method or Method()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    method.on_epoch_start(model, 0, NOMINAL_EPOCHS)
    steps_per_epoch = 100  # only the methods' schedules read it (ramps); step 0 of it is timed

    def step() -> None:
        with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            with GateTrace.recording() as trace:
                logits = model(inputs)
            per_sample = task_loss(logits, targets, reduction="none")
            context = StepContext(inputs, targets, logits, per_sample, trace, 0, NOMINAL_EPOCHS, 0,
                                  NOMINAL_EPOCHS * steps_per_epoch)
            loss = per_sample.mean() + sum(method.extra_losses(model, context).values(), torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _prepared(model: nn.Module, channels_last: bool) -> nn.Module:
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _check_counts(steps: int, warmup: int, batch_size: int) -> None:
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise DynBenchError(f"steps and batch_size must be >= 1 and warmup >= 0, not {steps}, {batch_size}, {warmup}")


def train_step_throughput(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, batch_size: int = 128,
                          steps: int = 10, warmup: int = 3, threads: int | None = None,
                          autocast_dtype: torch.dtype | None = None, channels_last: bool = True,
                          method: Method | None = None, compile_model: bool = False, label: str = "train"
                          ) -> Throughput:
    """Images/s and executed MACs/s of full SGD training steps (forward + backward + optimizer step) of
    `model` on synthetic batches of `batch_size` (median of `steps` after `warmup`). Training MACs per
    image = 3 x the forward MACs of one input counted by `bench.measure.macs.count_macs` (the backward pass costs
    two forwards); under bf16 autocast the same MACs are counted, run in bf16. `method` adds its extra
    losses as in training; `compile_model` runs the steps through `torch.compile` (MACs are counted on
    the eager model: fvcore cannot trace a compiled one). The model's weights are updated: pass a copy
    if they matter."""
    return train_step_throughputs({label: model}, input_shape, num_classes, batch_size, steps, warmup, threads,
                                  {label: autocast_dtype}, channels_last, method, compile_model)[0]


def train_step_throughputs(models: dict[str, nn.Module], input_shape: tuple[int, ...], num_classes: int,
                           batch_size: int = 128, steps: int = 10, warmup: int = 3, threads: int | None = None,
                           autocast_dtypes: dict[str, torch.dtype | None] | None = None, channels_last: bool = True,
                           method: Method | None = None, compile_model: bool = False) -> list[Throughput]:
    """`train_step_throughput` of several configurations by label (e.g. fp32 and bf16 autocast, each
    with its own model), their steps alternating every repeat so that load drift hits them alike."""
    _check_counts(steps, warmup, batch_size)
    autocast_dtypes = autocast_dtypes or {}
    inputs, targets = synthetic_batch(input_shape, num_classes, batch_size)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    macs, runs = {}, {}
    for label, model in models.items():
        macs[label] = forward_macs(model, input_shape)
        model = _prepared(model, channels_last)
        runs[label] = make_train_step(torch.compile(model) if compile_model else model, inputs, targets, method,
                                      autocast_dtypes.get(label))
    with fixed_threads(threads) as used:
        seconds = interleaved_medians(runs, steps, warmup)
    return [Throughput(label, used, batch_size, steps, seconds[label], macs[label],
                       TRAIN_MACS_PER_FORWARD * macs[label]) for label in models]


def eval_throughput(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 512, steps: int = 5,
                    warmup: int = 2, threads: int | None = None, autocast_dtype: torch.dtype | None = None,
                    channels_last: bool = True, label: str = "eval") -> Throughput:
    """Images/s and MACs/s of eval-mode forward passes (inference mode) on batches of `batch_size`
    (median of `steps` after `warmup`); MACs per image = the forward MACs of `bench.measure.macs.count_macs`."""
    _check_counts(steps, warmup, batch_size)
    macs = forward_macs(model, input_shape)
    model = _prepared(model, channels_last).eval()
    inputs, _ = synthetic_batch(input_shape, 1, batch_size)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16,
                                                     enabled=autocast_dtype is not None):
            model(inputs)
    with fixed_threads(threads) as used:
        seconds = interleaved_medians({label: forward}, steps, warmup)[label]
    return Throughput(label, used, batch_size, steps, seconds, macs, macs)


def _worker(build: Callable[[], nn.Module], input_shape: tuple[int, ...], num_classes: int, batch_size: int,
            steps: int, warmup: int, threads: int, start: multiprocessing.synchronize.Barrier,
            results: multiprocessing.Queue) -> None:
    model = build()
    start.wait()  # every worker times its steps at the same time, so they compete for the cores as in a run
    results.put(train_step_throughput(model, input_shape, num_classes, batch_size, steps, warmup, threads).to_dict())


def parallel_train_throughput(build: Callable[[], nn.Module], input_shape: tuple[int, ...], num_classes: int,
                              workers: int = 2, threads_per_worker: int = 1, batch_size: int = 128,
                              steps: int = 10, warmup: int = 3) -> list[dict[str, float | int | str]]:
    """Train-step throughput of `workers` processes running side by side (`threads_per_worker` threads
    each; `build` must be picklable, e.g. a module-level function or functools.partial). Their
    images/s add up to the aggregate; each entry is one worker's `Throughput.to_dict()`."""
    if workers < 1 or threads_per_worker < 1:
        raise DynBenchError(f"workers and threads_per_worker must be >= 1, not {workers}, {threads_per_worker}")
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited thread pools
    start, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_worker, args=(build, input_shape, num_classes, batch_size, steps, warmup,
                                                       threads_per_worker, start, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    collected: list[dict[str, float | int | str]] = []
    try:
        while len(collected) < workers:
            try:
                collected.append(results.get(timeout=5))
            except queue.Empty:
                if any(p.exitcode not in (0, None) for p in processes):
                    break  # a worker died: the others would wait at the barrier forever
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if failed or len(collected) < workers:
        raise DynBenchError(f"a throughput worker exited with code {failed[0] if failed else None}: run it alone to see its error")
    return collected
