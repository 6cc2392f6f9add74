"""Latency measured on other machines: evaluation records `<results>/evals/*.json` (written by `dynbench
eval`), joined to the board rows of the runs they evaluated. Each machine gets its own columns, named by its
device and hardware; they never mix with the latency the training machine measured."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.reporting.boards import Board, warn

EVAL_FORMAT = 1


@dataclass(frozen=True)
class EvalLatency:
    """One evaluation of one trained run on one machine."""

    training_spec_hash: str
    training_code_hash: str
    machine: str  # device and hardware in words, the column header
    saving: float  # 1 − dynamic / dense latency (fraction), NaN when latency was not measured
    saving_mode: str
    score: float  # the primary metric measured there (fraction)


def machine_label(device: str, hardware: dict) -> str:
    """`cuda: NVIDIA H200` / `cpu: x86_64, 16 threads`: what a reader needs to know which machine it was."""
    if hardware.get("gpu"):
        return f"{device}: {hardware['gpu']}"
    details = [hardware.get(k) for k in ("processor", "machine") if hardware.get(k) not in (None, "", "unknown")]
    threads = hardware.get("torch_threads")
    return f"{device}: " + ", ".join(map(str, details + ([f"{threads} threads"] if threads else []))) if details or threads else device


def load_evals(results_dir: Path) -> list[EvalLatency]:
    """Every readable evaluation record; a broken one is skipped with a warning naming it."""
    evals = []
    for path in sorted((results_dir / "evals").glob("*.json")):
        try:
            data = json.loads(path.read_text())
            if data.get("kind") != "eval":
                raise ValueError("its kind is not 'eval'")
            latency = data.get("latency") or {}
            metrics = data["metrics"]
            score = metrics.get("accuracy", metrics.get("miou"))
            saving = latency.get("saving")
            if (saving is not None and not isinstance(saving, (int, float))) or not isinstance(score, (int, float)):
                raise ValueError("latency.saving or the metric is not a number")
            evals.append(EvalLatency(str(data["training_spec_hash"]), str(data["training_code_hash"]),
                                     machine_label(str(data.get("device", "?")), data.get("hardware") or {}),
                                     math.nan if saving is None else float(saving),
                                     str(latency.get("saving_mode", "?")), float(score)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warn(f"evaluation record {path} ignored: {exc}")
    return evals


def eval_columns(board: Board, evals: list[EvalLatency]) -> pd.DataFrame:
    """Per board row, per machine: mean latency saving (%) over the evaluated seeds and how many seeds, in
    columns `latency saving (%) on <machine>, <mode>`; empty when no evaluation matches a run of the board.
    An evaluation of a run whose record has since been retrained (other code hash) is left out."""
    runs = board.runs.set_index("spec_hash")
    by_machine: dict[str, dict[str, list[float]]] = {}
    for evaluation in evals:
        if evaluation.training_spec_hash not in runs.index:
            continue
        run = runs.loc[evaluation.training_spec_hash]
        if run["code_hash"] != evaluation.training_code_hash:
            warn(f"evaluation of {evaluation.training_spec_hash} on {evaluation.machine} is of an older training "
                 f"(code {evaluation.training_code_hash}, record {run['code_hash']}); left out, rerun `dynbench eval`")
            continue
        column = f"latency saving (%) on {evaluation.machine}, {evaluation.saving_mode}"
        by_machine.setdefault(column, {}).setdefault(run["config"], []).append(evaluation.saving)
    columns = {}
    for column, per_config in sorted(by_machine.items()):
        columns[column] = [_cell(per_config.get(config, [])) for config in board.rows["config"]]
    return pd.DataFrame(columns, index=board.rows.index)


def _cell(savings: list[float]) -> str:
    measured = [s for s in savings if not math.isnan(s)]
    if not measured:
        return "—"
    text = f"{100 * sum(measured) / len(measured):.1f}"
    return text if len(measured) == 1 else f"{text} (n={len(measured)})"
