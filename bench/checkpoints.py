"""Trained models and per-epoch resumable state of runs, under `<results>/models/` (out of git by default).

- `<spec_hash>.pt`: the trained model of a completed run — its state dict, the method's own state, the
  spec that rebuilds it, the code hash, and the global RNG state its test evaluation started from (so
  `dynbench eval` reproduces the record's test metrics even for random gates).
- `<spec_hash>.resume.pt`: while a run trains, its state after the training steps of the last epoch
  (model, optimizer, scheduler, every RNG stream, the curve so far, the method's state); deleted once
  the run's model and record are written.

Files hold tensors, state dicts and plain Python values only: they load with `torch.load(...,
weights_only=True)`, which runs no pickled code. Writes are atomic (tempfile + `os.replace`). A file that
cannot be trusted — truncated, corrupt, written for another spec, by other code, or on another device
type — is ignored with a one-line warning saying why, and the run starts afresh.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.records import RunSpec

CHECKPOINT_FORMAT = 1
MODELS_DIR = "models"


def model_path(results_dir: Path, spec_hash: str) -> Path:
    return Path(results_dir) / MODELS_DIR / f"{spec_hash}.pt"


def resume_path(results_dir: Path, spec_hash: str) -> Path:
    return Path(results_dir) / MODELS_DIR / f"{spec_hash}.resume.pt"


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then rename: a kill mid-write leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file (weights_only); raises `ValueError` with the reason when it is unusable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, forbidden global: all mean "not a file to trust"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"unreadable (truncated or corrupt: {reason.split('. ')[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a DynBench checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


def mismatch(payload: dict[str, Any], spec: RunSpec, code: str, device: torch.device | None = None) -> str | None:
    """Why `payload` does not belong to this run (spec, code, device type), or None when it does."""
    if payload.get("spec_hash") != spec.hash or payload.get("spec") != spec.to_dict():
        return f"it was written for another run spec (spec hash {payload.get('spec_hash')}, this run {spec.hash})"
    if payload.get("code_hash") != code:
        return (f"it was written by other code (code hash {payload.get('code_hash')}, this code {code}); "
                "its state would not continue this code's run")
    if device is not None and payload.get("device_type") != device.type:
        return f"it was trained on {payload.get('device_type')}, this run uses {device.type}"
    return None


def warn(message: str) -> None:
    print(f"dynbench: warning: {message}", file=sys.stderr, flush=True)


def rng_states(device: torch.device, **generators: torch.Generator) -> dict[str, torch.Tensor]:
    """Every RNG stream a run draws from: its own generators, the global CPU generator (gate noise,
    dropout) and, on CUDA, the device's generator. (The run uses neither Python's nor NumPy's RNG.)"""
    states = {name: generator.get_state() for name, generator in generators.items()}
    states["global_cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        states["global_cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict[str, torch.Tensor], device: torch.device, **generators: torch.Generator) -> None:
    for name, generator in generators.items():
        generator.set_state(states[name])
    torch.set_rng_state(states["global_cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["global_cuda"], device)


@dataclass
class RunCheckpoints:
    """The model and resume files of one run, checked against its spec and code hash."""

    results_dir: Path
    spec: RunSpec
    code: str

    @property
    def model(self) -> Path:
        return model_path(self.results_dir, self.spec.hash)

    @property
    def resume(self) -> Path:
        return resume_path(self.results_dir, self.spec.hash)

    def _header(self, device: torch.device) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "spec": self.spec.to_dict(), "spec_hash": self.spec.hash,
                "code_hash": self.code, "device_type": device.type}

    def save_resume(self, state: dict[str, Any], device: torch.device) -> None:
        save_atomic(self.resume, {**self._header(device), "kind": "resume", **state})

    def load_resume(self, device: torch.device) -> dict[str, Any] | None:
        """The resumable state of an interrupted run of this spec, or None (no file, or one not to trust:
        then a warning says why and the run starts from its first epoch)."""
        if not self.resume.exists():
            return None
        try:
            payload = read_checkpoint(self.resume)
        except ValueError as exc:
            warn(f"not resuming from {self.resume}: {exc}; training from the first epoch")
            return None
        why = mismatch(payload, self.spec, self.code, device)
        if why is None and payload.get("kind") != "resume":
            why = "it is not a resume file"
        if why:
            warn(f"not resuming from {self.resume}: {why}; training from the first epoch")
            return None
        return payload

    def discard_resume(self) -> None:
        self.resume.unlink(missing_ok=True)

    def save_model(self, state: dict[str, Any], device: torch.device) -> None:
        save_atomic(self.model, {**self._header(device), "kind": "model", **state})
