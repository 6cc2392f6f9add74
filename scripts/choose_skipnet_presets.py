"""Apply the pre-registered SkipNet preset rule (results/sweeps/skipnet_presets/README.md) to the sweep's records.

Reads validation figures only: validation accuracy, validation executed MACs, the validation trace's gate
shares and per-block execution rates. Test accuracy is never read. Prints each candidate's figures and the
preset the rule picks in each family (or why none qualifies).

    .venv/bin/python scripts/choose_skipnet_presets.py [--results results/sweeps/skipnet_presets]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.reporting.boards import is_stale, load_records  # noqa: E402

BASELINE = ("baseline_alpha0.5", "baseline_alpha0.6", "baseline_alpha0.75", "baseline_alpha1")
HRL_ONLY = ("hrl_only_alpha0.25", "hrl_only_alpha0.3", "hrl_only_alpha0.35")
DENSE_VAL_ACCURACY = 0.9943  # the MNIST ResNet-20 board's dense validation mean over 3 seeds, fixed by the rule
ACCURACY_MARGIN = 0.005


def alpha_of(preset: str) -> float:
    return float(preset.rpartition("alpha")[2])


def validation_figures(metrics: dict) -> dict[str, float]:
    macs = metrics["val_executed_macs"]
    rates = metrics["val_exec_rate_per_unit"]
    return {
        "val_accuracy": metrics["val"]["accuracy"],
        "val_mac_saving": 1.0 - macs["mean"] / macs["dense"],
        "conditional_share": metrics["input_dependence"]["gate_share_conditional"],
        "mean_exec_rate": sum(rates.values()) / len(rates),
    }


def choose(figures: dict[str, dict[str, float]]) -> tuple[str | None, str]:
    """The rule: (baseline preset or None, HRL-only preset) from each candidate's validation figures."""
    floor = DENSE_VAL_ACCURACY - ACCURACY_MARGIN
    qualified = [p for p in BASELINE
                 if figures[p]["val_accuracy"] >= floor and figures[p]["conditional_share"] > 0]
    baseline = max(qualified, key=lambda p: (round(figures[p]["val_mac_saving"], 6), -alpha_of(p)), default=None)
    hrl = min(HRL_ONLY, key=lambda p: (round(abs(figures[p]["mean_exec_rate"] - 0.5), 6), alpha_of(p)))
    return baseline, hrl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/sweeps/skipnet_presets")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for record in load_records(Path(args.results)):
        spec = record.spec
        if spec["method"] == "skipnet" and spec["seed"] == 0 and not is_stale(record):
            figures[spec["preset"]] = validation_figures(record.metrics)
    missing = [p for p in BASELINE + HRL_ONLY if p not in figures]
    if missing:
        print(f"not every candidate has run yet: missing {', '.join(missing)}; the rule waits for all seven",
              file=sys.stderr)
        return 1

    print("| preset | val accuracy (%) | val MAC saving (%) | conditional gates (%) | mean val exec rate |")
    print("|---|---|---|---|---|")
    for preset in BASELINE + HRL_ONLY:
        f = figures[preset]
        print(f"| {preset} | {100 * f['val_accuracy']:.2f} | {100 * f['val_mac_saving']:.1f} | "
              f"{100 * f['conditional_share']:.0f} | {f['mean_exec_rate']:.3f} |")
    baseline, hrl = choose(figures)
    floor = DENSE_VAL_ACCURACY - ACCURACY_MARGIN
    print(f"\nbaseline family: {baseline or 'none qualifies'} (largest val MAC saving among the candidates with "
          f"val accuracy ≥ {100 * floor:.2f} % and at least one conditional gate)")
    print(f"HRL-only family: {hrl} (mean val execution rate {figures[hrl]['mean_exec_rate']:.3f}, closest to 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
