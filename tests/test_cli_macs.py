"""`dynbench macs` and `dynbench latency`."""
from __future__ import annotations

import pytest

from bench.cli import main


def test_macs_prints_the_block_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["macs", "--backbone", "resnet20", "--input-shape", "3,32,32", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "blocks.8" in out and "40,813,184" in out and "272,474" in out and "Batch norm" in out


def test_macs_prints_the_unit_table_of_channel_gates(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["macs", "--backbone", "textcnn", "--input-shape", "32", "--num-classes", "2", "--gate", "channel",
            "--backbone-option", "vocab_size=100"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "blocks.3" in out and "channel" in out and "128" in out and "always-on" in out


def test_macs_takes_the_shape_from_a_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["macs", "--dataset", "digits"]) == 0
    assert "resnet8: input [1, 8, 8]" in capsys.readouterr().out


def test_latency_prints_dense_and_dynamic_at_batch_1_and_batched(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["latency", "--backbone", "resmlp", "--input-shape", "12", "--num-classes", "2", "--batch-size", "8",
            "--samples", "2", "--budget", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "batch 1 on cpu, 1 thread(s), 12 paired rounds" in out and "batch 8 on cpu" in out
    assert "latency saving" in out and "all-on overhead" in out


@pytest.mark.parametrize("argv, message", [
    (["macs", "--backbone", "resnet21", "--input-shape", "3,32,32", "--num-classes", "10"], "6n+2"),
    (["macs", "--backbone", "resnet20", "--input-shape", "3x32", "--num-classes", "10"], "--input-shape"),
    (["macs", "--backbone", "resnet20"], "--dataset"),
    (["macs", "--dataset", "cifar11"], "cifar11"),
])
def test_bad_arguments_exit_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
