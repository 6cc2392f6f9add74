"""From run records to boards: one row per run (numbers checked), runs grouped into settings (same dataset,
backbone, profile, schedule and test examples), one aggregated row per configuration with t-intervals over
seeds, its place on the accuracy–MACs front, its input dependence, and paired comparisons with the
controls matched to it. Pure data (pandas); `bench.reporting.tables` writes the files."""
from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench import DynBenchError, registry
from bench.gating.gate_stats import ALWAYS_OFF, ALWAYS_ON
from bench.records import RunRecord, code_hash, load_record
from bench.reporting.stats import dominators, paired_comparison, strongest_dominator, t_interval
from bench.train import make_spec, plugin_file

PROFILE_ORDER = {"paper": 0, "standard": 1, "quick": 8, "smoke": 9}  # longest first; unknown profiles in between
SMOKE_CHECK_PROFILES = ("quick",)  # published, but labelled as a smoke check of the code, not a result
CODE_TEST_PROFILES = ("smoke",)  # tests of the code: their own folder, never beside results
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
SETTING_KEYS = ["dataset", "backbone", "backbone_options", "profile", "epochs", "test_examples", "train_examples",
                "optimizer", "lr", "batch_size", "weight_decay"]
CONTROL_METHODS = {"random_gate": "random gates", "static_small": "static net"}
STATIC_MATCH_TOLERANCE = 0.05  # §7: a static net is matched within ±5 % of the MACs of the gated runs it pairs with
ALL_ON = "all-on"  # the comparison key of the all-gates-on control, scored inside each gated record
BUDGET_DIGITS = 2  # a static net sized by hand (`mac_budget`, no match_record) is matched to 2 decimals


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def safe_name(value: object, what: str) -> str:
    """A name used as a folder: letters, digits, `_ . + -`, no leading dot, no separators (issue 20)."""
    text = str(value)
    if not SAFE_NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"{what} {text!r} is not a safe folder name")
    return text


def load_records(results_dir: Path) -> list[RunRecord]:
    """Every readable record under `<results>/runs/`; corrupt ones are reported on stderr and skipped."""
    records = []
    for path in sorted((results_dir / "runs").glob("*.json")):
        try:
            records.append(load_record(path))
        except DynBenchError as exc:
            warn(str(exc))
    return records


def is_stale(record: RunRecord) -> bool:
    """True when the code that produced the record (plugins or framework) has changed, or a plugin is gone."""
    try:
        method, dataset = registry.get_method(record.spec["method"]), registry.get_dataset(record.spec["dataset"])
        return code_hash(plugin_file(method), plugin_file(dataset)) != record.code_hash
    except DynBenchError:
        return True


def matched_hash(spec: dict) -> str | None:
    """The spec hash of the run a control names in `match_record` (a record path or a bare hash)."""
    reference = spec.get("method_options", {}).get("match_record")
    return None if reference is None else Path(str(reference)).stem


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} is {value!r}, not a number")
    return float(value)


def _config_hash(spec: dict, by_hash: dict[str, RunRecord]) -> str:
    """The spec but its seed; a matched control's `match_record` becomes the matched run's configuration, so
    controls matched to each seed of one configuration are one row with several seeds."""
    spec = {**spec, "seed": 0, "method_options": dict(spec.get("method_options", {}))}
    target = matched_hash(spec)
    if target is not None:
        spec["method_options"]["match_record"] = (_config_hash(by_hash[target].spec, by_hash)
                                                  if target in by_hash else f"missing:{target}")
    canonical = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# random gates kept at rate 1 are a dense net in a method's block form (methods.md §7: the dense control has
# "the same block form"); CosineGate's has no ReLU after the addition
DENSE_FORMS = {"no_act": "dense without the post-add ReLU (CosineGate's block form)",
               "skipnet": "dense in SkipNet's block form", "aig": "dense (random gates kept at rate 1)"}


def dense_reference_form(spec: dict) -> str | None:
    """The block form (composition) of a dense reference run — random gates kept at rate 1 on every block,
    not matched to any run — or None for any other run."""
    if spec["method"] != "random_gate":
        return None
    resolved = _resolved_options(spec)
    options = json.loads(resolved) if resolved else {}
    if (options.get("keep_rate") == 1 and options.get("rates") is None and options.get("match_record") is None
            and options.get("unit") == "block"):
        return options.get("composition")
    return None


def entry_label(spec: dict, by_hash: dict[str, RunRecord] | None = None) -> str:
    """What the row is: `method[:preset]` plus its options beyond the preset; a control matched to a run is
    named by that run's label ("random gates @ skipnet:baseline_alpha0.75 rates"), not by its hash; a dense
    reference in a method's block form by that form."""
    by_hash = by_hash or {}
    form = dense_reference_form(spec)
    if form is not None:
        return DENSE_FORMS.get(form, f"dense [composition={form}]")
    label = spec["method"] + ("" if spec["preset"] == "default" else f":{spec['preset']}")
    options = dict(spec.get("method_options", {}))
    target = matched_hash(spec)
    if target is not None:
        del options["match_record"]
        matched = entry_label(by_hash[target].spec, by_hash) if target in by_hash else f"record {target} (not found)"
        kind = CONTROL_METHODS.get(spec["method"], spec["method"])
        what = "MACs" if spec["method"] == "static_small" else "rates"
        extra = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
        return f"{kind} @ {matched} {what}" + (f" [{extra}]" if extra else "")
    shown = ", ".join(f"{key}={Path(value).stem if isinstance(value, str) and '/' in value else value}"
                      for key, value in sorted(options.items()))
    return f"{label} [{shown}]" if shown else label


def _gate_shares(metrics: dict) -> tuple[float, float, float, bool] | None:
    """(always-on, conditional, always-off shares, strictly static) of a run's gates, from the best field
    the record has: `input_dependence` (every gate, validation trace) > `val_exec_rate_per_gate` (every
    gate's validation rate) > `gate_share_*` (channel/neuron methods, test trace) > `exec_rate_per_unit`
    (one rate per gated unit: exact for block gates only). None: no gates."""
    dependence = metrics.get("input_dependence")
    if isinstance(dependence, dict) and dependence.get("gates"):
        shares = [_number(dependence[f"gate_share_{k}"], f"input_dependence.gate_share_{k}")
                  for k in ("always_on", "conditional", "always_off")]
        return (*shares, bool(dependence["static"]))
    per_gate = metrics.get("val_exec_rate_per_gate")
    if isinstance(per_gate, dict) and per_gate:
        rates = [_number(rate, "val_exec_rate_per_gate") for unit_rates in per_gate.values() for rate in unit_rates]
        on, off = sum(r > ALWAYS_ON for r in rates) / len(rates), sum(r < ALWAYS_OFF for r in rates) / len(rates)
        return on, max(0.0, 1 - on - off), off, all(r in (0.0, 1.0) for r in rates)
    if "gate_share_conditional" in metrics:
        shares = [_number(metrics[f"gate_share_{k}"], f"gate_share_{k}") for k in ("always_on", "conditional", "always_off")]
        return (*shares, abs(shares[1]) < 1e-6 and _number(metrics["executed_macs"]["std"], "executed_macs.std") == 0)
    rates = [_number(rate, "exec_rate_per_unit") for rate in (metrics.get("exec_rate_per_unit") or {}).values()]
    if not rates:
        return None
    on, off = sum(r > ALWAYS_ON for r in rates) / len(rates), sum(r < ALWAYS_OFF for r in rates) / len(rates)
    return on, max(0.0, 1 - on - off), off, all(r in (0.0, 1.0) for r in rates)


def _matched_changed(record: RunRecord, by_hash: dict[str, RunRecord]) -> bool:
    """A control goes stale when the run it matches was retrained since (its code hash moved) or is gone."""
    summary = record.metrics.get("matched_record")
    if not isinstance(summary, dict):
        return False
    matched = by_hash.get(str(summary.get("spec_hash")))
    return matched is None or matched.code_hash != summary.get("code_hash")


def _all_on_score(metrics: dict, primary: str) -> float:
    """The same trained model with every gate forced on (methods.md §7 all-on control), on test."""
    all_on = metrics.get("all_on")
    return _number(all_on["test"][primary], "all_on.test") if isinstance(all_on, dict) else math.nan


def _resolved_options(spec: dict) -> str | None:
    """The method's full option values (defaults < preset < run options) as JSON; None for unknown plugins."""
    try:
        method = registry.get_method(spec["method"])
        options = {**method.options, **method.presets.get(spec["preset"], {}), **spec.get("method_options", {})}
    except (DynBenchError, AttributeError, TypeError):
        return None
    return json.dumps(options, sort_keys=True, default=str)


RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "max_train_examples", "max_val_examples",
               "max_test_examples", "precision")


def follows_profile(spec: dict[str, Any]) -> bool:
    """Whether a run trained with its profile's recipe as its dataset resolves that profile today (no per-run
    training overrides, and the dataset's own backbone options when it runs the dataset's backbone): in a sweep
    of recipes the candidates off it are not the reported runs. A spec that no longer resolves (a plugin or
    preset gone) counts as following."""
    try:
        own = make_spec(spec["method"], spec["dataset"], spec["profile"], seed=spec["seed"], preset=spec["preset"],
                        backbone=spec["backbone"], method_options=spec.get("method_options"),
                        backbone_options=spec.get("backbone_options"))
        default = make_spec(spec["method"], spec["dataset"], spec["profile"], method_options=spec.get("method_options"),
                            preset=spec["preset"])
    except (DynBenchError, KeyError, TypeError, ValueError):
        return True
    same_backbone_options = (default.backbone != spec["backbone"]
                             or default.backbone_options == spec.get("backbone_options", {}))
    return same_backbone_options and all(getattr(own, key) == spec.get(key, getattr(own, key)) for key in RECIPE_KEYS)


def run_row(record: RunRecord, by_hash: dict[str, RunRecord]) -> dict:
    """One run as a flat row; raises KeyError/TypeError/ValueError on a malformed record."""
    spec, metrics = record.spec, record.metrics
    primary = metrics.get("primary_metric", "accuracy")
    macs = metrics["executed_macs"]
    shares = _gate_shares(metrics)
    test_n = record.data.get("test_used", record.data.get("test"))
    return {
        **{key: spec[key] for key in ("dataset", "method", "preset", "backbone", "profile", "epochs")},
        "dataset": safe_name(spec["dataset"], "dataset"), "backbone": safe_name(spec["backbone"], "backbone"),
        "profile": safe_name(spec["profile"], "profile"), "epochs": int(_number(spec["epochs"], "epochs")),
        "backbone_options": json.dumps(spec.get("backbone_options", {}), sort_keys=True),
        "optimizer": spec.get("optimizer"), "lr": spec.get("lr"), "batch_size": spec.get("batch_size"),
        "weight_decay": spec.get("weight_decay"),
        "test_examples": None if test_n is None else int(_number(test_n, "data.test_used")),
        "train_examples": record.data.get("train_used", record.data.get("train")),
        "entry": entry_label(spec, by_hash), "seed": int(spec["seed"]), "spec_hash": record.spec_hash,
        "code_hash": record.code_hash, "config": _config_hash(spec, by_hash), "matches": matched_hash(spec),
        "mac_budget": spec.get("method_options", {}).get("mac_budget") if spec["method"] == "static_small" else None,
        "metric": primary, "score": _number(metrics["test"][primary], f"test.{primary}"),
        "val_score": _number(metrics["val"][primary], f"val.{primary}"),
        "executed_macs": _number(macs["mean"], "executed_macs.mean"),
        "executed_macs_std": _number(macs["std"], "executed_macs.std"),
        "nominal_macs": _number((metrics.get("macs_nominal") or {}).get("mean", math.nan), "macs_nominal.mean"),
        "val_executed_macs": _number(metrics.get("val_executed_macs", macs)["mean"], "val_executed_macs.mean"),
        "executed_macs_p50": _number(macs.get("p50", macs["mean"]), "executed_macs.p50"),
        "executed_macs_p95": _number(macs.get("p95", macs["mean"]), "executed_macs.p95"),
        "dense_macs": _number(metrics["dense_macs"], "dense_macs"),
        "params": _number(metrics["params"], "params"), "train_seconds": _number(record.train_seconds, "train_seconds"),
        "stale": is_stale(record) or _matched_changed(record, by_hash), "device": record.hardware.get("device", "?"),
        "all_on_score": _all_on_score(metrics, primary), "zero_loss_terms": ", ".join(metrics.get("zero_loss_terms") or []),
        "resolved_options": _resolved_options(spec), "dense_form": dense_reference_form(spec),
        "follows_profile": follows_profile(spec),
        "gated": shares is not None,
        "share_on": shares[0] if shares else math.nan, "share_conditional": shares[1] if shares else math.nan,
        "share_off": shares[2] if shares else math.nan, "static": shares[3] if shares else True,
        "exec_rate_per_unit": dict(metrics.get("val_exec_rate_per_unit") or metrics.get("exec_rate_per_unit") or {}),
    }


def runs_frame(records: list[RunRecord], context: list[RunRecord] | None = None) -> pd.DataFrame:
    """One row per run. `context` adds records (other folders) that matched controls may name. A record with
    a missing field, a string where a number belongs or an unsafe name is skipped with a warning naming it."""
    by_hash = {r.spec_hash: r for r in (context or [])} | {r.spec_hash: r for r in records}
    rows = []
    for record in records:
        try:
            rows.append(run_row(record, by_hash))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warn(f"malformed run record {record.spec_hash}: missing or wrong field {exc}; ignored")
    return pd.DataFrame(rows)


@dataclass
class Board:
    """One setting's runs and its aggregated rows (ranked), paired control comparisons and where it goes."""

    setting: dict[str, Any]
    runs: pd.DataFrame
    rows: pd.DataFrame
    comparisons: pd.DataFrame
    folder: str  # relative to the results folder
    has_dense: bool
    unadopted: bool = False  # a candidate recipe of a sweep that its profile did not adopt (`mark_unadopted`)
    variant: str = ""  # what sets it apart from the boards that would share its folder (`_assign_folders`)
    reported: frozenset[str] | None = None  # a sweep's rows finally reported (its folder's reported.txt)

    @property
    def kind(self) -> str:
        profile = self.setting["profile"]
        return "code test" if profile in CODE_TEST_PROFILES else "smoke check" if profile in SMOKE_CHECK_PROFILES else "result"

    @property
    def title(self) -> str:
        s = self.setting
        test_n = "?" if s["test_examples"] is None or pd.isna(s["test_examples"]) else f"{int(s['test_examples']):,}"
        variant = f" · {self.variant}" if self.variant else ""
        return f"{s['dataset']} · {s['backbone']} · {s['profile']} profile · {s['epochs']} epochs · test n {test_n}{variant}"

    @property
    def best(self) -> pd.Series | None:
        """The row with the best mean validation score among those at or below dense MACs on the validation
        inputs (never one that costs more than dense); ties: fewer MACs. Chosen on validation, reported on test."""
        affordable = self.rows[self.rows["val_executed_macs_mean"] <= self.rows["dense_macs_board"] * (1 + 1e-9)]
        if affordable.empty:
            return None
        return affordable.sort_values(["val_score_mean", "val_executed_macs_mean"], ascending=[False, True]).iloc[0]


def profile_order(profile: str) -> int:
    return PROFILE_ORDER.get(profile, 5)


def build_boards(runs: pd.DataFrame) -> list[Board]:
    """One board per setting, longest profile first within each dataset."""
    boards = []
    settings = runs.fillna({"test_examples": -1, "train_examples": -1}).groupby(SETTING_KEYS, sort=False, dropna=False)
    for key, index in settings.groups.items():
        setting = dict(zip(SETTING_KEYS, key))
        for column in ("test_examples", "train_examples"):
            setting[column] = None if setting[column] == -1 else setting[column]
        setting_runs = runs.loc[index]
        rows, has_dense = aggregate(setting_runs)
        comparisons = compare_with_controls(setting_runs, rows)
        _name_static_controls(rows, comparisons)
        boards.append(Board(setting, setting_runs, rows, comparisons, "", has_dense))
    boards.sort(key=lambda b: (b.setting["dataset"], profile_order(b.setting["profile"]), -int(b.setting["epochs"]),
                               b.setting["backbone"], -(b.setting["test_examples"] or 0)))
    _assign_folders(boards)
    mark_unadopted(boards)
    return boards


def mark_unadopted(boards: list[Board]) -> None:
    """A sweep of training recipes gives one board per recipe for the same dataset, backbone and profile; the
    boards whose runs did not use the recipe that profile resolves to today (`follows_profile`) lost it.
    A board without such siblings is left alone (its runs may simply predate a profile change)."""
    def group(board: Board) -> tuple:
        return board.setting["dataset"], board.setting["backbone"], board.setting["profile"]

    sizes = Counter(group(board) for board in boards)
    for board in boards:
        follows = "follows_profile" not in board.runs or bool(board.runs["follows_profile"].all())
        board.unadopted = sizes[group(board)] > 1 and not follows


def _assign_folders(boards: list[Board]) -> None:
    """`<dataset>/<backbone>_<profile>_<epochs>ep`, under `quick/` or `smoke/` for those profiles; a short
    hash of the setting is appended when two settings would share a folder."""
    for board in boards:
        s = board.setting
        base = f"{s['dataset']}/{s['backbone']}_{s['profile']}_{s['epochs']}ep"
        if s["profile"] in SMOKE_CHECK_PROFILES + CODE_TEST_PROFILES:
            base = f"{s['profile']}/{base}"
        board.folder = base
    groups: dict[str, list[Board]] = {}
    for board in boards:
        groups.setdefault(board.folder, []).append(board)
    for group in (g for g in groups.values() if len(g) > 1):
        differing = [key for key in SETTING_KEYS if len({str(b.setting[key]) for b in group}) > 1]
        for board in group:
            digest = hashlib.sha256(json.dumps(board.setting, sort_keys=True, default=str).encode()).hexdigest()[:6]
            board.folder = f"{board.folder}_{digest}"
            board.variant = ", ".join(f"{key.replace('_', ' ')} {_setting_text(board.setting[key])}" for key in differing)


def _setting_text(value: Any) -> str:
    """A setting value for a title: backbone options as `k=v` pairs, numbers as written."""
    if isinstance(value, str) and value.startswith("{"):
        options = json.loads(value)
        return " ".join(f"{k}={v}" for k, v in options.items()) or "(none)"
    return "?" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _dense_macs(runs: pd.DataFrame) -> tuple[float, bool]:
    dense = runs[(runs["method"] == "dense") & (runs["preset"] == "default")]
    if len(dense):
        return float(dense["executed_macs"].mean()), True
    return float(runs["dense_macs"].max()), False  # the backbone's counted dense MACs, from the records


def aggregate(runs: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """One row per configuration: t-intervals over seeds, savings against this board's dense row, front,
    input dependence. Ranked by mean validation score (ties: fewer MACs on the validation inputs)."""
    dense_macs, has_dense = _dense_macs(runs)
    rows = []
    for config, group in runs.groupby("config", sort=False):
        first = group.iloc[0]
        score, val, macs, val_macs = (t_interval(group[c].tolist())
                                      for c in ("score", "val_score", "executed_macs", "val_executed_macs"))
        gated = group[group["gated"]]
        rows.append({
            "config": config, "entry": first["entry"], "method": first["method"], "preset": first["preset"],
            "metric": first["metric"], "seeds": len(group), "seed_list": sorted(group["seed"].tolist()),
            "score": score, "val": val, "macs": macs,
            "score_mean": score.mean, "score_ci_low": score.low, "score_ci_high": score.high,
            "val_score_mean": val.mean, "val_score_ci_low": val.low, "val_score_ci_high": val.high,
            "executed_macs_mean": macs.mean, "executed_macs_ci_low": macs.low, "executed_macs_ci_high": macs.high,
            "val_macs": val_macs, "val_executed_macs_mean": val_macs.mean,
            "dense_macs_board": dense_macs, "mac_saving": 1 - macs.mean / dense_macs,
            "params": first["params"], "train_seconds_mean": group["train_seconds"].mean(),
            "stale": bool(group["stale"].any()), "resolved_options": first["resolved_options"],
            "dense_form": first["dense_form"],
            "zero_loss_terms": "; ".join(sorted({t for t in group["zero_loss_terms"] if t})),
            "nominal_macs": group["nominal_macs"].mean(),
            "gated": bool(first["gated"]), "static_runs": int(gated["static"].sum()), "gated_runs": len(gated),
            "share_on": gated["share_on"].mean(), "share_conditional": gated["share_conditional"].mean(),
            "share_off": gated["share_off"].mean(), "per_input_macs_std": group["executed_macs_std"].mean(),
            "spec_hashes": group["spec_hash"].tolist(),
        })
    rows_frame = pd.DataFrame(rows).sort_values(["val_score_mean", "val_executed_macs_mean"], ascending=[False, True])
    rows_frame = rows_frame.reset_index(drop=True)
    rows_frame.insert(0, "rank", range(1, len(rows_frame) + 1))
    # the validation front pairs validation scores with validation MACs: a choice never reads the test inputs
    for column, score_column, macs_column in (("dominated_by", "score_mean", "executed_macs_mean"),
                                              ("dominated_by_val", "val_score_mean", "val_executed_macs_mean")):
        scores, macs_means = rows_frame[score_column].tolist(), rows_frame[macs_column].tolist()
        rows_frame[column] = [None if (j := strongest_dominator(d, scores, macs_means)) is None else int(rows_frame["rank"][j])
                              for d in dominators(macs_means, scores)]
    rows_frame["on_front"] = rows_frame["dominated_by"].isna()
    return rows_frame, has_dense


def _matched_static_runs(runs: pd.DataFrame, control: pd.Series) -> list[tuple[int, pd.Series]]:
    """Gated runs of this setting a static net without `match_record` was sized for: its `mac_budget` equals
    their executed fraction of dense to 2 decimals (a budget set by hand, without `match_record`)."""
    gated = runs[runs["gated"] & (runs["method"] != "random_gate")]
    fractions = (gated["executed_macs"] / gated["dense_macs"]).round(BUDGET_DIGITS)
    return [(int(run.seed), run) for (_, run), fraction in zip(gated.iterrows(), fractions)
            if not pd.isna(control["mac_budget"]) and abs(fraction - float(control["mac_budget"])) < 1e-9]


def compare_with_controls(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Each gated row against each control matched to it (random gates at its rates, a static net at its
    MACs), paired run by run (the control matched to the gated run of seed s, or of the same seed)."""
    config_of = dict(zip(runs["spec_hash"], runs["config"]))
    row_of = {row.config: row for row in rows.itertuples()}
    pairs: dict[tuple[str, str], tuple[dict[int, float], dict[int, float]]] = {}
    paired_macs: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}  # seed: (gated, control) executed MACs

    def pair(gated_run: pd.Series, control_config: str, control_score: float, seed: int | None = None,
             control_macs: float = math.nan) -> None:
        """One seed's (gated, control) scores for the pair of rows (seed: the gated run's own by default)."""
        seed = int(gated_run["seed"]) if seed is None else seed
        gated_scores, control_scores = pairs.setdefault((gated_run["config"], control_config), ({}, {}))
        gated_scores[seed], control_scores[seed] = gated_run["score"], control_score
        paired_macs.setdefault((gated_run["config"], control_config), {})[seed] = (gated_run["executed_macs"],
                                                                                   control_macs)

    # a control is any run that names the run it matches (random gates, and whatever control comes next), or
    # a static net sized by mac_budget alone
    is_control = runs["matches"].map(lambda m: isinstance(m, str)) | (runs["method"] == "static_small")
    for _, control in runs[is_control].iterrows():
        if isinstance(control["matches"], str):
            if control["matches"] not in config_of:
                continue  # matched run is on another board (or missing): nothing to pair with here
            gated_run = runs[runs["spec_hash"] == control["matches"]].iloc[0]
            matched = [(int(gated_run["seed"]), gated_run)]
        else:
            matched = [(seed, run) for seed, run in _matched_static_runs(runs, control) if seed == control["seed"]]
        for seed, gated_run in matched:
            pair(gated_run, control["config"], control["score"], seed, control["executed_macs"])
    for _, control in runs[runs["resolved_options"].map(_selects_at_random)].iterrows():
        for _, gated_run in _learned_twins(runs, control).iterrows():
            pair(gated_run, control["config"], control["score"], control_macs=control["executed_macs"])
    for _, reference in runs[runs["dense_form"].notna()].iterrows():  # a method against dense in its block form
        for _, gated_run in _same_form_runs(runs, reference).iterrows():
            pair(gated_run, reference["config"], reference["score"], control_macs=reference["executed_macs"])
    learned = ~runs["method"].isin(CONTROL_METHODS) & ~runs["resolved_options"].map(_selects_at_random)
    for _, gated_run in runs[runs["all_on_score"].notna() & learned].iterrows():
        pair(gated_run, ALL_ON, gated_run["all_on_score"])
    comparisons = []
    for (gated_config, control_config), (gated_scores, control_scores) in pairs.items():
        result = paired_comparison(gated_scores, control_scores)
        gated_row = row_of[gated_config]
        control_rank, control_entry = ((0, "all gates on (the same trained model)") if control_config == ALL_ON
                                       else (row_of[control_config].rank, row_of[control_config].entry))
        # how far the control's MACs are from the gated runs' it is paired with, over the paired seeds (a
        # static search can miss the budget; seeds of one gated row can differ widely in MACs)
        macs_by_seed = paired_macs[(gated_config, control_config)]
        gated_macs, control_macs = (sum(m[i] for m in macs_by_seed.values()) for i in (0, 1))
        macs_gap = (control_macs - gated_macs) / (gated_row.dense_macs_board * len(macs_by_seed))
        verdict = result.verdict
        if control_config != ALL_ON and row_of[control_config].method == "static_small":
            miss = control_macs / gated_macs - 1
            if abs(miss) > STATIC_MATCH_TOLERANCE:
                verdict += f" · not matched (MACs {100 * miss:+.1f} % of the gated runs', §7 ±5 %)"
        comparisons.append({"gated_rank": gated_row.rank, "gated": gated_row.entry, "control_rank": control_rank,
                            "control": control_entry, "macs_gap": macs_gap,
                            "pairs": result.difference.n, "seeds": list(result.seeds),
                            "difference": result.difference, "difference_mean": result.difference.mean,
                            "difference_ci_low": result.difference.low, "difference_ci_high": result.difference.high,
                            "verdict": verdict})
    frame = pd.DataFrame(comparisons, columns=["gated_rank", "gated", "control_rank", "control", "macs_gap", "pairs", "seeds",
                                               "difference", "difference_mean", "difference_ci_low",
                                               "difference_ci_high", "verdict"])
    return frame.sort_values(["gated_rank", "control_rank"]).reset_index(drop=True)


def _selects_at_random(resolved: object) -> bool:  # NaN where the plugin is unknown
    return isinstance(resolved, str) and json.loads(resolved).get("selection") == "random"


def _same_form_runs(runs: pd.DataFrame, reference: pd.Series) -> pd.DataFrame:
    """The gated runs (not controls) of the dense reference's seed whose method builds blocks of its form."""
    def composition(resolved: object) -> object:
        return json.loads(resolved).get("composition") if isinstance(resolved, str) else None

    return runs[runs["gated"] & ~runs["method"].isin(CONTROL_METHODS) & (runs["seed"] == reference["seed"])
                & (runs["resolved_options"].map(composition) == reference["dense_form"])]


def _learned_twins(runs: pd.DataFrame, control: pd.Series) -> pd.DataFrame:
    """The runs a random-selection control (MID-L's random top-k) copies: same method, seed and options but
    `selection` learned."""
    learned = json.dumps({**json.loads(control["resolved_options"]), "selection": "learned"}, sort_keys=True, default=str)
    return runs[(runs["method"] == control["method"]) & (runs["seed"] == control["seed"])
                & (runs["resolved_options"] == learned)]


def _name_static_controls(rows: pd.DataFrame, comparisons: pd.DataFrame) -> None:
    """Controls that do not name their run in `match_record` are named by the gated row they were paired
    with: a static net sized by `mac_budget` alone ("static net @ X MACs"), a random selection ("random
    top-k @ X k")."""
    for index, row in rows.iterrows():
        matched = comparisons[comparisons["control_rank"] == row["rank"]]["gated"].tolist()
        if not matched or " @ " in row["entry"]:
            continue
        options = f" [{row['entry'].split('[', 1)[1]}" if "[" in row["entry"] else ""
        if row["method"] == "static_small":
            rows.at[index, "entry"] = f"static net @ {' / '.join(matched)} MACs{options}"
        elif _selects_at_random(row["resolved_options"]):
            rows.at[index, "entry"] = f"random top-k @ {' / '.join(matched)} k"
    for index, comparison in comparisons.iterrows():
        if comparison["control_rank"]:
            comparisons.at[index, "control"] = rows.loc[rows["rank"] == comparison["control_rank"], "entry"].iloc[0]


def input_dependence_label(row: pd.Series | Any) -> str:
    """*static* when every gate decides the same for every input in every seed (a pruned network); *nearly
    static* when some decision varies but every gate is on for > 99 % or < 1 % of inputs in every seed."""
    if isinstance(row.get("dense_form"), str):
        return "no gates (dense reference)"
    if row["method"] == "random_gate":
        return "random by design (control)"
    if not row["gated"]:
        return "no gates (static)"
    shares = (f"on {100 * row['share_on']:.0f} % · cond. {abs(100 * row['share_conditional']):.0f} % · "
              f"off {100 * row['share_off']:.0f} %")
    if row["static_runs"] == row["gated_runs"]:
        return f"**static** ({shares})"
    if row["static_runs"]:
        return f"static in {row['static_runs']} of {row['gated_runs']} seeds ({shares})"
    spread = f"MACs σ {row['per_input_macs_std'] / 1e6:.3f} M"
    if abs(row["share_conditional"]) < 1e-6:  # float sums leave −3e-8 where no gate is conditional
        return f"**nearly static** ({shares}; {spread})"
    return f"input-dependent ({shares}; {spread})"

