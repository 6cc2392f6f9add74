"""The command line: help for every command, one-line errors with the right exit codes, Ctrl-C handling."""
from __future__ import annotations

import signal

import pytest

from bench.cli import build_parser, main, parse_options
from tests.fixtures.cli import run_cli

INTERRUPTING_METHOD = '''"""Sends itself SIGINT (a real Ctrl-C) at the start of its second epoch."""
import os
import signal

from bench.method import Method
from bench.registry import register_method


@register_method
class Interrupts(Method):
    name = "interrupts"
    description = "interrupts itself mid-run"

    def on_epoch_start(self, model, epoch, num_epochs):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)
'''


@pytest.mark.parametrize("command", ["list", "run", "suite", "tables"])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_unknown_method_is_a_one_line_error_with_exit_2(capsys):
    assert main(["run", "--method", "skipnt", "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynbench: error: unknown method 'skipnt'") and err.count("\n") == 1


def test_unknown_dataset_is_a_one_line_error_with_exit_2(capsys):
    assert main(["run", "--method", "dense", "--dataset", "digitz"]) == 2
    assert "did you mean 'digits'" in capsys.readouterr().err


def test_a_missing_data_root_says_what_to_do(tmp_path, capsys):
    assert main(["run", "--method", "dense", "--dataset", "digits", "--data-root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "is not a folder" in err and "point --data-root" in err


def test_a_missing_data_root_from_the_environment_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DYNBENCH_DATA", str(tmp_path / "gone"))
    assert main(["list"]) == 2
    assert "$DYNBENCH_DATA" in capsys.readouterr().err


def test_ctrl_c_mid_run_leaves_no_partial_record(repo_copy, tmp_path):
    """A real SIGINT at the start of epoch 2. The child starts with SIGINT at its default disposition, so the
    test holds however pytest was started (from a background job, SIGINT is inherited as ignored)."""
    (repo_copy / "methods" / "interrupts.py").write_text(INTERRUPTING_METHOD)
    results = tmp_path / "results"
    result = run_cli("run", "--method", "interrupts", "--dataset", "digits", "--profile", "smoke", "--epochs", "3",
                     "--results", str(results), cwd=repo_copy, sigint=signal.SIG_DFL)
    assert result.returncode == 130
    assert "interrupted" in result.stderr and "Run the same command again" in result.stderr
    assert not results.exists() or not list(results.rglob("*.json*"))
    assert len(list(results.glob("models/*.resume.pt"))) == 1  # epoch 1 is kept: the same command resumes there


def test_started_with_sigint_ignored_dynbench_keeps_ignoring_it(repo_copy, tmp_path):
    """As documented (README, `dynbench --help`): like any Unix tool, a dynbench started with SIGINT ignored
    (`nohup`, `cmd &` in a script) is not stopped by Ctrl-C; the run completes."""
    (repo_copy / "methods" / "interrupts.py").write_text(INTERRUPTING_METHOD)
    results = tmp_path / "results"
    result = run_cli("run", "--method", "interrupts", "--dataset", "digits", "--profile", "smoke", "--epochs", "2",
                     "--results", str(results), cwd=repo_copy, sigint=signal.SIG_IGN)
    assert result.returncode == 0, result.stderr
    assert len(list(results.glob("runs/*.json"))) == 1


def test_run_prints_accuracy_macs_and_the_record_path(tmp_path, capsys):
    assert main(["run", "--method", "dense", "--dataset", "digits", "--profile", "smoke", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "executed MACs 0.764 M" in out and str(tmp_path) in out


def test_options_parse_as_python_literals():
    assert parse_options(["rate=0.5", "gate=rnn", "hard=true", "k=3"]) == {"rate": 0.5, "gate": "rnn", "hard": True, "k": 3}
