"""Leaderboards built from run records alone (pandas): per-dataset and overall Markdown, CSVs, plots, report."""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pandas as pd

from bench import DynBenchError, registry
from bench.macs import COUNTING_RULE
from bench.records import RunRecord, code_hash, load_record
from bench.train import plugin_file

GROUP_KEYS = ["dataset", "method", "preset", "entry", "backbone", "profile", "epochs", "config"]
RANK_RULE = ("Rank: within each dataset, by mean test score (accuracy, or mIoU for segmentation; higher first), ties "
             "broken by mean executed MACs (lower first). The test split is evaluated once per run after training; "
             "nothing is selected on it.")
LATENCY_RULE = ("Latency saving: 1 − dynamic / dense median latency, measured with real skipping (mode, batch size, "
                "device and threads are in each record); '—' = not measured.")


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
    """One row per run, with the dataset's primary test metric as `score`."""
    rows = []
    for record in records:
        try:
            rows.append(_run_row(record))
        except (KeyError, TypeError, AttributeError) as exc:
            print(f"warning: malformed run record {record.spec_hash}: missing or wrong field {exc}; ignored", file=sys.stderr)
    return pd.DataFrame(rows)


def entry_label(spec: dict) -> str:
    """`method[:preset]`, plus the method options a run set beyond its preset (a record path by its name)."""
    label = spec["method"] + ("" if spec["preset"] == "default" else f":{spec['preset']}")
    options = ", ".join(f"{key}={Path(value).stem if isinstance(value, str) and '/' in value else value}"
                        for key, value in sorted(spec.get("method_options", {}).items()))
    return f"{label} [{options}]" if options else label


def _run_row(record: RunRecord) -> dict:
    spec, metrics = record.spec, record.metrics
    primary = metrics.get("primary_metric", "accuracy")
    latency = metrics.get("latency") or {}
    return {
        **{key: spec[key] for key in ("dataset", "method", "preset", "backbone", "profile", "epochs")},
        "entry": entry_label(spec), "seed": spec["seed"], "spec_hash": record.spec_hash,
        "config": dataclasses.replace(record.run_spec, seed=0).hash,  # the spec but its seed: never averaged across
        "metric": primary, "score": metrics["test"][primary], "val_score": metrics["val"][primary],
        "test_examples": record.data.get("test_used", record.data.get("test")),
        "executed_macs": metrics["executed_macs"]["mean"], "executed_macs_std": metrics["executed_macs"]["std"],
        "dense_macs": metrics["dense_macs"], "mac_saving": metrics["mac_saving"],
        "latency_saving": latency.get("saving", math.nan), "params": metrics["params"],
        "train_seconds": record.train_seconds, "stale": is_stale(record), "device": record.hardware.get("device", "?"),
        "exec_rate_per_unit": metrics.get("exec_rate_per_unit", {}),
    }


def leaderboard_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per configuration (the spec but its seed), ranked per dataset."""
    board = runs.groupby(GROUP_KEYS, dropna=False).agg(
        metric=("metric", "first"), seeds=("seed", "nunique"), test_examples=("test_examples", "first"),
        score_mean=("score", "mean"), score_std=("score", "std"),
        val_score_mean=("val_score", "mean"), executed_macs_mean=("executed_macs", "mean"),
        executed_macs_std=("executed_macs", "std"), dense_macs=("dense_macs", "first"),
        mac_saving_mean=("mac_saving", "mean"), mac_saving_std=("mac_saving", "std"),
        latency_saving_mean=("latency_saving", "mean"), params=("params", "first"),
        train_seconds_mean=("train_seconds", "mean"), stale=("stale", "any"),
    ).reset_index()
    for column in ("score_std", "executed_macs_std", "mac_saving_std"):
        board[column] = board[column].fillna(0.0)  # a single seed has no spread
    board = board.sort_values(["dataset", "score_mean", "executed_macs_mean"], ascending=[True, False, True])
    board.insert(0, "rank", board.groupby("dataset").cumcount() + 1)
    return board.reset_index(drop=True)


def display_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as people read it: percentages, millions, one ± column per spread."""
    metric = board["metric"].iloc[0] if len(board) else "accuracy"
    return pd.DataFrame({
        "rank": board["rank"], "method": board["entry"], "backbone": board["backbone"],
        "profile": board["profile"], "epochs": board["epochs"], "seeds": board["seeds"],
        "test n": board["test_examples"].map(lambda n: "?" if pd.isna(n) else f"{int(n):,}"),
        f"test {metric} (%)": [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(board["score_mean"], board["score_std"])],
        "executed MACs (M)": [f"{m / 1e6:.3f} ± {s / 1e6:.3f}" for m, s in zip(board["executed_macs_mean"], board["executed_macs_std"])],
        "MAC saving (%)": (100 * board["mac_saving_mean"]).map("{:.1f}".format),
        "latency saving (%)": board["latency_saving_mean"].map(lambda v: "—" if pd.isna(v) else f"{100 * v:.1f}"),
        "params (k)": (board["params"] / 1e3).map("{:.1f}".format),
        "train time (s)": board["train_seconds_mean"].map("{:.1f}".format),
        "stale": board["stale"].map({True: "yes", False: ""}),
    })


def notes() -> list[str]:
    return [RANK_RULE, COUNTING_RULE, LATENCY_RULE,
            "Mean ± standard deviation over seeds; 'test n' = test examples scored (the `quick` profile scores a "
            "fixed random subset, the same for every run; longer profiles score the whole test split); 'stale' = "
            "the code (plugins or bench framework) changed since the run; rerun the suite to refresh."]


def write_tables(results_dir: Path) -> Path:
    """Rebuild everything under `results/` from the records: `leaderboard.md` (overall, with links),
    `<dataset>/leaderboard.{md,csv}`, `leaderboard.csv`, `runs.csv`, plots and `report.html`.
    Returns the overall Markdown path."""
    from bench.plots import exec_rate_heatmap, pareto_plot
    from bench.report import write_report

    records = load_records(results_dir)
    if not records:
        raise DynBenchError(f"no run records under {results_dir / 'runs'}: run `make bench` or `dynbench run` first")
    runs = runs_frame(records)
    board = leaderboard_frame(runs)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs.drop(columns="exec_rate_per_unit").to_csv(results_dir / "runs.csv", index=False)
    board.to_csv(results_dir / "leaderboard.csv", index=False)
    footer = "\n".join(f"- {line}" for line in notes())
    overall = ["# DynBench leaderboard", "", "Generated by `make tables` from the run records in `results/runs/` "
               "(one JSON file per run: spec, seeds, versions, hardware, curve). Full report: [report.html](report.html).", ""]
    figures: dict[str, dict[str, Path]] = {}
    for dataset, dataset_board in board.groupby("dataset", sort=True):
        folder = results_dir / dataset
        folder.mkdir(exist_ok=True)
        dataset_board.to_csv(folder / "leaderboard.csv", index=False)
        figures[dataset] = {"pareto": pareto_plot(dataset_board, folder / "pareto.png")}
        heatmap = exec_rate_heatmap(runs[runs["dataset"] == dataset], folder / "exec_rates.png")
        if heatmap is not None:
            figures[dataset]["exec_rates"] = heatmap
        images = "".join(f"\n![{name}]({path.name})\n" for name, path in figures[dataset].items())
        (folder / "leaderboard.md").write_text(f"# {dataset}\n\n{display_frame(dataset_board).to_markdown(index=False)}\n"
                                               f"{images}\n{footer}\n")
        best = dataset_board.iloc[0]
        overall += [f"## [{dataset}]({dataset}/leaderboard.md)", "",
                    f"Best: **{best['entry']}** ({100 * best['score_mean']:.2f} % test {best['metric']}, "
                    f"{100 * best['mac_saving_mean']:.1f} % MAC saving). [Pareto plot]({dataset}/pareto.png)", "",
                    display_frame(dataset_board).to_markdown(index=False), ""]
    markdown = results_dir / "leaderboard.md"
    markdown.write_text("\n".join(overall) + "\n" + footer + "\n")
    write_report(results_dir / "report.html", board, figures, notes())
    return markdown
