"""Kept models and resumable runs: an interrupted run resumes from its last epoch and its record equals an
uninterrupted run's bit for bit; checkpoints that cannot be trusted are refused with a reason."""
from __future__ import annotations

import json

import pytest
import torch

import bench.train as train
from bench.checkpoints import model_path, read_checkpoint, resume_path
from bench.data import resolve_data_root
from bench.records import record_path
from bench.train import make_spec, run
from tests.fixtures.cli import run_cli
from tests.fixtures.records import comparable

# A method whose training depends on every stream a resume must restore: Bernoulli gates (global RNG), its
# own state (a call counter that scales an extra loss), augmentation and data order (the loop's
# generators). It kills its own process (SIGKILL, no clean-up) at the start of epoch `kill_epoch` the
# first time only, like a preempted or OOM-killed job.
DIES_ONCE_METHOD = '''"""Random block gates, a stateful extra loss, and a SIGKILL of its own process once."""
import os
import signal
from pathlib import Path

import torch

from bench.measure.latency import random_gated
from bench.method import Method
from bench.registry import register_method


@register_method
class DiesOnce(Method):
    name = "dies_once"
    description = "test method: random gates, stateful loss, killed once at the start of an epoch"
    options = {"kill_epoch": 2}

    def __init__(self, preset="default", **overrides):
        super().__init__(preset, **overrides)
        self.calls = 0

    def build(self, backbone):
        return random_gated(backbone, "block", 0.7)

    def on_epoch_start(self, model, epoch, num_epochs):
        marker = Path(os.environ["DIES_ONCE_MARKER"])
        if epoch == self.config["kill_epoch"] and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def extra_losses(self, model, step):
        self.calls += 1
        weight = 1e-4 * (self.calls % 5)
        return {"decay": weight * sum(p.pow(2).sum() for p in model.parameters())}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]
'''


def read(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch random-gate run: its record and its kept model."""
    results = tmp_path_factory.mktemp("reference")
    spec = make_spec("random_gate", "digits", profile="smoke", epochs=3, max_train_examples=192, max_val_examples=100,
                     max_test_examples=200)
    run(spec, resolve_data_root(None), results, progress=False)
    return spec, results


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Raise KeyboardInterrupt right after epoch `epoch`'s resumable state is saved (before its val scoring)."""
    finish = train._finish_epoch

    def interrupting(training, state):
        if state.epoch == epoch:
            raise KeyboardInterrupt
        return finish(training, state)

    monkeypatch.setattr(train, "_finish_epoch", interrupting)


def test_a_completed_run_keeps_its_model_and_no_resume_file(reference):
    spec, results = reference
    assert not resume_path(results, spec.hash).exists()
    payload = read_checkpoint(model_path(results, spec.hash))
    assert payload["kind"] == "model" and payload["spec"] == spec.to_dict() and payload["spec_hash"] == spec.hash
    assert payload["code_hash"] == read(record_path(results, spec))["code_hash"]
    assert all(isinstance(v, torch.Tensor) for v in payload["model"].values())


def test_an_interrupted_run_resumes_from_its_last_epoch_with_the_identical_record(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert resume_path(tmp_path, spec.hash).exists() and not record_path(tmp_path, spec).exists()
    monkeypatch.undo()
    run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert "resuming after epoch 2/3" in capsys.readouterr().err
    assert comparable(read(record_path(tmp_path, spec))) == comparable(read(record_path(reference_results, spec)))
    assert not resume_path(tmp_path, spec.hash).exists()
    resumed, uninterrupted = (read_checkpoint(model_path(r, spec.hash))["model"] for r in (tmp_path, reference_results))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_a_run_interrupted_after_its_last_epoch_resumes_at_the_final_evaluation(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    interrupt_after_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(spec, resolve_data_root(None), tmp_path, progress=False)
    monkeypatch.undo()
    run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert "resuming after epoch 3/3" in capsys.readouterr().err
    assert comparable(read(record_path(tmp_path, spec))) == comparable(read(record_path(reference_results, spec)))


def prepared_resume_file(spec, results, monkeypatch):
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(spec, resolve_data_root(None), results, progress=False)
    monkeypatch.undo()
    return resume_path(results, spec.hash)


def check_fresh_start(spec, results, reference_results, capsys, reason: str) -> None:
    run(spec, resolve_data_root(None), results, progress=False)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("dynbench: warning:")]
    assert len(warnings) == 1 and reason in warnings[0] and "training from the first epoch" in warnings[0]
    assert "resuming after" not in err
    assert comparable(read(record_path(results, spec))) == comparable(read(record_path(reference_results, spec)))


def test_a_truncated_resume_file_is_refused_and_the_run_starts_afresh(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    path = prepared_resume_file(spec, tmp_path, monkeypatch)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    check_fresh_start(spec, tmp_path, reference_results, capsys, "truncated or corrupt")


def test_a_resume_file_of_another_spec_is_refused(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    other = make_spec("random_gate", "digits", profile="smoke", epochs=3, seed=1, max_train_examples=192,
                      max_val_examples=100, max_test_examples=200)
    path = prepared_resume_file(other, tmp_path, monkeypatch)
    path.rename(resume_path(tmp_path, spec.hash))  # e.g. copied under the wrong name
    check_fresh_start(spec, tmp_path, reference_results, capsys, "another run spec")


def test_a_resume_file_from_other_code_is_refused(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    path = prepared_resume_file(spec, tmp_path, monkeypatch)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "code_hash": "0123456789abcdef"}, path)  # as if the code changed since
    check_fresh_start(spec, tmp_path, reference_results, capsys, "other code (code hash 0123456789abcdef")


def test_a_file_that_is_not_a_checkpoint_is_refused(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    path = resume_path(tmp_path, spec.hash)
    path.parent.mkdir(parents=True)
    torch.save([1, 2, 3], path)
    check_fresh_start(spec, tmp_path, reference_results, capsys, "not a DynBench checkpoint")


def test_force_discards_the_resume_file(reference, tmp_path, monkeypatch, capsys):
    spec, reference_results = reference
    prepared_resume_file(spec, tmp_path, monkeypatch)
    run(spec, resolve_data_root(None), tmp_path, force=True, progress=False)
    assert "resuming after" not in capsys.readouterr().err
    assert comparable(read(record_path(tmp_path, spec))) == comparable(read(record_path(reference_results, spec)))


def test_a_run_killed_with_sigkill_resumes_with_the_identical_record(repo_copy, tmp_path):
    """A real process killed without clean-up at the start of epoch 3 of 3; the same command resumes it."""
    (repo_copy / "methods" / "dies_once.py").write_text(DIES_ONCE_METHOD)
    args = ["run", "--method", "dies_once", "--dataset", "digits", "--profile", "smoke", "--epochs", "3", "--batch-size", "128"]
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    marker = tmp_path / "marker"
    first = run_cli(*args, "--results", str(killed), cwd=repo_copy, env={"DIES_ONCE_MARKER": str(marker)})
    assert first.returncode == -9 and marker.exists()
    assert not list(killed.glob("runs/*.json")) and len(list(killed.glob("models/*.resume.pt"))) == 1
    second = run_cli(*args, "--results", str(killed), cwd=repo_copy, env={"DIES_ONCE_MARKER": str(marker)})
    assert second.returncode == 0, second.stderr
    assert "resuming after epoch 2/3" in second.stderr
    marker.unlink()
    marker.touch()  # the reference run is never killed
    reference = run_cli(*args, "--results", str(uninterrupted), cwd=repo_copy, env={"DIES_ONCE_MARKER": str(marker)})
    assert reference.returncode == 0, reference.stderr
    (resumed_path,), (reference_path,) = killed.glob("runs/*.json"), uninterrupted.glob("runs/*.json")
    assert comparable(read(resumed_path)) == comparable(read(reference_path))
    assert not list(killed.glob("models/*.resume.pt")) and len(list(killed.glob("models/*.pt"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("method, options", [
    ("dense", {}), ("random_gate", {}), ("skipnet", {}), ("convnet_aig", {}), ("cosinegate", {}),
    ("batch_shaping", {"bs_memory": 2}), ("midl", {"k_warmup_frac": 1.0}), ("static_small", {})])
def test_every_method_resumes_with_the_identical_record(method, options, tmp_path, monkeypatch):
    """Interrupted after epoch 2 of 3 (SkipNet is in its HRL phase by then, MIDL's k is annealing, batch
    shaping keeps a memory of past batches): the resumed record equals the uninterrupted one."""
    spec = make_spec(method, "digits", profile="smoke", epochs=3, max_train_examples=128, max_val_examples=100,
                     max_test_examples=200, method_options=options)
    run(spec, resolve_data_root(None), tmp_path / "uninterrupted", progress=False)
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(spec, resolve_data_root(None), tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    run(spec, resolve_data_root(None), tmp_path / "resumed", progress=False)
    resumed, uninterrupted = (read(record_path(tmp_path / name, spec)) for name in ("resumed", "uninterrupted"))
    assert comparable(resumed) == comparable(uninterrupted)
