"""Leaderboards are built from the records alone: mean ± std over seeds, ranks, plots, report; bad records skipped."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench import DynBenchError
from bench.plots import pareto_front
from bench.records import RunRecord, RunSpec, record_path, save_record
from bench.tables import write_tables


def fake_record(method: str, seed: int, accuracy: float, macs: float, dense: int = 1000,
                rates: dict[str, float] | None = None) -> RunRecord:
    spec = RunSpec(method=method, dataset="digits", backbone="resnet8", seed=seed, profile="smoke", epochs=1)
    return RunRecord(
        spec=spec.to_dict(), spec_hash=spec.hash, code_hash="x", seeds={"init": seed},
        data={"source": "bundled"}, curve=[], train_seconds=2.0, wall_seconds=3.0, versions={}, hardware={"device": "cpu"},
        created="2026-01-01T00:00:00+00:00",
        metrics={"primary_metric": "accuracy", "test": {"accuracy": accuracy}, "val": {"accuracy": accuracy},
                 "params": 10, "dense_macs": dense,
                 "executed_macs": {"dense": dense, "mean": macs, "std": 0.0, "p50": macs, "p95": macs},
                 "mac_saving": 1 - macs / dense, "exec_rate_per_unit": rates or {}})


def save(results_dir, record: RunRecord) -> None:
    save_record(record_path(results_dir, RunSpec(**record.spec)), record)


def test_leaderboard_aggregates_seeds_ranks_and_writes_every_artifact(results_dir):
    for seed, accuracy in enumerate([0.90, 0.92, 0.94]):
        save(results_dir, fake_record("dense", seed, accuracy, 1000))
    save(results_dir, fake_record("gated_clone", 0, 0.99, 600, rates={"blocks.0": 1.0, "blocks.1": 0.2}))
    markdown = write_tables(results_dir).read_text()
    board = pd.read_csv(results_dir / "leaderboard.csv")
    dense = board[board.method == "dense"].iloc[0]
    assert dense.seeds == 3 and dense.score_mean == pytest.approx(0.92)
    assert dense.score_std == pytest.approx(0.02)  # sample std over seeds
    assert list(board.sort_values("rank").method) == ["gated_clone", "dense"]
    assert "92.00 ± 2.00" in markdown and "Rank:" in markdown and "MACs:" in markdown
    assert "[digits](digits/leaderboard.md)" in markdown
    # an unknown plugin's records are marked stale rather than crashing the tables
    assert board[board.method == "gated_clone"].iloc[0].stale
    assert len(pd.read_csv(results_dir / "runs.csv")) == 4
    for artifact in ("digits/leaderboard.md", "digits/leaderboard.csv", "digits/pareto.png", "digits/exec_rates.png"):
        assert (results_dir / artifact).stat().st_size > 0, artifact
    report = (results_dir / "report.html").read_text()
    assert report.count("<tr>") == 3 and report.count("data:image/png;base64,") == 2
    assert 'class="sortable"' in report and "http" not in report.replace("https://", "").split("<body>")[0]


def test_a_corrupt_or_malformed_record_is_reported_and_ignored(results_dir, capsys):
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    (results_dir / "runs" / "deadbeef.json").write_text('{"spec": {"method": "den')
    malformed = fake_record("dense", 1, 0.9, 1000)
    del malformed.metrics["executed_macs"]
    save(results_dir, malformed)
    write_tables(results_dir)
    err = capsys.readouterr().err
    assert "corrupt run record" in err and "deadbeef.json" in err and "malformed run record" in err
    assert len(pd.read_csv(results_dir / "leaderboard.csv")) == 1


def test_no_records_is_a_clear_error(results_dir):
    with pytest.raises(DynBenchError, match="no run records"):
        write_tables(results_dir)


def test_pareto_front_keeps_only_undominated_points():
    macs = pd.Series([1.0, 2.0, 2.0, 3.0, 0.5]).to_numpy()
    score = pd.Series([0.90, 0.95, 0.93, 0.94, 0.80]).to_numpy()
    assert list(pareto_front(macs, score)) == [4, 0, 1]


def test_record_fields_round_trip():
    record = fake_record("dense", 0, 0.9, 1000)
    assert RunRecord(**dataclasses.asdict(record)) == record


def test_runs_that_differ_in_method_options_are_separate_rows_labelled_by_their_options(results_dir):
    """Two random gates matched to different records must not be averaged as if they were seeds."""
    for reference, accuracy in (("results/runs/aaaa.json", 0.6), ("results/runs/bbbb.json", 0.5)):
        record = fake_record("random_gate", 0, accuracy, 700)
        spec = RunSpec(**{**record.spec, "method_options": {"match_record": reference}})
        save(results_dir, dataclasses.replace(record, spec=spec.to_dict(), spec_hash=spec.hash))
    write_tables(results_dir)
    board = pd.read_csv(results_dir / "leaderboard.csv")
    assert sorted(board["entry"]) == ["random_gate [match_record=aaaa]", "random_gate [match_record=bbbb]"]
    assert board["seeds"].tolist() == [1, 1] and board["score_std"].tolist() == [0.0, 0.0]


def test_the_code_hash_ignores_the_reporting_modules_only(tmp_path):
    """Changing how tables look must not make every record stale; changing what a run executes must."""
    from bench.records import REPORTING_MODULES, _framework_hash

    copy = tmp_path / "bench"
    shutil.copytree(Path(bench.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = _framework_hash(copy)
    assert original == _framework_hash(Path(bench.__file__).parent)
    for name in REPORTING_MODULES:
        (copy / name).write_text((copy / name).read_text() + "\n# a new column\n")
    assert _framework_hash.__wrapped__(copy) == original
    (copy / "train.py").write_text((copy / "train.py").read_text() + "\n# a new loss\n")
    assert _framework_hash.__wrapped__(copy) != original
