"""`dynbench eval`: re-measure a trained model without retraining.

Given a run record whose model is kept (`bench.checkpoints`), rebuild the gated model from the record's
spec, load its weights (`weights_only=True`), evaluate it on a split, recount its executed MACs and time
its realized latency on this machine. The result is an evaluation record, written atomically to
`<results>/evals/<eval_hash>.json` and linked to the run record by `training_spec_hash`:

    {"kind": "eval", "training_spec_hash", "training_code_hash", "split": "val" | "test", "device",
     "hardware", "versions", "metrics": {<primary metric>, "loss", ...}, "executed_macs", "mac_saving",
     "exec_rate_per_unit", "latency": {...} (`bench.measure.latency.time_model`) | null (ungated models),
     "created", "format": 2}

The test evaluation starts from the global RNG state the training run's own test evaluation started
from, so random and stochastic gates draw the same decisions: on the machine that trained it, the test
metrics and executed MACs equal the record's exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import DynBenchError, registry
from bench.backbones import build_backbone
from bench.checkpoints import mismatch, model_path, read_checkpoint, restore_rng_states
from bench.data import BatchPipeline
from bench.data.dataset import DatasetPlugin
from bench.measure.macs import count_macs, executed_macs
from bench.method import Method
from bench.profiles import PROFILES
from bench.records import RunRecord, RunSpec, code_hash, load_record, software_versions
from bench.measure.latency import LATENCY_SAMPLES, describe_latency, time_model, timing_hardware
from bench.train import evaluate, plugin_file, run_splits
from bench.gating.wrappers import gated_units

EVAL_FORMAT = 2  # 2: latency measured with time_model (paired rounds, CIs, probes)
EVALS_DIR = "evals"
SPLITS = ("val", "test")


@dataclass
class Evaluation:
    """An evaluation record (the JSON schema above) and where it was written."""

    record: dict[str, Any]
    path: Path
    run_record: RunRecord


def find_record(record: str, results_dir: Path) -> tuple[Path, Path]:
    """(record path, its results folder) from a record path or a spec hash (or a unique prefix of one)
    in `<results_dir>/runs`."""
    path = Path(record)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise DynBenchError(f"no run record {path}: give a record path or the spec hash of a record in {results_dir}/runs")
        return path, path.resolve().parent.parent
    runs = Path(results_dir) / "runs"
    matches = sorted(runs.glob(f"{record}*.json")) if record else []
    if len(matches) != 1:
        what = "no record" if not matches else f"{len(matches)} records"
        raise DynBenchError(f"{what} in {runs} for spec hash '{record}': give a record path or a (unique prefix of a) "
                            "spec hash, e.g. from `dynbench tables` or the `dynbench run` output")
    return matches[0], Path(results_dir)


def rerun_command(spec: RunSpec, results_dir: Path) -> str:
    """The `dynbench run` line that trains `spec` again (and so keeps its model)."""
    args = ["dynbench run", f"--method {spec.method}", f"--dataset {spec.dataset}", f"--profile {spec.profile}",
            f"--seed {spec.seed}"]
    if spec.preset != "default":
        args.append(f"--preset {spec.preset}")
    profile = PROFILES.get(spec.profile)
    for name in ("epochs", "batch_size", "lr", "optimizer"):
        if profile is None or getattr(profile, name) != getattr(spec, name):
            args.append(f"--{name.replace('_', '-')} {getattr(spec, name)}")
    args += [f"--option {k}={v}" for k, v in spec.method_options.items()]
    return " ".join(args + [f"--results {results_dir}", "--force"])


def load_model(run_record: RunRecord, results_dir: Path) -> tuple[RunSpec, Method, DatasetPlugin, dict[str, Any]]:
    """The record's kept model file, checked (weights_only load, spec and code hash of the record), with
    the method and dataset plugins to rebuild it. Returns (spec, method, dataset, payload)."""
    spec = run_record.run_spec
    path = model_path(results_dir, spec.hash)
    retrain = rerun_command(spec, results_dir)
    if not path.exists():
        raise DynBenchError(f"no trained model for record {spec.hash}: {path} is missing (runs recorded before models "
                            f"were kept, or results copied without models/); train it again with: {retrain}")
    try:
        payload = read_checkpoint(path)
    except ValueError as exc:
        raise DynBenchError(f"model file {path} is {exc}; train it again with: {retrain}") from None
    why = mismatch(payload, spec, run_record.code_hash) or (None if payload.get("kind") == "model" else "it is not a model file")
    if why:
        raise DynBenchError(f"model file {path} does not belong to record {spec.hash}: {why}; train it again with: {retrain}")
    method = registry.get_method(spec.method)(spec.preset, **spec.method_options)
    dataset = registry.get_dataset(spec.dataset)()
    return spec, method, dataset, payload


@dataclass
class Rebuilt:
    """A run's trained model on a device, with what evaluating it needs."""

    spec: RunSpec
    method: Method
    dataset: DatasetPlugin
    payload: dict[str, Any]
    model: torch.nn.Module
    pipeline: BatchPipeline
    example: torch.Tensor  # one test input on the CPU, for fvcore
    dense_macs: int
    val: Any  # TensorSplit
    test: Any


_cached_splits: dict[str, tuple] = {}


def _splits(spec: RunSpec, dataset: DatasetPlugin, data_root: Path) -> tuple:
    """`run_splits`, kept for the next run of the same data (a timing pass rebuilds many runs in a row)."""
    key = json.dumps([spec.dataset, str(data_root), spec.max_train_examples, spec.max_val_examples,
                      spec.max_test_examples])
    if key not in _cached_splits:
        _cached_splits.clear()  # one dataset at a time: memory stays bounded
        _cached_splits[key] = run_splits(spec, dataset, data_root)
    return _cached_splits[key]


def rebuild(run_record: RunRecord, results_dir: Path, data_root: Path, run_device: torch.device) -> Rebuilt:
    """The kept model of `run_record` rebuilt from its spec and loaded (checked by `load_model`)."""
    spec, method, dataset, payload = load_model(run_record, results_dir)
    splits, _, val_split, test_split = _splits(spec, dataset, data_root)
    example = BatchPipeline(dataset, torch.device("cpu"))(splits.test.x[:1])
    backbone = build_backbone(spec.backbone, tuple(splits.train.x.shape[1:]), dataset.num_classes, **spec.backbone_options)
    dense_macs = count_macs(backbone, example)  # before `build`, as in training (static_small counts the full net)
    model = method.build(backbone)
    model.train()
    method.on_epoch_start(model, spec.epochs - 1, spec.epochs)  # per-epoch attributes (SkipNet's phase, MIDL's k)
    model.load_state_dict(payload["model"])
    method.load_state_dict(payload["method"])
    model = model.to(run_device)
    if dataset.modality == "image":
        model = model.to(memory_format=torch.channels_last)
    return Rebuilt(spec, method, dataset, payload, model, BatchPipeline(dataset, run_device), example, dense_macs,
                   val_split, test_split)


def evaluate_record(record: str, results_dir: Path, data_root: Path, split: str = "test", device: str | None = None,
                    threads: int = 1) -> Evaluation:
    """Evaluate the kept model of `record` on `split`, on `device`, and write its evaluation record."""
    if split not in SPLITS:
        raise DynBenchError(f"unknown split '{split}': choose val or test")
    if threads < 1:
        raise DynBenchError(f"--threads must be >= 1, not {threads}")
    record_file, results_dir = find_record(record, results_dir)
    run_record = load_record(record_file)
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rebuilt = rebuild(run_record, results_dir, data_root, run_device)
    spec, method, dataset, payload = rebuilt.spec, rebuilt.method, rebuilt.dataset, rebuilt.payload
    model, pipeline, example, dense_macs = rebuilt.model, rebuilt.pipeline, rebuilt.example, rebuilt.dense_macs
    chosen = rebuilt.test if split == "test" else rebuilt.val

    with torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else []):
        if run_device.type == "cpu" or "global_cuda" in payload["eval_rng"]:
            restore_rng_states(payload["eval_rng"], run_device)
        else:  # trained on CPU, evaluated on CUDA: the CUDA stream has no saved state to start from
            torch.cuda.manual_seed(0)
            torch.set_rng_state(payload["eval_rng"]["global_cpu"])
        metrics, trace = evaluate(model, chosen, pipeline)
    macs = executed_macs(model.cpu(), example, trace, dense_macs)
    latency = None
    if gated_units(model):
        latency = time_model(model, pipeline(chosen.x[:LATENCY_SAMPLES]).to(run_device), threads=threads)

    current_code = code_hash(plugin_file(type(method)), plugin_file(type(dataset)))
    hardware = timing_hardware(run_device)
    evaluation = {
        "kind": "eval", "training_spec_hash": spec.hash, "training_code_hash": run_record.code_hash,
        "eval_code_hash": current_code, "split": split, "examples": len(chosen), "device": str(run_device),
        "latency_threads": threads, "hardware": hardware, "versions": software_versions(),
        "metrics": metrics, "primary_metric": dataset.primary_metric,
        "executed_macs": dataclasses.asdict(macs), "mac_saving": macs.saving,
        "exec_rate_per_unit": trace.exec_rate_per_unit(), "latency": latency,
        "timing_code_hash": _timing_code_hash() if latency is not None else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "format": EVAL_FORMAT,
    }
    path = Path(results_dir) / EVALS_DIR / f"{eval_hash(evaluation)}.json"
    save_json(path, evaluation)
    return Evaluation(evaluation, path, run_record)


def _timing_code_hash() -> str:
    from bench.timing import timing_code_hash  # bench.timing imports this module

    return timing_code_hash()


def eval_hash(evaluation: dict[str, Any]) -> str:
    """Names an evaluation by what it measured and where: the same model, split, code, device and
    machine overwrite one file; another machine or device adds a file."""
    hardware = evaluation["hardware"]
    key = {k: evaluation[k] for k in ("training_spec_hash", "training_code_hash", "eval_code_hash", "split", "device",
                                      "latency_threads")}
    key["machine"] = {k: hardware.get(k) for k in ("machine", "system", "processor", "cpu_count", "gpu")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (tempfile + rename), readable by others like every result file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(evaluation: Evaluation) -> str:
    """What `dynbench eval` prints: the split's metric and MACs beside the record's, and the latency line."""
    data, run_record = evaluation.record, evaluation.run_record
    primary = run_record.metrics["primary_metric"]
    value, macs = data["metrics"][primary], data["executed_macs"]["mean"]
    lines = [f"{run_record.run_spec.label}, {data['split']} split ({data['examples']} examples) on {data['device']}:"]
    if data["split"] == "test":
        recorded, recorded_macs = run_record.metrics["test"][primary], run_record.metrics["executed_macs"]["mean"]
        same = "identical to" if (value == recorded and data["executed_macs"] == run_record.metrics["executed_macs"]) \
            else "DIFFERS from"
        lines.append(f"  test {primary} {value:.4f} (record {recorded:.4f}), executed MACs {macs / 1e6:.4f} M "
                     f"(record {recorded_macs / 1e6:.4f} M): {same} the record")
    else:
        lines.append(f"  val {primary} {value:.4f}, executed MACs {macs / 1e6:.4f} M")
    lines.append(f"  MAC saving {100 * data['mac_saving']:.1f} %")
    if data["latency"] is None:
        lines.append("  latency: not measured (the model has no gates: its latency is the dense model's)")
    else:
        lines += ["  " + line for line in describe_latency(data["latency"])]
    if data["eval_code_hash"] != data["training_code_hash"]:
        lines.append(f"  note: the code changed since training (code hash {data['training_code_hash']} -> "
                     f"{data['eval_code_hash']}); the figures come from this code")
    lines.append(f"  evaluation record: {evaluation.path}")
    return "\n".join(lines)
