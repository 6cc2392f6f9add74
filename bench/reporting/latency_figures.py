"""Realized latency on the boards: the latency records of the quiet timing pass (`<results>/latency/`,
`bench.timing`) and the latency inside `dynbench eval` records (`<results>/evals/`), joined to the board rows
of the runs they timed. Each machine gets its own figures, named by its device and hardware; machines
never mix. A figure of a run retrained since (other training code) or made by older timing code is left
out with a warning."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.reporting.boards import Board, warn

BATCHES = ("1", "128")
NO_BATCHED_CHANNEL_SPEEDUP = "no batched speedup possible for per-input channel masks on this hardware"
MASKED = "masked execution: no real skipping"
OVERHEAD_BOUND = "real skipping, but no time saved by it here (overhead-bound)"


@dataclass(frozen=True)
class LatencyFigure:
    """One timing of one trained run on one machine (`bench.measure.latency.time_model`)."""

    training_spec_hash: str
    training_code_hash: str
    machine: str  # device and hardware in words
    threads: int | None
    batches: dict[str, dict[str, Any]]
    unit_kinds: tuple[str, ...]
    anchor: str
    source: str  # "latency" (the quiet timing pass of `dynbench suite` / `dynbench time`) or "eval"
    load: float  # the machine's 1-minute load average around the timing (NaN when not recorded)


def machine_label(device: str, hardware: dict) -> str:
    """`cuda: NVIDIA H200` / `cpu: x86_64, 2 cores`: what a reader needs to know which machine it was."""
    if hardware.get("gpu"):
        return f"{device}: {hardware['gpu']}"
    details = [hardware.get(k) for k in ("cpu_model", "processor", "machine") if hardware.get(k) not in (None, "", "unknown")]
    cores = hardware.get("cpu_count")
    return f"{device}: " + ", ".join(map(str, details + ([f"{cores} cores"] if cores else []))) if details or cores else device


def load_figures(results_dir: Path) -> list[LatencyFigure]:
    """Every current latency figure under `results_dir`; broken, older-format or stale-timing files are
    skipped with one warning each."""
    from bench.timing import LATENCY_FORMAT, timing_code_hash

    current_timing = timing_code_hash()
    figures = []
    files = [*sorted((results_dir / "latency").glob("*.json")), *sorted((results_dir / "evals").glob("*.json"))]
    for path in files:
        try:
            data = json.loads(path.read_text())
            if data.get("kind") == "eval" and data.get("latency") is None:
                continue  # an ungated model: nothing was timed
            latency = data["latency"]
            if data.get("kind") not in ("latency", "eval") or "batches" not in latency:
                raise ValueError("not a latency or evaluation record of the current format (`dynbench time` redoes it)")
            if data.get("timing_code_hash") != current_timing or (
                    data["kind"] == "latency" and data.get("format") != LATENCY_FORMAT):
                warn(f"latency record {path} was made by older timing code; left out, run `dynbench time`")
                continue
            for key, batch in latency["batches"].items():
                for field in ("saving", "mac_saving", "all_on_overhead"):
                    if not isinstance(batch[field], (int, float)):
                        raise ValueError(f"batches.{key}.{field} is not a number")
            figures.append(LatencyFigure(str(data["training_spec_hash"]), str(data["training_code_hash"]),
                                         machine_label(str(data.get("device", "?")), data.get("hardware") or {}),
                                         latency.get("threads"), latency["batches"], tuple(latency.get("unit_kinds", ())),
                                         str(latency.get("anchor", "?")), str(data["kind"]),
                                         max(float(data.get("load_before", math.nan)), float(data.get("load_after", math.nan)))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warn(f"latency figure {path} ignored: {exc}")
    return figures


def board_figures(board: Board, figures: list[LatencyFigure]) -> dict[str, dict[str, list[LatencyFigure]]]:
    """Per machine, per board configuration: the figures of its runs (current training code only)."""
    runs = board.runs.set_index("spec_hash")
    found: dict[str, dict[str, list[LatencyFigure]]] = {}
    for figure in figures:
        if figure.training_spec_hash not in runs.index:
            continue
        run = runs.loc[figure.training_spec_hash]
        if run["code_hash"] != figure.training_code_hash:
            _warn_once(f"latency of {figure.training_spec_hash} on {figure.machine} is of an older training (code "
                       f"{figure.training_code_hash}, record {run['code_hash']}); left out, run `dynbench time`")
            continue
        found.setdefault(figure.machine, {}).setdefault(run["config"], []).append(figure)
    return found


def main_machine(found: dict[str, dict[str, list[LatencyFigure]]]) -> str | None:
    """The board's own latency column: the machine with the most rows timed by the timing pass (`dynbench
    suite` / `dynbench time`), then by `dynbench eval`; ties by name."""
    def weight(machine: str) -> tuple[int, int, str]:
        figures = [f for per_config in found[machine].values() for f in per_config]
        return (-sum(f.source == "latency" for f in figures), -len(found[machine]), machine)
    return min(found, key=weight) if found else None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warn(message)


def _mean(figures: list[LatencyFigure], batch: str, field: str) -> float:
    values = [f.batches[batch][field] for f in figures if batch in f.batches]
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def saving_cell(figures: list[LatencyFigure], batch: str) -> str:
    """Latency saving (%) with its 95 % CI for one timed seed; the mean and n over several seeds."""
    timed = [f for f in figures if batch in f.batches]
    if not timed:
        return "—"
    if verdict(timed, batch) == NO_BATCHED_CHANNEL_SPEEDUP:
        return "no batched speedup"
    if len(timed) == 1:
        b = timed[0].batches[batch]
        return f"{_pct(b['saving'])} [{_pct(b['saving_ci'][0])}, {_pct(b['saving_ci'][1])}]"
    return f"{_pct(_mean(timed, batch, 'saving'))} (n={len(timed)})"


def verdict(figures: list[LatencyFigure], batch: str | None = None) -> str:
    """'masked execution: no real skipping' when, with every gate off, the path still runs the units' layers
    or saves no MACs; 'real skipping, but no time saved ...' when it skips but time does not fall with every
    gate off (at any timed batch); for channel / neuron units, 'no batched speedup possible ...' when the
    batched saving's CI lies below 0; else 'real skipping'."""
    batches = [batch] if batch else sorted({b for f in figures for b in f.batches}, key=int)
    timed = [f.batches[b] for f in figures for b in batches if b in f.batches]
    if not any(b.get("skips_for_real") for b in timed):
        return MASKED
    if not any(b.get("time_falls", True) for b in timed):
        return OVERHEAD_BOUND
    channel_like = any(k in ("channel", "neuron") for f in figures for k in f.unit_kinds)
    batched = [b for b in batches if b != "1"]
    if channel_like and batched and all(f.batches[b]["saving_ci"][1] < 0 for f in figures for b in batched if b in f.batches):
        return NO_BATCHED_CHANNEL_SPEEDUP
    return "real skipping"


def main_columns(board: Board, figures: list[LatencyFigure]) -> pd.DataFrame:
    """The board's own latency column (its main machine): saving at batch 1 / batched, in percent."""
    found = board_figures(board, figures)
    machine = main_machine(found)
    per_config = found.get(machine, {}) if machine else {}
    cells = []
    for config in board.rows["config"]:
        timed = per_config.get(config, [])
        cells.append("—" if not timed else " / ".join(saving_cell(timed, b) for b in BATCHES))
    return pd.DataFrame({"latency saving b1 / b128 (%)": cells}, index=board.rows.index)


def latency_frame(board: Board, figures: list[LatencyFigure]) -> tuple[str, pd.DataFrame] | None:
    """The board's latency table for each machine, with the line that says how it was timed."""
    found = board_figures(board, figures)
    if not found:
        return None
    frames = []
    for machine in sorted(found, key=lambda m: m != main_machine(found)):
        for _, row in board.rows.iterrows():
            timed = found[machine].get(row["config"], [])
            if not timed:
                continue
            frames.append({
                "rank": row["rank"], "method": row["entry"], "machine": machine, "seeds timed": len(timed),
                "saving b1 (%) [95 % CI]": saving_cell(timed, "1"), "saving b128 (%) [95 % CI]": saving_cell(timed, "128"),
                "MAC saving of timed inputs (%)": _pct(_mean(timed, "1", "mac_saving")),
                "realized b1 / b128": " / ".join(_ratio(timed, b) for b in BATCHES),
                "all-on overhead b1 / b128 (%)": " / ".join(_pct(_mean(timed, b, "all_on_overhead")) for b in BATCHES),
                "b1 form": _form(timed),
                "p95 / p50 b1": _tail(timed),
                "dynamic / anchor b1": _anchor(timed),
                "load": _load(timed),
                "execution": verdict(timed),
            })
    first = next(iter(v for m in found.values() for v in m.values()))[0]
    threads = f"{first.threads} thread(s)" if first.threads else "GPU"
    line = (f"Timed after training, each model alone ({threads}): batch 1 = 16 test inputs one at a time, batch 128 = "
            "one pass; at batch 1 the dense copy and the gated model run as TorchScript programs where the program "
            "decides and computes as the eager path ('b1 form'); rounds in rotating order of the dense copy, the model "
            "as trained (really skipping), every gate "
            f"forced on, every gate forced off, and a fixed anchor network ({first.anchor}, CIFAR input, seeded); "
            "saving = 1 − dynamic / dense, median over paired rounds with its 95 % CI (order statistics); realized = "
            "latency saving ÷ MAC saving of the same inputs; all-on overhead = gates forced on vs dense; 'masked "
            "execution' = forcing every gate off does not save at least a fifth of the MACs it removes in time.")
    return line, pd.DataFrame(frames)


def _ratio(figures: list[LatencyFigure], batch: str) -> str:
    saving, macs = _mean(figures, batch, "saving"), _mean(figures, batch, "mac_saving")
    if math.isnan(saving) or math.isnan(macs) or macs <= 0.01:
        return "—"  # no MAC saving to realize
    return f"{saving / macs:.2f}"


def _form(figures: list[LatencyFigure]) -> str:
    """How batch 1 ran: "TorchScript" programs or "eager" PyTorch (records before programs existed: eager)."""
    forms = sorted({f.batches["1"].get("path", "eager") for f in figures if "1" in f.batches})
    return " / ".join("TorchScript" if form == "torchscript" else form for form in forms) or "—"


def _tail(figures: list[LatencyFigure]) -> str:
    ratios = [f.batches["1"]["dynamic"]["p95"] / f.batches["1"]["dynamic"]["p50"] for f in figures if "1" in f.batches]
    return f"{statistics.fmean(ratios):.2f}" if ratios else "—"


def _load(figures: list[LatencyFigure]) -> str:
    """The highest load average around the timings; 'busy' when it exceeds the timing's threads by 0.5:
    something else ran on the machine (another training run, another user)."""
    loads = [f.load for f in figures if not math.isnan(f.load)]
    if not loads:
        return "—"
    busy = any(f.load > (f.threads or 1) + 0.5 for f in figures if not math.isnan(f.load))
    return f"{max(loads):.1f}" + (" (busy)" if busy else "")


def _anchor(figures: list[LatencyFigure]) -> str:
    ratios = [f.batches["1"]["anchor_ratio"] for f in figures if "1" in f.batches]
    return f"{statistics.fmean(ratios):.3f}" if ratios else "—"
