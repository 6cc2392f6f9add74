"""The pre-registered SkipNet preset rule (scripts/choose_skipnet_presets.py) chooses on validation figures only."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "choose_skipnet_presets.py"
_spec = importlib.util.spec_from_file_location("choose_skipnet_presets", SCRIPT)
rule = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rule)


def metrics(val_accuracy, val_macs, conditional, rates, test_accuracy, test_macs):
    """A record's metrics whose test figures disagree with its validation figures."""
    return {
        "val": {"accuracy": val_accuracy},
        "test": {"accuracy": test_accuracy},
        "val_executed_macs": {"mean": val_macs, "dense": 100.0},
        "executed_macs": {"mean": test_macs, "dense": 100.0},
        "input_dependence": {"gate_share_conditional": conditional},
        "val_exec_rate_per_unit": {f"blocks.{i}": r for i, r in enumerate(rates)},
    }


def candidates():
    m = {
        # best test accuracy and test saving, but below the validation floor: must not be chosen
        "baseline_alpha0.5": metrics(0.9880, 30.0, 0.25, [0.5] * 4, test_accuracy=0.999, test_macs=10.0),
        # qualifies, largest validation saving (60 %)
        "baseline_alpha0.6": metrics(0.9900, 40.0, 0.25, [0.5] * 4, test_accuracy=0.980, test_macs=70.0),
        # qualifies with a smaller validation saving
        "baseline_alpha0.75": metrics(0.9940, 50.0, 0.25, [0.5] * 4, test_accuracy=0.990, test_macs=20.0),
        # largest saving of all, but no conditional gate: a static net
        "baseline_alpha1": metrics(0.9930, 20.0, 0.0, [0.5] * 4, test_accuracy=0.990, test_macs=20.0),
        "hrl_only_alpha0.25": metrics(0.99, 100.0, 0.0, [1.0] * 4, test_accuracy=0.999, test_macs=50.0),
        "hrl_only_alpha0.3": metrics(0.99, 45.0, 0.5, [0.45, 0.45, 0.45, 0.45], test_accuracy=0.90, test_macs=100.0),
        "hrl_only_alpha0.35": metrics(0.99, 40.0, 0.5, [0.4] * 4, test_accuracy=0.999, test_macs=50.0),
    }
    return {preset: rule.validation_figures(values) for preset, values in m.items()}


def test_rule_reads_validation_only():
    baseline, hrl = rule.choose(candidates())
    assert baseline == "baseline_alpha0.6"
    assert hrl == "hrl_only_alpha0.3"


def test_no_baseline_when_none_qualifies():
    figures = candidates()
    for preset in rule.BASELINE:
        figures[preset]["val_accuracy"] = 0.95
    assert rule.choose(figures)[0] is None


def test_ties_go_to_smaller_alpha():
    figures = candidates()
    figures["hrl_only_alpha0.35"]["mean_exec_rate"] = 0.55  # as far from 0.5 as alpha 0.3's 0.45
    assert rule.choose(figures)[1] == "hrl_only_alpha0.3"
    figures["baseline_alpha0.75"]["val_mac_saving"] = figures["baseline_alpha0.6"]["val_mac_saving"]
    assert rule.choose(figures)[0] == "baseline_alpha0.6"
