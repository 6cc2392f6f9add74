"""Leaderboards are built from the records alone: mean ± std over seeds, ranks, corrupt records skipped."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from bench import DynBenchError
from bench.records import RunRecord, RunSpec, save_record, record_path
from bench.tables import write_tables


def fake_record(method: str, seed: int, accuracy: float, macs: float, dense: int = 1000) -> RunRecord:
    spec = RunSpec(method=method, dataset="digits", backbone="resnet8", seed=seed, profile="smoke", epochs=1)
    return RunRecord(
        spec=spec.to_dict(), spec_hash=spec.hash, code_hash="x", seeds={"init": seed},
        data={"source": "bundled"}, curve=[], train_seconds=2.0, wall_seconds=3.0, versions={}, hardware={"device": "cpu"},
        created="2026-01-01T00:00:00+00:00",
        metrics={"test": {"accuracy": accuracy}, "val": {"accuracy": accuracy}, "params": 10, "dense_macs": dense,
                 "executed_macs": {"mean": macs}, "mac_saving": 1 - macs / dense})


def test_leaderboard_aggregates_seeds_and_ranks_by_accuracy(results_dir):
    for seed, accuracy in enumerate([0.90, 0.92, 0.94]):
        record = fake_record("dense", seed, accuracy, 1000)
        save_record(record_path(results_dir, RunSpec(**record.spec)), record)
    record = fake_record("dense_clone", 0, 0.99, 600)
    save_record(record_path(results_dir, RunSpec(**record.spec)), record)
    markdown = write_tables(results_dir).read_text()
    board = pd.read_csv(results_dir / "leaderboard.csv")
    dense = board[board.method == "dense"].iloc[0]
    assert dense.seeds == 3 and dense.test_accuracy_mean == pytest.approx(0.92)
    assert dense.test_accuracy_std == pytest.approx(0.02)  # sample std over seeds
    assert list(board.sort_values("rank").method) == ["dense_clone", "dense"]
    assert "92.00 ± 2.00" in markdown and "Rank:" in markdown and "MACs:" in markdown
    # unknown plugin name -> its records are marked stale rather than crashing the tables
    assert board[board.method == "dense_clone"].iloc[0].stale
    assert len(pd.read_csv(results_dir / "runs.csv")) == 4


def test_a_corrupt_record_is_reported_and_ignored(results_dir, capsys):
    record = fake_record("dense", 0, 0.9, 1000)
    save_record(record_path(results_dir, RunSpec(**record.spec)), record)
    (results_dir / "runs" / "deadbeef.json").write_text('{"spec": {"method": "den')
    write_tables(results_dir)
    assert "corrupt run record" in capsys.readouterr().err
    assert len(pd.read_csv(results_dir / "leaderboard.csv")) == 1


def test_no_records_is_a_clear_error(results_dir):
    with pytest.raises(DynBenchError, match="no run records"):
        write_tables(results_dir)


def test_record_fields_round_trip():
    record = fake_record("dense", 0, 0.9, 1000)
    assert RunRecord(**dataclasses.asdict(record)) == record
