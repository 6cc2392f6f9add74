"""`dynbench eval`: a kept model re-measured without retraining reproduces its record's test metrics and
executed MACs exactly, writes an evaluation record, and explains a missing or broken model."""
from __future__ import annotations

import json

import pytest

from bench.checkpoints import model_path
from bench.cli import main
from bench.data import resolve_data_root
from bench.records import record_path
from bench.train import make_spec, run

EVAL_KEYS = {"kind", "training_spec_hash", "training_code_hash", "split", "device", "hardware", "versions", "metrics",
             "executed_macs", "mac_saving", "exec_rate_per_unit", "latency", "created", "format"}


def trained(method: str, results, **options):
    spec = make_spec(method, "digits", profile="smoke", epochs=2, max_train_examples=192, max_val_examples=100,
                     max_test_examples=200, **options)
    record, _ = run(spec, resolve_data_root(None), results, progress=False)
    return spec, record


def only_eval(results) -> dict:
    (path,) = (results / "evals").glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("method", ["random_gate", "midl"])  # random draws at test time; k annealed per epoch
def test_eval_reproduces_the_record_exactly(method, tmp_path, capsys, monkeypatch):
    import functools

    import bench.evaluate
    from bench.measure.latency import time_model

    monkeypatch.setattr(bench.evaluate, "time_model", functools.partial(time_model, min_rounds=6, max_rounds=6))
    spec, record = trained(method, tmp_path)
    assert main(["eval", spec.hash[:8], "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "identical to the record" in out and "batch 1 on cpu, 1 thread(s)" in out and "batch 128 on cpu" in out
    evaluation = only_eval(tmp_path)
    assert EVAL_KEYS <= set(evaluation) and evaluation["kind"] == "eval" and evaluation["format"] == 2
    assert evaluation["training_spec_hash"] == spec.hash and evaluation["training_code_hash"] == record.code_hash
    assert evaluation["split"] == "test" and evaluation["device"] == "cpu"
    assert evaluation["metrics"] == record.metrics["test"]
    assert evaluation["executed_macs"] == record.metrics["executed_macs"]
    assert evaluation["exec_rate_per_unit"] == record.metrics["exec_rate_per_unit"]
    assert evaluation["mac_saving"] == record.metrics["mac_saving"]
    assert set(evaluation["latency"]["batches"]) == {"1", "128"}
    assert evaluation["latency"]["batches"]["1"]["rounds"] == 6


def test_eval_on_val_by_record_path_and_an_ungated_model_has_no_latency(tmp_path, capsys):
    spec, record = trained("dense", tmp_path)
    assert main(["eval", str(record_path(tmp_path, spec)), "--split", "val"]) == 0
    evaluation = only_eval(tmp_path)
    assert evaluation["split"] == "val" and evaluation["latency"] is None
    assert evaluation["metrics"]["accuracy"] == record.metrics["val"]["accuracy"]  # the final val score, same model
    assert "not measured (the model has no gates" in capsys.readouterr().out


def test_a_missing_model_says_how_to_get_one(tmp_path, capsys):
    spec, _ = trained("dense", tmp_path)
    model_path(tmp_path, spec.hash).unlink()
    assert main(["eval", spec.hash, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dynbench: error: no trained model for record {spec.hash}") and err.count("\n") == 1
    assert "dynbench run --method dense --dataset digits --profile smoke --seed 0 --epochs 2" in err and "--force" in err


def test_a_truncated_model_file_is_a_clear_error(tmp_path, capsys):
    spec, _ = trained("dense", tmp_path)
    path = model_path(tmp_path, spec.hash)
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["eval", spec.hash, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is unreadable (truncated or corrupt" in err and "train it again with: dynbench run" in err


def test_an_unknown_record_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "feedbeef", "--results", str(tmp_path)]) == 2
    assert "no record in" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.json")]) == 2
    assert "no run record" in capsys.readouterr().err
