"""scripts/board_runs.py sizes a run for `--stop-at` from the board's log, scaled to this machine's speed."""

import importlib.util
import json
import subprocess
import statistics
import sys
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "board_runs.py"
_spec = importlib.util.spec_from_file_location("board_runs", SCRIPT)
board_runs = importlib.util.module_from_spec(_spec)
sys.modules["board_runs"] = board_runs  # its dataclasses look their module up there
_spec.loader.exec_module(board_runs)


def write_log(folder: Path, *durations: str) -> Path:
    (folder / "log.txt").write_text("".join(f"some run output\n{board_runs.DURATION_MARK} {d}\n" for d in durations))
    return folder


def test_no_logged_training_gives_no_estimate(tmp_path: Path) -> None:
    assert board_runs.estimated_seconds(tmp_path, "skipnet", "default", speed=500.0) is None


def test_durations_from_a_machine_of_this_speed_are_preferred(tmp_path: Path) -> None:
    out = write_log(tmp_path, "skipnet:default 9000 250.0", "skipnet:default 5000 760.0", "skipnet:default 5400 790.0")
    assert board_runs.estimated_seconds(out, "skipnet", "default", speed=776.0) == pytest.approx(5200.0)


def test_without_a_machine_of_this_speed_every_duration_counts_as_it_is(tmp_path: Path) -> None:
    out = write_log(tmp_path, "skipnet:default 9000 250.0", "skipnet:default 5000", "skipnet:default 6000 760.0")
    assert board_runs.estimated_seconds(out, "skipnet", "default", speed=500.0) == pytest.approx(6000.0)


def test_an_entry_never_trained_is_sized_by_the_step_ratios_of_those_that_did(tmp_path: Path) -> None:
    ratio = board_runs.STEP_RATIO
    out = write_log(tmp_path, "dense:default 4000 400.0", "random_gate:default 4080 400.0", "midl:default 9999 250.0")
    # on this machine's speed: dense 4000 s and random gates 4080 s are both 4000 dense-seconds
    assert board_runs.estimated_seconds(out, "midl", "default", speed=400.0) == pytest.approx(
        4000 * ratio["midl"])
    # a machine of no logged speed: every line, the same entry's own first
    assert board_runs.estimated_seconds(out, "midl", "default", speed=1000.0) == pytest.approx(9999.0)
    assert board_runs.estimated_seconds(out, "skipnet", "default") == pytest.approx(
        statistics.median([4000, 4080 / ratio["random_gate"], 9999 / ratio["midl"]]) * ratio["skipnet"])


def test_the_speed_probe_measures_images_per_second() -> None:
    assert board_runs.machine_speed(threads=1) > 0


def write_record(path: Path, rates: dict[str, float]) -> Path:
    fields = {"spec": {}, "spec_hash": "0", "code_hash": "0", "seeds": {}, "data": {}, "curve": [], "train_seconds": 1.0,
              "wall_seconds": 1.0, "versions": {}, "hardware": {}, "created": "2026-12-04T00:00:00+00:00",
              "metrics": {"val_exec_rate_per_unit": rates}}
    path.write_text(json.dumps(fields))
    return path


def run_board(monkeypatch, tmp_path: Path, fake_run, lanes: int, seeds: tuple[str, ...] = ("0",)) -> None:
    """board_runs.main on an MNIST board (seed 0 unless told), every subprocess answered by `fake_run`."""
    monkeypatch.setattr(board_runs.subprocess, "run", fake_run)
    monkeypatch.setattr(board_runs, "machine_speed", lambda threads: 500.0)
    monkeypatch.setattr(board_runs, "settle", lambda: None)
    monkeypatch.setattr(sys, "argv", ["board_runs.py", "--dataset", "mnist", "--backbone", "resnet20", "--epochs", "1",
                                      "--out", str(tmp_path / "board"), "--seeds", *seeds, "--lanes", str(lanes)])
    assert board_runs.main() == 0


def test_a_gated_run_that_executes_every_unit_needs_no_random_gate_control(tmp_path: Path) -> None:
    assert board_runs.executes_every_unit(write_record(tmp_path / "all_on.json", {"blocks.1": 1.0, "blocks.2": 1.0}))
    assert not board_runs.executes_every_unit(write_record(tmp_path / "gating.json", {"blocks.1": 1.0, "blocks.2": 0.93}))


def test_each_methods_gated_run_trains_before_the_controls_of_its_seed(tmp_path, monkeypatch) -> None:
    commands: list[list[str]] = []

    def fake_run(command, **kwargs):
        commands.append(command)
        entry = argument(command, "--method")
        record = write_record(tmp_path / f"{len(commands)}.json", {"blocks.1": 0.5} if entry != "skipnet" else {"blocks.1": 1.0})
        return subprocess.CompletedProcess(command, 0, stdout=f"record: {record}\n", stderr="")

    run_board(monkeypatch, tmp_path, fake_run, lanes=1)
    trained = [argument(c, "--method") for c in commands if "run" in c and "--method" in c]
    gated = [row.entry.partition(":")[0] for row in board_runs.ROWS]
    assert trained[0] == "dense" and trained[1:1 + len(gated)] == gated
    assert set(trained[1 + len(gated):]) <= {"random_gate", "static_small", "midl"}
    skipnet_record = str(tmp_path / f"{trained.index('skipnet') + 1}.json")
    assert not any(f"match_record={skipnet_record}" in c and "random_gate" in c for c in commands)


def two_lane_run(tmp_path: Path, commands: list[list[str]], before_finishing):
    """A fake `subprocess.run` safe for two lanes: logs each command, calls `before_finishing(command)`
    (which may block, as a slow run does), then answers with a record of its own."""
    appending = threading.Lock()

    def fake_run(command, **kwargs):
        with appending:
            commands.append(command)
            number = len(commands)
        before_finishing(command)
        record = write_record(tmp_path / f"{number}.json", {"blocks.1": 0.5})
        return subprocess.CompletedProcess(command, 0, stdout=f"record: {record}\n", stderr="")

    return fake_run


def argument(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def slow_until(begun, slow):
    """A `two_lane_run` hook: a run for which `slow(command)` holds waits (at most 10 s) until one for which
    `begun(command)` holds has started; the list gets whether each slow run saw it."""
    started = threading.Event()
    saw: list[bool] = []

    def hook(command):
        if begun(command):
            started.set()
        if slow(command):
            saw.append(started.wait(timeout=10))

    return hook, saw


def test_with_two_lanes_controls_start_while_a_slow_gated_run_trains(tmp_path, monkeypatch) -> None:
    commands: list[list[str]] = []
    hook, midl_saw_a_control = slow_until(
        begun=lambda c: argument(c, "--method") in ("random_gate", "static_small"),
        slow=lambda c: argument(c, "--method") == "midl" and argument(c, "--preset") == "default")
    run_board(monkeypatch, tmp_path, two_lane_run(tmp_path, commands, hook), lanes=2)
    assert midl_saw_a_control == [True]
    cosinegate_dense = [c for c in commands if "keep_rate=1.0" in c]
    assert len(cosinegate_dense) == 1  # shared by both CosineGate rows: trained once


def test_with_two_lanes_the_next_seed_starts_while_a_slow_control_trains(tmp_path, monkeypatch) -> None:
    commands: list[list[str]] = []
    hook, slow_control_saw_it = slow_until(
        begun=lambda c: argument(c, "--seed") == "1" and argument(c, "--method") != "dense",
        slow=lambda c: argument(c, "--seed") == "0" and "random_topk" in c)  # a seed-0 control
    run_board(monkeypatch, tmp_path, two_lane_run(tmp_path, commands, hook), lanes=2, seeds=("0", "1"))
    assert slow_control_saw_it == [True]
    trained = [(argument(c, "--seed"), argument(c, "--method")) for c in commands if "--method" in c]
    first_of_seed_1 = next(i for i, (seed, method) in enumerate(trained) if seed == "1" and method != "dense")
    seed_0_controls = [i for i, (seed, method) in enumerate(trained) if seed == "0" and method in ("random_gate", "static_small")]
    assert max(seed_0_controls) < first_of_seed_1  # in the queue's order: this seed's controls first


def test_with_one_lane_only_a_run_trained_now_is_timed(tmp_path, monkeypatch) -> None:
    # a reused record was timed when it trained, and its model may not be kept on this machine
    commands: list[list[str]] = []

    def fake_run(command, **kwargs):
        commands.append(command)
        if "--method" not in command:  # `dynbench time` and `dynbench tables`
            return subprocess.CompletedProcess(command, 0, stdout="", stderr="")
        record = write_record(tmp_path / f"{len(commands)}.json", {"blocks.1": 0.5})
        outcome = "trained in 1.0s" if argument(command, "--method") == "convnet_aig" else "reused the existing record"
        return subprocess.CompletedProcess(command, 0, stdout=f"{outcome}\nrecord: {record}\n", stderr="")

    run_board(monkeypatch, tmp_path, fake_run, lanes=1)
    timed_one = [c for c in commands if "time" in c and "--all-seeds" not in c]
    aig_record = next(str(tmp_path / f"{i + 1}.json") for i, c in enumerate(commands)
                      if argument(c, "--method") == "convnet_aig")
    assert [c[c.index("time") + 1] for c in timed_one] == [aig_record]
