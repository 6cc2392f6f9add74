"""Leaderboards built from run records alone (pandas): Markdown and CSV under `results/`."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench import DynBenchError, registry
from bench.macs import COUNTING_RULE
from bench.records import RunRecord, code_hash, load_record
from bench.train import plugin_file

GROUP_KEYS = ["dataset", "method", "preset", "backbone", "profile", "epochs"]
RANK_RULE = ("Rank: within each dataset, by mean test accuracy (higher first); ties broken by mean executed "
             "MACs (lower first). Accuracy is measured once on the test split after training; no selection on test.")


def load_records(results_dir: Path) -> list[RunRecord]:
    """Every readable record under `results/runs/`; corrupt ones are reported on stderr and skipped."""
    records = []
    for path in sorted((results_dir / "runs").glob("*.json")):
        try:
            records.append(load_record(path))
        except DynBenchError as exc:
            print(f"warning: {exc}", file=sys.stderr)
    return records


def is_stale(record: RunRecord) -> bool:
    """True when the code that produced the record (plugins or framework) has changed, or a plugin is gone."""
    try:
        method, dataset = registry.get_method(record.spec["method"]), registry.get_dataset(record.spec["dataset"])
        return code_hash(plugin_file(method), plugin_file(dataset)) != record.code_hash
    except DynBenchError:
        return True


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run."""
    rows = []
    for record in records:
        spec, metrics = record.spec, record.metrics
        rows.append({
            **{key: spec[key] for key in GROUP_KEYS}, "seed": spec["seed"], "spec_hash": record.spec_hash,
            "test_accuracy": metrics["test"]["accuracy"], "val_accuracy": metrics["val"]["accuracy"],
            "executed_macs": metrics["executed_macs"]["mean"], "dense_macs": metrics["dense_macs"],
            "mac_saving": metrics["mac_saving"], "params": metrics["params"], "train_seconds": record.train_seconds,
            "stale": is_stale(record), "device": record.hardware.get("device", "?"),
        })
    return pd.DataFrame(rows)


def leaderboard_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, method, preset, backbone, profile, epochs), ranked."""
    grouped = runs.groupby(GROUP_KEYS, dropna=False)
    board = grouped.agg(
        seeds=("seed", "nunique"), test_accuracy_mean=("test_accuracy", "mean"),
        test_accuracy_std=("test_accuracy", "std"), val_accuracy_mean=("val_accuracy", "mean"),
        executed_macs_mean=("executed_macs", "mean"), dense_macs=("dense_macs", "first"),
        mac_saving_mean=("mac_saving", "mean"), params=("params", "first"),
        train_seconds_mean=("train_seconds", "mean"), stale=("stale", "any"),
    ).reset_index()
    board["test_accuracy_std"] = board["test_accuracy_std"].fillna(0.0)
    board = board.sort_values(["dataset", "test_accuracy_mean", "executed_macs_mean"], ascending=[True, False, True])
    board.insert(0, "rank", board.groupby("dataset").cumcount() + 1)
    return board.reset_index(drop=True)


def to_markdown(board: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "rank": board["rank"], "dataset": board["dataset"],
        "method": board["method"] + board["preset"].map(lambda p: "" if p == "default" else f":{p}"),
        "backbone": board["backbone"], "profile": board["profile"], "epochs": board["epochs"], "seeds": board["seeds"],
        "test acc (%)": [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(board["test_accuracy_mean"], board["test_accuracy_std"])],
        "executed MACs (M)": (board["executed_macs_mean"] / 1e6).map("{:.3f}".format),
        "MAC saving (%)": (100 * board["mac_saving_mean"]).map("{:.1f}".format),
        "params (k)": (board["params"] / 1e3).map("{:.1f}".format),
        "train time (s)": board["train_seconds_mean"].map("{:.1f}".format),
        "stale": board["stale"].map({True: "yes", False: ""}),
    })
    return view.to_markdown(index=False)


def write_tables(results_dir: Path) -> Path:
    """Rebuild `results/leaderboard.{md,csv}` and `results/runs.csv` from the records; returns the Markdown path."""
    records = load_records(results_dir)
    if not records:
        raise DynBenchError(f"no run records under {results_dir / 'runs'}: run `make bench` or `dynbench run` first")
    runs = runs_frame(records)
    board = leaderboard_frame(runs)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(results_dir / "runs.csv", index=False)
    board.to_csv(results_dir / "leaderboard.csv", index=False)
    markdown = results_dir / "leaderboard.md"
    notes = [f"- {RANK_RULE}", f"- {COUNTING_RULE}", "- Mean ± standard deviation over seeds; 'stale' = the code "
             "(plugins or bench framework) changed since the run; rerun the suite to refresh."]
    markdown.write_text("# DynBench leaderboard\n\nGenerated by `make tables` from the run records in `results/runs/`."
                        "\n\n" + to_markdown(board) + "\n\n" + "\n".join(notes) + "\n")
    return markdown
