"""Cross-machine noise of a suite: the same records (same spec hash) produced in two results folders — two
machines, or two thread counts — compared run by run. Writes the `noise.json` every board of that profile
quotes: {"description": str, "rows": [{"dataset", "profile", "backbone", "entry", "seed", "spec_hash",
"first", "second", "abs_diff"}]} (scores and differences as fractions of the primary metric)."""
from __future__ import annotations

import json
from pathlib import Path

from bench import DynBenchError
from bench.reporting.boards import entry_label, load_records


def measure_noise(first: Path, second: Path, description: str) -> dict:
    """Per run present in both folders' `runs/`, the absolute difference of its test score."""
    other = {record.spec_hash: record for record in load_records(second)}
    rows = []
    for record in load_records(first):
        twin = other.get(record.spec_hash)
        if twin is None:
            continue
        metric = record.metrics.get("primary_metric", "accuracy")
        a, b = record.metrics["test"][metric], twin.metrics["test"][metric]
        rows.append({"dataset": record.spec["dataset"], "profile": record.spec["profile"],
                     "backbone": record.spec["backbone"], "entry": entry_label(record.spec),
                     "seed": record.spec["seed"], "spec_hash": record.spec_hash, "first": a, "second": b,
                     "abs_diff": abs(a - b)})
    if not rows:
        raise DynBenchError(f"no run of {first / 'runs'} has a twin (same spec hash) in {second / 'runs'}; "
                            "run the same suite into both folders first")
    return {"description": description, "rows": rows}


def write_noise(first: Path, second: Path, description: str) -> Path:
    """`first/noise.json` from `measure_noise`; `dynbench tables --results first` then quotes it."""
    path = first / "noise.json"
    path.write_text(json.dumps(measure_noise(first, second, description), indent=1) + "\n")
    return path
