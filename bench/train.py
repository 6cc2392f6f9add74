"""One training/evaluation run: RunSpec -> RunRecord. Every method trains through this one loop."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench import DynBenchError, registry
from bench.backbones import ALIASES, FAMILIES, build_backbone
from bench.checkpoints import RunCheckpoints, restore_rng_states, rng_states
from bench.data import SPLIT_SEED, BatchPipeline, DataSplits, fixed_subset, iterate_batches, load_splits
from bench.data.dataset import DatasetPlugin, TensorSplit
from bench.gating.gate_stats import input_dependence, per_gate_rates
from bench.gating.gates import GateTrace
from bench.measure.macs import count_macs, count_params, executed_macs
from bench.matching import matched_run_changed
from bench.method import Method, StepContext, check_option_type
from bench.measure.metrics import confusion_matrix, correct_per_sample, mean_iou, pixel_accuracy
from bench.profiles import PROFILES
from bench.records import (CorruptRecord, RunRecord, RunSpec, check_results_writable, code_hash, hardware_info,
                           load_record, nonfinite_metrics, record_path, save_record, software_versions)
from bench.gating.wrappers import gated_units, gates_forced

EVAL_BATCH_SIZE = 512
WARMUP_FRACTION = 0.02  # linear learning-rate warm-up over the first 2 % of steps, then cosine decay


def make_spec(method: str, dataset: str, profile: str = "quick", seed: int = 0, preset: str = "default",
              backbone: str | None = None, method_options: dict[str, Any] | None = None,
              backbone_options: dict[str, Any] | None = None, **overrides: Any) -> RunSpec:
    """Resolve a run from names: profile values, then the dataset's overrides for that profile, then
    explicit `overrides` (epochs, batch_size, lr, ...). Unknown names raise `DynBenchError`."""
    method_cls, dataset_cls = registry.get_method(method), registry.get_dataset(dataset)
    method_instance = method_cls(preset, **(method_options or {}))  # validates preset and options now, not mid-suite
    if profile not in PROFILES:
        guesses = difflib.get_close_matches(profile, list(PROFILES), n=1)
        hint = f" (did you mean '{guesses[0]}'?)" if guesses else ""
        raise DynBenchError(f"unknown profile '{profile}'{hint}: choose one of {', '.join(PROFILES)}")
    values = {**dataclasses.asdict(PROFILES[profile]), **dataset_cls.profile_overrides.get(profile, {}),
              **{k: v for k, v in overrides.items() if v is not None}}
    profile_backbone, profile_backbone_options = values.pop("backbone", None), values.pop("backbone_options", {})
    if backbone is None:  # the dataset's backbone, as its profile override adjusts it (e.g. a smaller net in `quick`)
        backbone = profile_backbone or dataset_cls.backbone
        backbone_options = {**dataset_cls.backbone_options, **profile_backbone_options, **(backbone_options or {})}
    check_backbone_options(backbone, backbone_options or {})
    spec = RunSpec(method=method, dataset=dataset, backbone=backbone, seed=seed, preset=preset,
                   method_options=dict(method_options or {}), backbone_options=dict(backbone_options or {}),
                   profile=profile, **values)
    spec.check()
    method_instance.check_run(spec)
    return spec


def check_backbone_options(name: str, options: dict[str, Any]) -> None:
    """Backbone options checked by name and by the type of the constructor's default, before anything trains."""
    family = next((fam for pattern, (fam, _) in ALIASES.items() if re.fullmatch(pattern, name)), name)
    if family not in FAMILIES:
        return  # build_backbone names an unknown backbone, with a suggestion
    parameters = dict(list(inspect.signature(FAMILIES[family]).parameters.items())[2:])  # after in_shape, num_classes
    for key, value in options.items():
        if key not in parameters:
            raise DynBenchError(f"backbone '{name}' has no option '{key}'; options: {', '.join(parameters)}")
        check_option_type(f"backbone '{name}'", key, value, parameters[key].default, flag="--backbone-option")


def derive_seed(master: int, axis: str) -> int:
    """Independent seeds per axis (initialisation, data order, augmentation, gate noise) from one master seed."""
    return int(hashlib.sha256(f"{master}:{axis}".encode()).hexdigest()[:8], 16)


def plugin_file(cls: type) -> str:
    return sys.modules[cls.__module__].__file__ or cls.__module__


def run(spec: RunSpec, data_root: Path, results_dir: Path, force: bool = False,
        device: str | None = None, progress: bool = True) -> tuple[RunRecord, bool]:
    """Train and evaluate `spec`, or reuse its record. Returns (record, reused). The record is written
    only when the run completes, so an interrupted run leaves nothing behind but its per-epoch resume
    file, from which the same call continues (`force` discards it and retrains from the first epoch).
    A completed run also keeps its trained model (`bench.checkpoints`)."""
    method_cls, dataset_cls = registry.get_method(spec.method), registry.get_dataset(spec.dataset)
    path = record_path(results_dir, spec)
    current_code = code_hash(plugin_file(method_cls), plugin_file(dataset_cls))
    if path.exists() and not force:
        previous = _previous_record(path)
        changed = matched_run_changed(previous) if previous is not None else None
        if changed:
            print(f"dynbench: warning: {spec.label}: {changed}; running it again", file=sys.stderr)
        elif previous is not None and previous.code_hash == current_code:
            return previous, True
    spec.check()
    run_device = resolve_device(device)
    check_results_writable(results_dir)  # before training, not at save time
    warning = slow_bf16_warning(spec.precision, run_device)
    if warning:
        print(f"{spec.label}: warning: {warning}", file=sys.stderr, flush=True)
    checkpoints = RunCheckpoints(Path(results_dir), spec, current_code)
    if force:
        checkpoints.discard_resume()
    record, trained = _train_and_evaluate(spec, method_cls(spec.preset, **spec.method_options), dataset_cls(),
                                          data_root, run_device, current_code, progress, checkpoints)
    _require_finite(spec, record)
    checkpoints.save_model(trained, run_device)  # before the record: a kill in between resumes, never loses the model
    save_record(path, record)
    checkpoints.discard_resume()
    return record, False


def resolve_device(name: str | None) -> torch.device:
    """`--device`, else cuda when available, else cpu; a device this machine lacks is a one-line error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DynBenchError(f"unknown device '{name}': use cpu or cuda (cuda:N for one GPU)") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise DynBenchError(f"device '{name}' is not available on this machine ({torch.cuda.device_count()} GPU(s)); "
                            "use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise DynBenchError(f"device '{name}' is not supported: use cpu or cuda")
    return device


def _previous_record(path: Path) -> RunRecord | None:
    """The existing record, or None (with a warning) when it is corrupt, so the run is done again."""
    try:
        return load_record(path)
    except CorruptRecord as exc:
        print(f"dynbench: warning: {exc}; running it again", file=sys.stderr)
        return None


def _require_finite(spec: RunSpec, record: RunRecord) -> None:
    """A NaN or infinite metric is a failed run, not a record (chance accuracy beside `"loss": NaN`)."""
    bad = nonfinite_metrics(record.metrics) + [f"curve epoch {e.get('epoch')}: {name}" for e in record.curve
                                               for name in nonfinite_metrics(e)]
    if bad:
        raise DynBenchError(f"{spec.label}: evaluation gave non-finite values ({', '.join(bad[:4])}); "
                            "no record written: lower --lr or check the method's outputs")


def _nonfinite_loss(spec: RunSpec, epoch: int, per_sample: torch.Tensor, extra: dict[str, torch.Tensor],
                    loss: torch.Tensor) -> DynBenchError:
    """Which term of the training loss went NaN or infinite (the task loss or a method's extra loss)."""
    terms = {"task loss": per_sample.mean(), **{f"extra loss '{k}'": v for k, v in extra.items()}}
    values = {name: torch.as_tensor(value).detach().float() for name, value in terms.items()}
    culprits = [f"{name} = {value.sum().item()}" for name, value in values.items() if not torch.isfinite(value).all()]
    which = ", ".join(culprits) or f"the sum = {loss.item()}"
    return DynBenchError(f"{spec.label}: training loss became non-finite at epoch {epoch + 1} ({which}); "
                         "lower --lr or fix that term")


@dataclass
class LoopState:
    """Where the epoch loop stands; what the per-epoch checkpoint carries besides the state dicts."""

    epoch: int = 0  # epochs whose training steps are done
    step: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)  # completed epochs, val-scored where due
    pending: dict[str, float] | None = None  # the entry of epoch `epoch`: trained, not yet val-scored
    train_seconds: float = 0.0  # spent in the loop by earlier (interrupted) processes


@dataclass
class _Training:
    """The parts of one run that the epoch loop drives."""

    spec: RunSpec
    method: Method
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pipeline: BatchPipeline
    train: TensorSplit
    val: TensorSplit
    order_rng: torch.Generator
    augment_rng: torch.Generator
    device: torch.device
    primary: str
    progress: bool

    def snapshot(self, state: LoopState, seconds: float) -> dict[str, Any]:
        """The resumable state after the training steps of epoch `state.epoch` (before its val scoring)."""
        return {**dataclasses.asdict(state), "train_seconds": seconds, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "method": self.method.state_dict(),
                "rng": rng_states(self.device, order=self.order_rng, augment=self.augment_rng)}

    def restore(self, saved: dict[str, Any]) -> LoopState:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.method.load_state_dict(saved["method"])
        restore_rng_states(saved["rng"], self.device, order=self.order_rng, augment=self.augment_rng)
        return LoopState(saved["epoch"], saved["step"], list(saved["curve"]), saved["pending"], saved["train_seconds"])


def _train_and_evaluate(spec: RunSpec, method: Method, dataset: DatasetPlugin, data_root: Path,
                        device: torch.device, current_code: str, progress: bool,
                        checkpoints: RunCheckpoints | None = None) -> tuple[RunRecord, dict[str, Any]]:
    """Train (resuming from `checkpoints` when it holds a valid resume file, saving one after every
    epoch), evaluate, and return the record with the trained model's payload for `RunCheckpoints.save_model`."""
    started = time.perf_counter()
    seeds = {"split": SPLIT_SEED, **{axis: derive_seed(spec.seed, axis) for axis in ("init", "order", "augment", "gates")}}
    splits, train, val_split, test_split = run_splits(spec, dataset, data_root)

    torch.manual_seed(seeds["init"])
    backbone = build_backbone(spec.backbone, tuple(train.x.shape[1:]), dataset.num_classes, **spec.backbone_options)
    example = BatchPipeline(dataset, torch.device("cpu"))(splits.val.x[:1])  # shape only: MACs do not read values
    dense_macs = count_macs(backbone, example)
    model = method.build(backbone).to(device)
    if dataset.modality == "image":  # NHWC convolutions: 15-30 % faster on CPU (oneDNN) as on GPU
        model = model.to(memory_format=torch.channels_last)
    pipeline = BatchPipeline(dataset, device)

    steps_per_epoch = max(1, len(train) // spec.batch_size)
    total_steps = spec.epochs * steps_per_epoch
    optimizer = make_optimizer(model, spec)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps))
    order_rng = torch.Generator().manual_seed(seeds["order"])
    augment_rng = torch.Generator().manual_seed(seeds["augment"])
    torch.manual_seed(seeds["gates"])  # gate noise (Gumbel, Bernoulli) draws from the global generator

    training = _Training(spec, method, model, optimizer, scheduler, pipeline, train, val_split, order_rng,
                         augment_rng, device, dataset.primary_metric, progress)
    saved = checkpoints.load_resume(device) if checkpoints is not None else None
    state = training.restore(saved) if saved is not None else LoopState()
    if saved is not None:
        print(f"{spec.label}: resuming after epoch {state.epoch}/{spec.epochs} from {checkpoints.resume}",
              file=sys.stderr, flush=True)
    curve, (val_metrics, val_trace), train_seconds = _train_epochs(training, state, checkpoints)

    eval_rng = rng_states(device)  # what the test evaluation draws from: `dynbench eval` starts there too
    test_metrics, test_trace = evaluate(model, test_split, pipeline)
    all_on = all_on_metrics(model, val_split, test_split, pipeline) if gated_units(model) else None
    macs = executed_macs(model.cpu(), example, test_trace, dense_macs)
    metrics = {
        "primary_metric": dataset.primary_metric, "val": val_metrics, "test": test_metrics, "params": count_params(model),
        "dense_macs": dense_macs, "executed_macs": dataclasses.asdict(macs), "mac_saving": macs.saving,
        "exec_rate_per_unit": test_trace.exec_rate_per_unit(),
        "val_exec_rate_per_unit": val_trace.exec_rate_per_unit(),
        **method.extra_metrics(model, example, test_trace),
    }
    if gated_units(model):  # what controls, presets and diagnostics read: the validation trace
        metrics["val_executed_macs"] = dataclasses.asdict(executed_macs(model, example, val_trace, dense_macs))
        metrics["val_exec_rate_per_gate"] = {unit: per_gate_rates(val_trace, unit).tolist() for unit in val_trace.units()}
        metrics["val_extra_metrics"] = method.extra_metrics(model, example, val_trace)
        metrics["input_dependence"] = input_dependence(val_trace)
        metrics["all_on"] = all_on
    metrics["zero_loss_terms"] = zero_loss_terms(curve)
    record = RunRecord(
        spec=spec.to_dict(), spec_hash=spec.hash, code_hash=current_code, seeds=seeds,
        data={"source": splits.source, **splits.sizes(), "train_used": len(train), "val_used": len(val_split),
              "test_used": len(test_split)},
        metrics=metrics, curve=curve,
        train_seconds=train_seconds, wall_seconds=time.perf_counter() - started, versions=software_versions(),
        hardware=hardware_info(device), created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    trained = {"model": model.state_dict(), "method": method.state_dict(), "eval_rng": eval_rng}
    return record, trained


def all_on_metrics(model: nn.Module, val_split: TensorSplit, test_split: TensorSplit,
                   pipeline: BatchPipeline) -> dict[str, dict[str, float]]:
    """The all-on control (methods.md §7): the trained model with every gate forced to 1, on val and test."""
    with gates_forced(model, 1.0):
        return {"val": evaluate(model, val_split, pipeline)[0], "test": evaluate(model, test_split, pipeline)[0]}


def zero_loss_terms(curve: list[dict[str, float]]) -> list[str]:
    """Extra loss terms (`loss_<name>` in the curve) that were exactly 0 in every epoch: they never acted."""
    names = sorted({key for entry in curve for key in entry if key.startswith("loss_")})
    return [name[len("loss_"):] for name in names if all(entry.get(name, 0.0) == 0.0 for entry in curve)]


def _train_epochs(training: _Training, state: LoopState, checkpoints: RunCheckpoints | None
                  ) -> tuple[list[dict[str, float]], tuple[dict[str, float], GateTrace], float]:
    """Run the epochs from `state` on; save the resumable state after each epoch's training steps.
    Returns (curve, the last epoch's val evaluation, training seconds)."""
    spec, loop_started = training.spec, time.perf_counter()
    last_val = None
    if state.pending is not None:  # resumed after an epoch's training steps: its val scoring comes first,
        training.model.train()  # with that epoch's per-epoch attributes set again (MIDL's k, SkipNet's phase)
        training.method.on_epoch_start(training.model, state.epoch - 1, spec.epochs)
        last_val = _finish_epoch(training, state)
    for epoch in range(state.epoch, spec.epochs):
        epoch_started = time.perf_counter()
        entry = _train_one_epoch(training, epoch, state)
        entry["seconds"] = time.perf_counter() - epoch_started
        state.epoch, state.pending = epoch + 1, entry
        if checkpoints is not None:
            seconds = state.train_seconds + time.perf_counter() - loop_started
            checkpoints.save_resume(training.snapshot(state, seconds), training.device)
        last_val = _finish_epoch(training, state)
    return state.curve, last_val, state.train_seconds + time.perf_counter() - loop_started


def _train_one_epoch(training: _Training, epoch: int, state: LoopState) -> dict[str, float]:
    """The training steps of one epoch; returns its curve entry (train loss, accuracy, lr, extra losses)."""
    spec, model, method, optimizer = training.spec, training.model, training.method, training.optimizer
    steps_per_epoch = max(1, len(training.train) // spec.batch_size)
    total_steps = spec.epochs * steps_per_epoch
    model.train()
    method.on_epoch_start(model, epoch, spec.epochs)
    sums: dict[str, float] = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
    batches = iterate_batches(training.train, spec.batch_size, shuffle=True, generator=training.order_rng, drop_last=True)
    bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{spec.epochs}", leave=False,
               disable=not training.progress or None, file=sys.stderr)
    for x, y in bar:
        inputs, targets = training.pipeline.batch(x, y, training.augment_rng, train=True)
        with GateTrace.recording() as trace, forward_precision(spec.precision, training.device):
            logits = model(inputs)
        logits = logits.float()
        per_sample = task_loss(logits, targets, reduction="none")
        context = StepContext(inputs, targets, logits, per_sample, trace, epoch, spec.epochs, state.step, total_steps)
        extra = method.extra_losses(model, context)
        loss = per_sample.mean() + sum(extra.values(), torch.zeros((), device=training.device))
        if not torch.isfinite(loss):
            raise _nonfinite_loss(spec, epoch, per_sample, extra, loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        training.scheduler.step()
        state.step += 1
        n = len(targets)
        sums["loss"] += loss.item() * n
        sums["correct"] += correct_per_sample(logits, targets).sum().item()
        sums["seen"] += n
        for name, value in extra.items():
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + value.item() * n
    seen = max(sums.pop("seen"), 1.0)
    return {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_accuracy": sums.pop("correct") / seen,
            **{k: v / seen for k, v in sums.items()}}


def _finish_epoch(training: _Training, state: LoopState) -> tuple[dict[str, float], GateTrace] | None:
    """Score the pending epoch on val where due (every `val_every` epochs and the last one) and move its
    entry to the curve. Returns the val evaluation, or None when this epoch has none."""
    spec, entry, primary, epoch = training.spec, state.pending, training.primary, state.epoch
    scored_started, scored = time.perf_counter(), None
    if epoch % spec.val_every == 0 or epoch == spec.epochs:  # the last epoch's is the final val score
        scored = evaluate(training.model, training.val, training.pipeline)
        entry[f"val_{primary}"] = scored[0][primary]
    entry["seconds"] += time.perf_counter() - scored_started
    state.curve.append(entry)
    state.pending = None
    if training.progress:
        val = f", val {primary} {entry[f'val_{primary}']:.4f}" if f"val_{primary}" in entry else ""
        print(f"  epoch {epoch}/{spec.epochs}: loss {entry['loss']:.4f}{val}, {entry['seconds']:.1f}s", file=sys.stderr)
    return scored


def run_splits(spec: RunSpec, dataset: DatasetPlugin, data_root: Path
               ) -> tuple[DataSplits, TensorSplit, TensorSplit, TensorSplit]:
    """The dataset's splits and the (train, val, test) parts a run of `spec` uses."""
    splits = load_splits(dataset, data_root)
    train = splits.train
    if spec.max_train_examples is not None and spec.max_train_examples < len(train):
        train = train.subset(torch.arange(spec.max_train_examples))  # the split is already shuffled with a fixed seed
    val_split = splits.val
    if spec.max_val_examples is not None and spec.max_val_examples < len(val_split):
        val_split = val_split.subset(torch.arange(spec.max_val_examples))  # val is already a random draw
    return splits, train, val_split, fixed_subset(splits.test, spec.max_test_examples)


def task_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy; label 255 is ignored (segmentation masks). Per-sample losses average over pixels."""
    loss = F.cross_entropy(logits, targets, ignore_index=255, reduction="none")
    if loss.dim() > 1:
        loss = loss.flatten(1).mean(1)
    return loss.mean() if reduction == "mean" else loss


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, pipeline: BatchPipeline) -> tuple[dict[str, float], GateTrace]:
    """Mean task loss and the task's metrics on a split (classification: accuracy; segmentation: miou and
    pixel_accuracy from one confusion matrix), with the gate trace of every sample (eval-mode gates)."""
    model.eval()
    device = next(model.parameters()).device
    num_classes = pipeline.plugin.num_classes
    correct, loss_sum = 0, 0.0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    with GateTrace.recording() as trace:
        for x, y in iterate_batches(split, EVAL_BATCH_SIZE):
            inputs, targets = pipeline.batch(x, y)
            logits = model(inputs.to(device))
            targets = targets.to(device)
            if pipeline.is_segmentation:
                confusion += confusion_matrix(logits.argmax(1), targets, num_classes)
            else:
                correct += (logits.argmax(1) == targets).sum().item()
            loss_sum += task_loss(logits, targets, reduction="none").sum().item()
    n = max(len(split), 1)
    if pipeline.is_segmentation:
        return {"miou": mean_iou(confusion), "pixel_accuracy": pixel_accuracy(confusion), "loss": loss_sum / n}, trace
    return {"accuracy": correct / n, "loss": loss_sum / n}, trace


def make_optimizer(model: nn.Module, spec: RunSpec) -> torch.optim.Optimizer:
    """SGD (momentum 0.9, Nesterov) or AdamW; no weight decay on norms and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=0.9, nesterov=True)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr)
    raise DynBenchError(f"unknown optimizer '{spec.optimizer}': choose sgd or adamw")


def forward_precision(precision: str, device: torch.device) -> torch.autocast:
    """The training forward pass's precision: bf16 autocast (convolutions and matrix products in bf16:
    1.4x faster than fp32 on a CPU with AVX-512 BF16, about 10x slower on one without) or plain fp32.
    Gates decide in fp32 either way."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def slow_bf16_warning(precision: str, device: torch.device, cpu_flags: str | None = None) -> str | None:
    """A warning when a bf16 run trains on a Linux CPU without native bf16 (AVX-512 BF16 or AMX): there
    oneDNN emulates it, ResNet-20 trained at 14 images/s against 172 in fp32 (1 thread, AMD EPYC, AVX2)."""
    if precision != "bf16" or device.type != "cpu":
        return None
    if cpu_flags is None:
        try:
            cpu_flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None  # not Linux: no way to tell
    if re.search(r"\b(avx512_bf16|amx_bf16)\b", cpu_flags):
        return None
    return ("precision bf16 on a CPU without AVX-512 BF16 or AMX: autocast is emulated and training runs about 10x "
            "slower than fp32 here; use --precision fp32 (or a machine with native bf16)")


def warmup_cosine(step: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0."""
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
