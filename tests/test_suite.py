"""Suites: TOML errors name the file and key; completed runs are kept and a suite resumes."""
from __future__ import annotations

import pytest

from bench import DynBenchError
from bench.data import resolve_data_root
from bench.records import record_path
from bench.suite import load_suite, plan, run_suite
from bench.reporting.tables import write_tables


def write_suite(tmp_path, text: str):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name, seeds", [("quick", (0,)), ("standard", (0, 1, 2))])
def test_shipped_suites_cover_every_method_on_every_available_dataset(tmp_path, name, seeds):
    from bench import registry

    specs, skipped = plan(load_suite(name), tmp_path)  # an empty data root: only bundled datasets
    runs = {(s.method, s.dataset, s.seed) for s in specs}
    assert {("dense", "digits", seed) for seed in seeds} <= runs and {s.seed for s in specs} == set(seeds)
    assert {s.method for s in specs} == set(registry.available("methods"))
    assert all(s.profile == name for s in specs)


@pytest.mark.parametrize("text, message", [
    ('profile = "smoke"\nseeds = [0]\ndatasets = ["digits"]\n', "missing key 'methods'"),
    ('profile = "smoke"\nseeds = 0\ndatasets = ["digits"]\nmethods = ["dense"]\n', "'seeds' must be a list"),
    ('profile = "smoke"\nseeds = [0]\ndatasets = ["digits"]\nmethods = ["dense"]\nepoch = 3\n', "unknown key"),
    ('profile = "smoke\n', "suite.toml"),
])
def test_suite_file_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(DynBenchError, match=message) as error:
        load_suite(write_suite(tmp_path, text))
    assert "suite.toml" in str(error.value)


@pytest.mark.parametrize("text, message", [
    ('profile = "smoke"\nseeds = [0]\ndatasets = ["digits"]\nmethods = [\n  "dense",\n  "skipnett",\n]\n',
     r"suite.toml:6: key 'methods': unknown method 'skipnett'"),
    ('profile = "smoke"\nseeds = [0]\ndatasets = ["digts"]\nmethods = ["dense"]\n',
     r"suite.toml:3: key 'datasets': unknown dataset 'digts': did you mean 'digits'"),
    ('profile = "quik"\nseeds = [0]\ndatasets = ["digits"]\nmethods = ["dense"]\n',
     r"suite.toml:1: key 'profile': unknown profile 'quik'"),
    ('profile = "smoke"\nseeds = [0]\ndatasets = ["digits"]\nmethods = ["dense:fast"]\n',
     r"suite.toml:4: key 'methods': method 'dense' has no preset 'fast'"),
    ('profile = "smoke"\nseeds = ["a"]\ndatasets = ["digits"]\nmethods = ["dense"]\n',
     r"suite.toml:2: key 'seeds' must list integers"),
    ('profile = "smoke"\nseeds = [0]\ndatasets = "everything"\nmethods = ["dense"]\n',
     r"suite.toml:3: key 'datasets' must be a list of names or \"available\""),
])
def test_unknown_names_in_a_suite_are_caught_with_file_line_and_key(tmp_path, text, message):
    with pytest.raises(DynBenchError, match=message):
        load_suite(write_suite(tmp_path, text))


def test_available_datasets_and_all_methods_expand_and_absent_data_is_skipped(tmp_path):
    suite = load_suite(write_suite(tmp_path, 'profile = "smoke"\nseeds = [0]\ndatasets = "available"\nmethods = "all:*"\n'))
    specs, skipped = plan(suite, tmp_path)
    assert ("dense", "digits", "default") in {(s.method, s.dataset, s.preset) for s in specs}
    assert all(reason for reason in skipped.values())


def test_smoke_suite_end_to_end_and_resume(tmp_path, capsys):
    """The end-to-end smoke run: suite -> records -> tables; a second pass keeps every completed run."""
    suite = load_suite(write_suite(tmp_path, 'profile = "smoke"\nseeds = [0, 1]\ndatasets = ["digits"]\nmethods = ["dense"]\n'))
    results = tmp_path / "results"
    first_spec = plan(suite, resolve_data_root(None))[0][0]
    assert run_suite(suite, resolve_data_root(None), results) == 0
    first_record = record_path(results, first_spec).read_text()
    record_path(results, plan(suite, resolve_data_root(None))[0][1]).unlink()  # as if the suite had been interrupted after one run
    capsys.readouterr()
    assert run_suite(suite, resolve_data_root(None), results) == 0
    progress = capsys.readouterr().err
    assert "[1/2] dense on digits (resnet8, smoke, seed 0): kept" in progress
    assert "[2/2] dense on digits (resnet8, smoke, seed 1): test acc" in progress
    assert record_path(results, first_spec).read_text() == first_record
    board = write_tables(results).read_text()
    assert "| dense" in board and "digits" in board


def test_killing_a_suite_midway_keeps_completed_runs_and_no_record_is_corrupt(tmp_path):
    """`make bench` killed mid-suite (SIGKILL: no chance to clean up), then run again."""
    import os
    import signal
    import subprocess
    import sys

    from bench.records import load_record
    from tests.fixtures.cli import REPO

    suite = write_suite(tmp_path, 'profile = "smoke"\nseeds = [0, 1, 2]\ndatasets = ["digits"]\nmethods = ["dense"]\n')
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "suite", suite, "--results", str(results)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("[1/3]"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    kept = sorted(results.glob("runs/*.json"))
    assert 1 <= len(kept) < 3
    for path in kept:
        load_record(path)  # raises on a corrupt record
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count(": kept (record") == len(kept)
    assert len(list(results.glob("runs/*.json"))) == 3
