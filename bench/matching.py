"""Controls matched to a trained run (methods.md §7): random gates at its validation execution rates,
a static smaller net at its executed MACs. A control names the run it matches by record path or spec
hash; this module loads that record, checks that it was trained in the same setting (dataset, backbone
and its options), and summarises it for the control's own record, so that the control goes stale when
the matched run changes (its spec hash, code hash or training differs from the one recorded here): the
boards mark it, and `dynbench run` / `suite` train it again.

Only validation figures of the matched run feed a control: `val_exec_rate_per_unit`,
`val_exec_rate_per_gate` (per channel) and the executed MACs, which a run counts on its validation trace
as `val_executed_macs` (older records: the test figure, flagged in the summary).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import DynBenchError
from bench.records import RunRecord, RunSpec, load_record

RESULTS_RUNS = Path("results") / "runs"  # where a bare spec hash is looked up
SETTING_KEYS = ("dataset", "backbone", "backbone_options")


def matched_record_path(method: str, reference: str) -> Path:
    """The record file named by `reference` (a path, or a spec hash under `results/runs/`)."""
    path = Path(reference)
    if not path.is_file():
        path = RESULTS_RUNS / f"{reference}.json"
    if not path.is_file():
        raise DynBenchError(f"{method}: match_record '{reference}' is neither a record file nor a spec hash under "
                            f"{RESULTS_RUNS}; run the method to match first")
    return path


def load_matched(method: str, reference: str) -> RunRecord:
    return load_record(matched_record_path(method, reference))


def check_same_setting(method: str, matched: RunRecord, spec: RunSpec) -> None:
    """A control and the run it matches share dataset, backbone and backbone options; else a clear error
    naming both."""
    ours = {key: getattr(spec, key) for key in SETTING_KEYS}
    theirs = {key: matched.spec.get(key) for key in SETTING_KEYS}
    if ours != theirs:
        describe = lambda s: f"{s['dataset']} on {s['backbone']} {s['backbone_options'] or ''}".rstrip()  # noqa: E731
        raise DynBenchError(f"{method}: match_record {matched.spec_hash} ({matched.spec.get('method')}) was trained on "
                            f"{describe(theirs)}, but this run is {describe(ours)}: match a run of the same setting")


def val_rates(method: str, matched: RunRecord) -> dict[str, float]:
    """Per-unit validation execution rates (fraction 0–1) of the matched run."""
    rates = matched.metrics.get("val_exec_rate_per_unit")
    if not rates:
        raise DynBenchError(f"{method}: record {matched.spec_hash} has no gated units (val_exec_rate_per_unit is empty)")
    return {unit: float(rate) for unit, rate in rates.items()}


def val_executed_fraction(matched: RunRecord) -> float:
    """Mean executed MACs of the matched run over its dense MACs, on validation where recorded."""
    metrics = matched.metrics
    macs = metrics.get("val_executed_macs") or metrics["executed_macs"]
    return float(macs["mean"]) / float(metrics["dense_macs"])


def summary(matched: RunRecord) -> dict[str, Any]:
    """What a control records of the run it matches (tables mark the control stale when these change)."""
    return {"spec_hash": matched.spec_hash, "code_hash": matched.code_hash, "created": matched.created,
            "wall_seconds": matched.wall_seconds,  # with `created`: tells two trainings of one spec apart
            "method": matched.spec.get("method"), "preset": matched.spec.get("preset"),
            "rates_from": "val" if matched.metrics.get("val_exec_rate_per_unit") else "none",
            "macs_from": "val" if matched.metrics.get("val_executed_macs") else "test (record predates val MACs)"}


def matched_run_changed(record: RunRecord) -> str | None:
    """Why a control's record no longer matches the run it names (retrained, gone), or None while it does."""
    recorded = record.metrics.get("matched_record")
    reference = record.spec.get("method_options", {}).get("match_record")
    if not recorded or reference is None:
        return None
    try:
        current = load_matched(record.spec["method"], reference)
    except DynBenchError as exc:
        return str(exc)
    now = summary(current)
    if any(now[key] != recorded.get(key) for key in ("spec_hash", "code_hash", "created", "wall_seconds")):
        return f"the run it matches ({current.spec_hash}) was retrained after it"
    return None
