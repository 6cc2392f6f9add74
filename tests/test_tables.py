"""Leaderboards are built from the records alone: one board per setting, t-intervals, the front, input
dependence, paired controls, validation-only choices, confined paths, bad records skipped."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench import DynBenchError
from bench.cli import main
from bench.reporting.plots import pareto_front
from bench.records import RunRecord, RunSpec, record_path, save_record
from bench.reporting.tables import write_tables


def fake_record(method: str, seed: int, accuracy: float, macs: float, dense: int = 1000,
                rates: dict[str, float] | None = None, *, val: float | None = None, backbone: str = "resnet8",
                profile: str = "standard", dataset: str = "digits", options: dict | None = None,
                macs_std: float = 0.0, extra_metrics: dict | None = None, preset: str = "default",
                spec: RunSpec | None = None) -> RunRecord:
    spec = spec or RunSpec(method=method, dataset=dataset, backbone=backbone, seed=seed, profile=profile, epochs=1,
                           method_options=options or {}, preset=preset)
    return RunRecord(
        spec=spec.to_dict(), spec_hash=spec.hash, code_hash="x", seeds={"init": seed},
        data={"source": "bundled", "test": 360, "test_used": 360, "train_used": 1000}, curve=[], train_seconds=2.0,
        wall_seconds=3.0, versions={}, hardware={"device": "cpu"}, created="2026-01-01T00:00:00+00:00",
        metrics={"primary_metric": "accuracy", "test": {"accuracy": accuracy},
                 "val": {"accuracy": accuracy if val is None else val}, "params": 10, "dense_macs": dense,
                 "executed_macs": {"dense": dense, "mean": macs, "std": macs_std, "p50": macs, "p95": macs},
                 "mac_saving": 1 - macs / dense, "exec_rate_per_unit": rates or {},
                 "val_exec_rate_per_unit": rates or {}, **(extra_metrics or {})})


def save(results_dir: Path, record: RunRecord) -> Path:
    path = record_path(results_dir, RunSpec(**record.spec))
    save_record(path, record)
    return path


def board_csv(results_dir: Path, folder: str = "digits/resnet8_standard_1ep") -> pd.DataFrame:
    return pd.read_csv(results_dir / folder / "leaderboard.csv")


def test_leaderboard_aggregates_seeds_with_t_intervals_and_writes_every_artifact(results_dir):
    for seed, accuracy in enumerate([0.90, 0.92, 0.94]):
        save(results_dir, fake_record("dense", seed, accuracy, 1000))
    save(results_dir, fake_record("gated_clone", 0, 0.99, 600, rates={"blocks.0": 1.0, "blocks.1": 0.2}))
    markdown = write_tables(results_dir).read_text()
    board = board_csv(results_dir)
    dense = board[board.method == "dense"].iloc[0]
    half = 4.302652729749464 * 0.02 / 3 ** 0.5  # scipy.stats.t.ppf(0.975, 2) = 4.302652729749464
    assert dense.seeds == 3 and dense.score_mean == pytest.approx(0.92)
    assert dense.score_ci_high - dense.score_mean == pytest.approx(half)
    assert list(board.sort_values("rank").method) == ["gated_clone", "dense"]
    assert board[board.method == "gated_clone"].iloc[0].mac_saving == pytest.approx(0.4)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert f"92.00 [{92 - 100 * half:.2f}, {92 + 100 * half:.2f}]" in page and "±" not in page
    assert "| 1 †" in page  # the single-seed row is marked
    assert "Rank:" in markdown and "MACs:" in markdown
    assert "(digits/resnet8_standard_1ep/leaderboard.md)" in markdown
    assert board[board.method == "gated_clone"].iloc[0].stale  # an unknown plugin's records are stale
    assert len(pd.read_csv(results_dir / "runs.csv")) == 4
    for artifact in ("leaderboard.md", "leaderboard.csv", "pareto.png", "exec_rates.png"):
        assert (results_dir / "digits/resnet8_standard_1ep" / artifact).stat().st_size > 0, artifact
    report = (results_dir / "report.html").read_text()
    assert report.count("<tr>") == 3 and report.count("data:image/png;base64,") == 2
    assert 'class="sortable"' in report and "http" not in report.replace("https://", "").split("<body>")[0]


def test_two_backbones_make_two_boards_each_against_its_own_dense_row(results_dir):
    save(results_dir, fake_record("dense", 0, 0.95, 1000, backbone="resnet8"))
    save(results_dir, fake_record("dense", 0, 0.97, 3000, dense=3000, backbone="resnet20"))
    # cheaper than resnet20's dense, dearer than resnet8's: must never be "Best" on the resnet8 board
    save(results_dir, fake_record("static_small", 0, 0.99, 1500, dense=3000, backbone="resnet20"))
    markdown = write_tables(results_dir).read_text()
    small = board_csv(results_dir, "digits/resnet8_standard_1ep")
    deep = board_csv(results_dir, "digits/resnet20_standard_1ep")
    assert list(small.method) == ["dense"] and sorted(deep.method) == ["dense", "static_small"]
    assert deep[deep.method == "static_small"].iloc[0].mac_saving == pytest.approx(0.5)  # vs resnet20 dense
    assert markdown.count("### [digits · resnet") == 2


def test_best_is_chosen_on_validation_and_never_costs_more_than_dense(results_dir):
    save(results_dir, fake_record("dense", 0, 0.90, 1000, val=0.90))
    save(results_dir, fake_record("faithful", 0, 0.99, 1200, val=0.99))  # best score, more MACs than dense
    save(results_dir, fake_record("cheap_a", 0, 0.97, 500, val=0.91))  # best test among the affordable
    save(results_dir, fake_record("cheap_b", 0, 0.92, 600, val=0.95))  # best validation among the affordable
    page = write_tables(results_dir).read_text()
    assert "Best (chosen on validation, at ≤ dense MACs): **cheap_b**" in page
    board = board_csv(results_dir).set_index("method")
    assert list(board.sort_values("rank").index) == ["faithful", "cheap_b", "cheap_a", "dense"]
    assert board["on_front"].to_dict() == {"faithful": True, "cheap_b": False, "cheap_a": True, "dense": False}
    assert board.loc["cheap_b", "dominated_by"] == 3 and board.loc["dense", "dominated_by"] == 3  # by cheap_a
    assert "| dominated by #3 (within CI) |" in page  # single seeds: no interval to separate them


def test_a_sweep_board_ranks_and_chooses_on_validation_and_hides_unreported_test_scores(results_dir):
    """Fails if test were used: the test ranking is the reverse of the validation ranking."""
    for name, test, val in (("sweep_a", 0.99, 0.90), ("sweep_b", 0.95, 0.94), ("sweep_c", 0.91, 0.97)):
        save(results_dir, fake_record(name, 0, test, 800, val=val))
    save(results_dir, fake_record("dense", 0, 0.93, 1000, val=0.93))
    write_tables(results_dir, select_on="val")
    board = board_csv(results_dir).sort_values("rank")
    assert list(board.method) == ["sweep_c", "sweep_b", "dense", "sweep_a"]
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert "**sweep_c**" in page and "91.00" in page  # the chosen row's test score is reported
    assert "99.00" not in page and "95.00" not in page  # the others' test scores are not
    assert page.count("(not reported)") == 3
    assert board["score_mean"].isna().tolist() == [False, True, True, True]  # nor in the board's CSV
    assert main(["tables", "--results", str(results_dir), "--select-on", "val"]) == 0


def test_choices_read_the_validation_inputs_macs_not_the_test_inputs(results_dir):
    """Best and a sweep's front read MACs on the validation inputs. Fails if the test inputs' MACs chose:
    `leaky` is cheaper than dense on test inputs only, `frugal` is cheaper than `thrifty` on test inputs only."""
    def val_macs(mean: float) -> dict:
        return {"val_executed_macs": {"dense": 1000, "mean": mean, "std": 0.0}}

    save(results_dir, fake_record("dense", 0, 0.90, 1000, val=0.90))
    save(results_dir, fake_record("leaky", 0, 0.99, 900, val=0.99, extra_metrics=val_macs(1100)))
    save(results_dir, fake_record("thrifty", 0, 0.95, 700, val=0.95, extra_metrics=val_macs(600)))
    save(results_dir, fake_record("frugal", 0, 0.94, 650, val=0.94, extra_metrics=val_macs(800)))
    write_tables(results_dir, select_on="val")
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert "**thrifty**" in page and "**leaky**" not in page
    board = board_csv(results_dir).set_index("method")
    assert board.loc["frugal", "dominated_by_val"] == board.loc["thrifty", "rank"]
    assert board.loc["thrifty", "val_executed_macs_mean"] == 600


def test_a_tie_in_validation_score_goes_to_fewer_validation_macs(results_dir):
    """Fails if the test inputs' MACs break the tie: `lean` is cheaper on test inputs only."""
    def val_macs(mean: float) -> dict:
        return {"val_executed_macs": {"dense": 1000, "mean": mean, "std": 0.0}}

    save(results_dir, fake_record("dense", 0, 0.90, 1000, val=0.90))
    save(results_dir, fake_record("lean", 0, 0.95, 500, val=0.95, extra_metrics=val_macs(650)))
    save(results_dir, fake_record("thrifty", 0, 0.95, 700, val=0.95, extra_metrics=val_macs(600)))
    write_tables(results_dir, select_on="val")
    board = board_csv(results_dir).set_index("method")
    assert board.loc["thrifty", "rank"] < board.loc["lean", "rank"]


def test_a_preset_sweep_reports_test_only_for_the_presets_its_folder_names(results_dir):
    """Every candidate is a named preset; reported.txt names the one the sweep's rule chose on validation.
    Fails if the other presets' test scores (the higher ones) were shown."""
    save(results_dir, fake_record("dense", 0, 0.93, 1000, val=0.99))
    all_on = {"all_on": {"val": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}}  # a paired control per preset
    for preset, test, val in (("a0.5", 0.99, 0.95), ("a0.75", 0.91, 0.94), ("a1", 0.98, 0.90)):
        save(results_dir, fake_record("gated_clone", 0, test, 600, val=val, preset=preset, extra_metrics=all_on))
    (results_dir / "reported.txt").write_text("# chosen by the rule\ngated_clone:a0.75\n")
    write_tables(results_dir, select_on="val")
    board = board_csv(results_dir).dropna(subset=["score_mean"])
    assert sorted(zip(board.method, board.preset, board.score_mean)) == [("dense", "default", 0.93),
                                                                         ("gated_clone", "a0.75", 0.91)]
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert page.count("(not reported)") == 2 and "`gated_clone:a0.75`" in page
    assert "41.00" in page and "49.00" not in page and "48.00" not in page  # Δ test vs all-on: the reported row's only
    (results_dir / "reported.txt").unlink()  # without the file every named preset counts as reported
    write_tables(results_dir, select_on="val")
    assert board_csv(results_dir)["score_mean"].notna().all()


def test_a_sweep_of_training_recipes_reports_test_only_for_the_recipe_its_profile_adopted(results_dir):
    """Candidates that differ in lr are boards of their own; the profile's recipe of today is the reported one.
    Fails if test chose: the unadopted candidates have the higher test scores."""
    import dataclasses

    from bench.train import make_spec

    for seed in (0, 1):
        adopted = make_spec("dense", "digits", "standard", seed=seed)
        save(results_dir, fake_record("dense", seed, 0.91, 1000, val=0.97, spec=adopted))
        for lr, test in ((0.05, 0.99), (0.01, 0.98)):
            candidate = dataclasses.replace(adopted, lr=lr)
            save(results_dir, fake_record("dense", seed, test, 1000, val=0.95, spec=candidate))
    write_tables(results_dir, select_on="val")
    pages = [path.read_text() for path in results_dir.glob("digits/*/leaderboard.md")]
    adopted_pages = [page for page in pages if "test accuracy 91.00" in page]
    assert len(pages) == 3 and len(adopted_pages) == 1
    assert "test accuracy 91.00" in adopted_pages[0] and "(not reported)" not in adopted_pages[0]
    for page in [page for page in pages if page not in adopted_pages]:
        assert "99.00" not in page and "98.00" not in page
        assert "test not reported: a candidate recipe its profile did not adopt" in page and "(not reported)" in page
    write_tables(results_dir)  # an ordinary board (no sweep) reports every run's test score
    assert any("99.00" in path.read_text() for path in results_dir.glob("digits/*/leaderboard.md"))


def test_a_gate_on_for_all_inputs_makes_the_row_static(results_dir):
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    save(results_dir, fake_record("blockgate", 0, 0.9, 600, rates={"blocks.0": 1.0, "blocks.1": 0.0}))
    save(results_dir, fake_record("learned", 0, 0.9, 700, rates={"blocks.0": 1.0, "blocks.1": 0.4}, macs_std=50))
    channels = {"gate_share_always_on": 0.6, "gate_share_conditional": 0.0, "gate_share_always_off": 0.4}
    save(results_dir, fake_record("chan", 0, 0.9, 650, extra_metrics=channels))
    dependence = {"gates": 3, "gate_share_always_on": 1 / 3, "gate_share_conditional": 2 / 3,
                  "gate_share_always_off": 0.0, "static": False}
    save(results_dir, fake_record("topk", 0, 0.9, 640, extra_metrics={**channels, "input_dependence": dependence}))
    save(results_dir, fake_record("almost", 0, 0.9, 630, rates={"blocks.0": 0.995, "blocks.1": 0.0}, macs_std=5))
    write_tables(results_dir)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    line = {name: next(row for row in page.splitlines() if f"| {name} " in row) for name in
            ("blockgate", "learned", "chan", "topk", "almost", "dense")}
    assert "**static** (on 50 % · cond. 0 % · off 50 %)" in line["blockgate"]
    assert "**static**" in line["chan"]
    assert "input-dependent (on 50 % · cond. 50 % · off 0 %" in line["learned"]
    assert "input-dependent (on 33 % · cond. 67 %" in line["topk"]  # input_dependence wins over gate_share_*
    assert "**nearly static** (on 50 % · cond. 0 % · off 50 %" in line["almost"]  # varies on 0.5 % of inputs
    assert "no gates (static)" in line["dense"]


def matched_controls(results_dir: Path, gains: list[float], static_macs: float = 500) -> None:
    """A gated row over three seeds (500 MACs of 1000), random gates matched to each seed's record, a static
    net at `static_macs` (a width grid can leave it off the gated row's MACs)."""
    for seed, gain in enumerate(gains):
        gated_path = save(results_dir, fake_record("learned", seed, 0.90 + gain, 500, rates={"blocks.0": 0.5}))
        save(results_dir, fake_record("random_gate", seed, 0.90, 500, rates={"blocks.0": 0.5},
                                      options={"match_record": str(gated_path)}))
        save(results_dir, fake_record("static_small", seed, 0.90 - gain, static_macs,
                                      options={"mac_budget": 0.5}))
        save(results_dir, fake_record("dense", seed, 0.93, 1000))


def test_gated_rows_are_compared_with_their_matched_controls_paired_by_seed(results_dir):
    matched_controls(results_dir, [0.05, 0.06, 0.04], static_macs=520)
    write_tables(results_dir)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert "random gates @ learned rates" in page and "match_record" not in page  # labelled by what it is
    assert "static net @ learned MACs [mac_budget=0.5]" in page
    comparisons = page.split("## Matched controls")[1]
    random_row = next(r for r in comparisons.splitlines() if "random gates @" in r)
    static_row = next(r for r in comparisons.splitlines() if "static net @" in r)
    assert "3 (0, 1, 2)" in random_row and "| better " in random_row
    assert "5.00 [" in random_row and "| better " in static_row
    assert "| +2.0 % " in static_row and "| +0.0 % " in random_row  # how far each control's MACs are from the row's
    assert board_csv(results_dir)["seeds"].tolist() == [3, 3, 3, 3]  # controls of 3 seeds are one row
    report = (results_dir / "report.html").read_text()
    assert "<h3>Matched controls</h3>" in report and report.count("<td class=\"text\">better</td>") == 2


def test_a_static_net_more_than_5_percent_off_the_gated_macs_is_marked_not_matched(results_dir):
    """§7: matched = within ±5 % of the gated row's MACs; 540 against 500 is +8 %, 520 is +4 %."""
    matched_controls(results_dir, [0.05, 0.06, 0.04], static_macs=540)
    write_tables(results_dir)
    comparisons = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text().split("## Matched controls")[1]
    static_row = next(r for r in comparisons.splitlines() if "static net @" in r)
    random_row = next(r for r in comparisons.splitlines() if "random gates @" in r)
    assert "better · not matched (MACs +8.0 % of the gated runs'" in static_row and "not matched" not in random_row
    matched_controls(results_dir, [0.05, 0.06, 0.04], static_macs=520)
    write_tables(results_dir)
    assert "not matched (" not in (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()


def test_a_control_s_macs_are_compared_with_the_gated_runs_it_is_paired_with(results_dir):
    """The gated row's seeds execute 300 and 700 MACs; the static net matched to seed 0 executes 300: matched
    (gap +0.0 %). Fails if it is compared with the row's mean over both seeds (500: −40 %)."""
    gated = {seed: save(results_dir, fake_record("learned", seed, 0.95, macs)) for seed, macs in ((0, 300), (1, 700))}
    save(results_dir, fake_record("static_small", 0, 0.94, 300, options={"match_record": str(gated[0])}))
    save(results_dir, fake_record("dense", 0, 0.96, 1000))
    write_tables(results_dir)
    comparisons = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text().split("## Matched controls")[1]
    static_row = next(r for r in comparisons.splitlines() if "static net @" in r)
    assert "| +0.0 % " in static_row and "not matched" not in static_row


def test_no_evidence_when_the_interval_covers_zero(results_dir):
    matched_controls(results_dir, [0.05, -0.04, 0.01])
    write_tables(results_dir)
    comparisons = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text().split("## Matched controls")[1]
    verdicts = [line.rsplit("|", 2)[1].strip() for line in comparisons.split("\n\n")[1].splitlines()[2:]]
    assert verdicts == ["no evidence", "no evidence"]


def test_quick_boards_are_smoke_checks_and_smoke_runs_stay_apart_longest_profile_first(results_dir):
    save(results_dir, fake_record("dense", 0, 0.80, 1000, profile="quick"))
    save(results_dir, fake_record("dense", 0, 0.98, 1000, profile="standard"))
    save(results_dir, fake_record("dense", 0, 0.10, 1000, profile="smoke"))
    noise = {"description": "two machines", "rows": [{"dataset": "digits", "profile": "quick", "abs_diff": 0.02}]}
    (results_dir / "noise.json").write_text(json.dumps(noise))
    markdown = write_tables(results_dir).read_text()
    quick = (results_dir / "quick/digits/resnet8_quick_1ep/leaderboard.md").read_text()
    assert "Smoke check, not a result" in quick and "max 2.00 points over 1 runs" in quick
    assert (results_dir / "smoke/digits/resnet8_smoke_1ep/leaderboard.md").is_file()
    standard, quick_at, smoke_at = (markdown.index(s) for s in ("standard profile", "quick profile", "## Smoke-profile"))
    assert standard < quick_at < smoke_at
    assert "10.00" not in markdown.split("## Smoke-profile")[0]  # the smoke run is not beside results


@pytest.mark.parametrize("dataset", ["../escaped", "/tmp/dynbench-escaped-abs", "a/../../b"])
def test_a_record_cannot_make_tables_write_outside_the_results_folder(results_dir, tmp_path, capsys, dataset):
    """Issue 20: spec["dataset"] was used as a folder name as it stood."""
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    bad = fake_record("dense", 1, 0.9, 1000, dataset=dataset)
    save_record(results_dir / "runs" / "evil.json", bad)
    before = set(tmp_path.rglob("*"))
    write_tables(results_dir)
    created = {p for p in set(tmp_path.rglob("*")) - before if not p.is_relative_to(results_dir)}
    assert created == set() and not Path("/tmp/dynbench-escaped-abs").exists()
    assert "escaped" not in str(sorted(results_dir.rglob("*")))
    err = capsys.readouterr().err
    assert f"malformed run record {bad.spec_hash}" in err and "not a safe folder name" in err


def test_a_string_where_a_metric_belongs_is_skipped_with_a_warning_naming_it(results_dir, capsys):
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    broken = fake_record("dense", 1, 0.9, 1000)
    broken.metrics["test"]["accuracy"] = "0.9"
    save(results_dir, broken)
    write_tables(results_dir)
    err = capsys.readouterr().err
    assert f"malformed run record {broken.spec_hash}" in err and "'0.9'" in err
    assert board_csv(results_dir)["seeds"].tolist() == [1]


def test_an_unwritable_results_folder_is_a_one_line_error(results_dir, capsys):
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    (results_dir / "digits").write_text("a file where the board folder goes")  # as root, chmod would not stop us
    with pytest.raises(DynBenchError, match="cannot write the leaderboards under .*give a writable --results"):
        write_tables(results_dir)
    assert main(["tables", "--results", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynbench: error: cannot write") and err.count("\n") == 1


def _timing(saving: float, mac_saving: float = 0.4, skips: bool = True) -> dict:
    batch = {"saving": saving, "saving_ci": [saving - 0.01, saving + 0.01], "mac_saving": mac_saving,
             "all_on_overhead": 0.03, "skips_for_real": skips, "anchor_ratio": 0.5,
             "dynamic": {"p50": 1e-3, "p95": 1.5e-3}}
    return {"device": "cpu", "threads": 1, "anchor": "resnet8", "unit_kinds": ["block"],
            "batches": {"1": batch, "128": {**batch, "saving": saving / 2, "saving_ci": [saving / 2 - 0.01, saving / 2 + 0.01]}}}


def test_latency_records_give_the_board_its_latency_columns_per_machine(results_dir, capsys):
    from bench.timing import LATENCY_FORMAT, timing_code_hash

    record = fake_record("gated", 0, 0.9, 600, rates={"blocks.0": 0.6}, macs_std=10)
    save(results_dir, record)
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    own = {"kind": "latency", "training_spec_hash": record.spec_hash, "training_code_hash": record.code_hash,
           "timing_code_hash": timing_code_hash(), "device": "cpu", "hardware": {"machine": "x86_64", "cpu_count": 2},
           "latency": _timing(0.30), "format": LATENCY_FORMAT, "load_before": 1.1, "load_after": 2.3}
    own["latency"]["batches"]["1"]["path"] = "torchscript"  # batch 1 timed as programs; the GPU record predates them
    (results_dir / "latency").mkdir()
    (results_dir / "latency" / "a.json").write_text(json.dumps(own))
    (results_dir / "latency" / "old_timing.json").write_text(json.dumps({**own, "timing_code_hash": "0ld"}))
    (results_dir / "latency" / "broken.json").write_text(json.dumps({**own, "latency": {"batches": {"1": {"saving": "x"}}}}))
    evals = results_dir / "evals"
    evals.mkdir()
    gpu = {"kind": "eval", "training_spec_hash": record.spec_hash, "training_code_hash": record.code_hash,
           "timing_code_hash": timing_code_hash(), "device": "cuda", "hardware": {"gpu": "NVIDIA H200"},
           "metrics": {"accuracy": 0.9}, "latency": _timing(0.10, skips=False), "format": 2}
    (evals / "gpu.json").write_text(json.dumps(gpu))
    (evals / "retrained.json").write_text(json.dumps({**gpu, "training_code_hash": "older"}))
    write_tables(results_dir)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("|   rank"))
    assert "latency saving b1 / b128 (%)" in header
    gated = next(line for line in page.splitlines() if "| gated " in line)
    assert "30.0 [29.0, 31.0] / 15.0 [14.0, 16.0]" in gated  # the timing pass's machine
    latency = page.split("## Realized latency")[1]
    cpu_row = next(line for line in latency.splitlines() if "cpu: x86_64, 2 cores" in line)
    gpu_row = next(line for line in latency.splitlines() if "cuda: NVIDIA H200" in line)
    assert "real skipping" in cpu_row and "0.75 / 0.37" in cpu_row and "3.0 / 3.0" in cpu_row
    assert "2.3 (busy)" in cpu_row  # something else ran while it was timed
    assert "masked execution: no real skipping" in gpu_row
    assert "| TorchScript |" in cpu_row and "| eager       |" in gpu_row
    err = capsys.readouterr().err
    assert "older timing code" in err and "broken.json" in err and err.count("older training") == 1


def test_channel_rows_whose_batched_path_cannot_win_say_so_instead_of_a_number():
    from bench.reporting.latency_figures import (NO_BATCHED_CHANNEL_SPEEDUP, OVERHEAD_BOUND, LatencyFigure,
                                                 saving_cell, verdict)

    timing = _timing(0.2)
    timing["batches"]["128"].update(saving=-2.4, saving_ci=[-2.5, -2.3])
    figure = LatencyFigure("h", "c", "cpu", 1, timing["batches"], ("channel",), "resnet8", "latency", 1.0)
    assert verdict([figure]) == NO_BATCHED_CHANNEL_SPEEDUP
    assert saving_cell([figure], "128") == "no batched speedup" and saving_cell([figure], "1") == "20.0 [19.0, 21.0]"
    block = LatencyFigure("h", "c", "cpu", 1, timing["batches"], ("block",), "resnet8", "latency", 1.0)
    assert verdict([block]) == "real skipping" and saving_cell([block], "128").startswith("-240.0")
    for batch in timing["batches"].values():
        batch["time_falls"] = False
    assert verdict([block]) == OVERHEAD_BOUND  # it skips, but skipping every unit saves no time here


def test_a_corrupt_or_malformed_record_is_reported_and_ignored(results_dir, capsys):
    save(results_dir, fake_record("dense", 0, 0.9, 1000))
    (results_dir / "runs" / "deadbeef.json").write_text('{"spec": {"method": "den')
    malformed = fake_record("dense", 1, 0.9, 1000)
    del malformed.metrics["executed_macs"]
    save(results_dir, malformed)
    write_tables(results_dir)
    err = capsys.readouterr().err
    assert "corrupt run record" in err and "deadbeef.json" in err and "malformed run record" in err
    assert len(pd.read_csv(results_dir / "leaderboard.csv")) == 1


def test_no_records_is_a_clear_error(results_dir):
    with pytest.raises(DynBenchError, match="no run records"):
        write_tables(results_dir)


def test_pareto_front_keeps_only_undominated_points():
    macs = pd.Series([1.0, 2.0, 2.0, 3.0, 0.5]).to_numpy()
    score = pd.Series([0.90, 0.95, 0.93, 0.94, 0.80]).to_numpy()
    assert list(pareto_front(macs, score)) == [4, 0, 1]


def test_record_fields_round_trip():
    record = fake_record("dense", 0, 0.9, 1000)
    assert RunRecord(**dataclasses.asdict(record)) == record


def test_runs_that_differ_in_method_options_are_separate_rows_labelled_by_their_options(results_dir):
    """Two random gates matched to different records must not be averaged as if they were seeds."""
    for reference, accuracy in (("results/runs/aaaa.json", 0.6), ("results/runs/bbbb.json", 0.5)):
        save(results_dir, fake_record("random_gate", 0, accuracy, 700, options={"match_record": reference}))
    write_tables(results_dir)
    board = board_csv(results_dir)
    assert sorted(board["entry"]) == ["random gates @ record aaaa (not found) rates",
                                      "random gates @ record bbbb (not found) rates"]
    assert board["seeds"].tolist() == [1, 1]


def test_the_code_hash_ignores_the_reporting_modules_only(tmp_path):
    """Changing how tables look must not make every record stale; changing what a run executes must."""
    from bench.records import _framework_hash

    copy = tmp_path / "bench"
    shutil.copytree(Path(bench.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = _framework_hash(copy)
    assert original == _framework_hash(Path(bench.__file__).parent)
    for path in [*(copy / "reporting").glob("*.py"), copy / "measure" / "throughput.py"]:
        path.write_text(path.read_text() + "\n# a new column\n")
    assert _framework_hash.__wrapped__(copy) == original
    (copy / "train.py").write_text((copy / "train.py").read_text() + "\nNEW_LOSS_WEIGHT = 0.1\n")
    assert _framework_hash.__wrapped__(copy) != original


def test_the_index_links_result_folders_below_it_and_shows_their_longest_board(results_dir):
    save(results_dir, fake_record("dense", 0, 0.80, 1000, profile="quick"))
    longer = results_dir / "longer"
    save(longer, fake_record("gated", 0, 0.97, 600, profile="standard", rates={"blocks.0": 0.5}))
    markdown = write_tables(results_dir).read_text()
    assert "(longer/digits/resnet8_standard_1ep/leaderboard.md) (`longer/`)" in markdown
    assert markdown.index("standard profile") < markdown.index("quick profile")
    assert "| gated " in markdown.split("quick profile")[0]  # the longest board's table is inline
    write_tables(longer)
    page = (longer / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert "This board has no dense row" in page


def test_noise_measured_between_two_folders_is_quoted_on_the_quick_board(tmp_path):
    from bench.reporting.noise import write_noise

    here, there = tmp_path / "here", tmp_path / "there"
    for seed, (a, b) in enumerate([(0.80, 0.83), (0.70, 0.70), (0.60, 0.59)]):
        save(here, fake_record("dense", seed, a, 1000, profile="quick"))
        save(there, fake_record("dense", seed, b, 1000, profile="quick"))
    save(here, fake_record("midl", 0, 0.5, 800, profile="quick"))  # no twin: not compared
    noise = json.loads(write_noise(here, there, "2 threads vs 1").read_text())
    assert sorted(round(r["abs_diff"], 6) for r in noise["rows"]) == [0.0, 0.01, 0.03]
    write_tables(here)
    board = (here / "quick/digits/resnet8_quick_1ep/leaderboard.md").read_text()
    assert "Measured run-to-run noise (2 threads vs 1): |Δ test| median 1.00, max 3.00 points over 3 runs" in board
    with pytest.raises(DynBenchError, match="no run .* has a twin"):
        write_noise(here, tmp_path / "empty", "nothing")


def test_all_on_random_top_k_and_per_gate_rates_from_the_records_main_writes(results_dir):
    """Fields `dynbench run` writes since the §7 controls: `all_on` (the trained model with every gate on),
    MID-L's `random_topk` preset (paired with midl of the same seed), `val_exec_rate_per_gate`,
    `zero_loss_terms`."""
    for seed, gain in enumerate([0.04, 0.05, 0.06]):
        all_on = {"val": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}
        per_gate = {"blocks.0": [1.0, 0.0, 1.0], "blocks.1": [1.0, 1.0, 1.0]}  # every gate always on or off: static
        save(results_dir, fake_record("midl", seed, 0.90 + gain, 600, rates={"blocks.0": 0.66, "blocks.1": 1.0},
                                      extra_metrics={"all_on": all_on, "val_exec_rate_per_gate": per_gate,
                                                     "zero_loss_terms": ["cost"]}))
        save(results_dir, fake_record("midl", seed, 0.90, 600, preset="random_topk", rates={"blocks.0": 0.66},
                                      extra_metrics={"all_on": all_on}))
        save(results_dir, fake_record("dense", seed, 0.93, 1000))
    write_tables(results_dir)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    comparisons = page.split("## Matched controls")[1]
    assert comparisons.count("all gates on (the same trained model)") == 1  # the random top-k control has no all-on line
    all_on_row = next(r for r in comparisons.splitlines() if "all gates on (the same trained model)" in r)
    top_k_row = next(r for r in comparisons.splitlines() if "random top-k @ midl k" in r)
    assert "45.00 [" in all_on_row and "| better " in all_on_row
    assert "5.00 [" in top_k_row and "| better " in top_k_row and "3 (0, 1, 2)" in top_k_row
    midl_row = next(r for r in page.splitlines() if r.startswith("|") and "| midl " in r)
    assert "**static** (on 83 % · cond. 0 % · off 17 %)" in midl_row  # 6 per-gate rates, not the unit mean 0.66
    assert "Loss terms that stayed exactly 0 for the whole run (they never acted): #1 midl: cost." in page


def test_cosinegate_is_compared_with_dense_in_its_own_block_form(results_dir):
    """Random gates kept at rate 1 with CosineGate's composition are a dense net without the post-add ReLU
    (methods.md §7: the dense control has the method's block form): labelled as such, not gated, and paired
    by seed with the CosineGate runs; a random gate at another rate stays a random control."""
    reference = {"keep_rate": 1.0, "composition": "no_act"}
    for seed, gain in enumerate([0.02, 0.03, 0.01]):
        save(results_dir, fake_record("cosinegate", seed, 0.90 + gain, 600, rates={"blocks.0": 0.6}, preset="realizable"))
        save(results_dir, fake_record("random_gate", seed, 0.90, 1000, options=reference))
        save(results_dir, fake_record("random_gate", seed, 0.80, 500, options={"keep_rate": 0.5, "composition": "no_act"}))
        save(results_dir, fake_record("dense", seed, 0.93, 1000))
    write_tables(results_dir)
    page = (results_dir / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    reference_row = next(r for r in page.splitlines() if "dense without the post-add ReLU (CosineGate's block form)" in r)
    assert "no gates (dense reference)" in reference_row
    assert "random by design (control)" in next(r for r in page.splitlines() if "keep_rate=0.5" in r)
    comparisons = page.split("## Matched controls")[1]
    paired = next(r for r in comparisons.splitlines() if "dense without the post-add ReLU" in r)
    assert "cosinegate:realizable" in paired and "3 (0, 1, 2)" in paired and "2.00 [" in paired
    assert not any("keep_rate=0.5" in r for r in comparisons.splitlines())  # not matched to any run: no pairing


def test_a_control_is_stale_when_the_run_it_matches_was_retrained(results_dir):
    from bench import registry
    from bench.records import code_hash
    from bench.train import plugin_file

    current = code_hash(plugin_file(registry.get_method("random_gate")), plugin_file(registry.get_dataset("digits")))
    gated = fake_record("learned", 0, 0.9, 500, rates={"blocks.0": 0.5})
    gated_path = save(results_dir, gated)
    for code, seed in (("x", 0), ("retrained-since", 1)):  # the summary of what was matched, as random_gate writes it
        control = fake_record("random_gate", seed, 0.9, 500, rates={"blocks.0": 0.5},
                              options={"match_record": str(gated_path), "keep_rate": 0.5 + seed / 10},
                              extra_metrics={"matched_record": {"spec_hash": gated.spec_hash, "code_hash": code}})
        save(results_dir, dataclasses.replace(control, code_hash=current))
    write_tables(results_dir)
    board = board_csv(results_dir).set_index("entry")
    assert not board.loc["random gates @ learned rates [keep_rate=0.5]", "stale"]
    assert board.loc["random gates @ learned rates [keep_rate=0.6]", "stale"]


def test_the_code_hash_ignores_docstrings_and_comments_but_not_code(tmp_path):
    """A preset's docstring naming the validation figure that chose it must not make its records stale."""
    from bench.records import code_hash

    plugin = tmp_path / "plugin.py"
    plugin.write_text('"""A method."""\nRATE = 0.5\n\n\ndef f():\n    """Doc."""\n    return RATE\n')
    original = code_hash(plugin)
    plugin.write_text('"""A method; preset chosen at val 91.2 %."""\nRATE = 0.5  # why\n\n\ndef f():\n'
                      '    """Other doc."""\n\n    return RATE\n')
    assert code_hash(plugin) == original
    plugin.write_text('"""A method."""\nRATE = 0.6\n\n\ndef f():\n    """Doc."""\n    return RATE\n')
    assert code_hash(plugin) != original


def test_profile_values_resolve_names_into_specs_and_never_make_records_stale(tmp_path):
    """Every value a profile or a dataset's override sets is in the spec (and so in its hash): a new
    override changes which spec a name resolves to, never what an existing spec runs."""
    from bench.records import code_hash

    plugin = tmp_path / "dataset.py"
    text = 'class D:\n    name = "d"\n    profile_overrides = {{"standard": {{"epochs": {}}}}}\n    mean = (0.5,)\n'
    plugin.write_text(text.format(40))
    original = code_hash(plugin)
    plugin.write_text(text.format(30))
    assert code_hash(plugin) == original
    plugin.write_text(text.format(30).replace("0.5", "0.4"))
    assert code_hash(plugin) != original


def test_the_index_puts_current_boards_before_stale_ones_and_says_which_are_stale(results_dir):
    """A longer board made entirely by older code must not head the index as if it were a result."""
    import dataclasses

    from bench import registry
    from bench.records import code_hash
    from bench.train import plugin_file

    current = code_hash(plugin_file(registry.get_method("dense")), plugin_file(registry.get_dataset("digits")))
    save(results_dir, fake_record("dense", 0, 0.70, 1000, profile="paper"))  # code_hash "x": stale
    save(results_dir, dataclasses.replace(fake_record("dense", 0, 0.95, 1000, profile="standard"), code_hash=current))
    markdown = write_tables(results_dir).read_text()
    standard, paper = markdown.index("standard profile"), markdown.index("paper profile")
    assert standard < paper  # the current board first, though "paper" is the longer profile
    heading = markdown[paper:].splitlines()[0]
    assert "stale: every row was made by older code" in heading
    assert "stale" not in markdown[standard:].splitlines()[0]
    inline = markdown[standard:paper]
    assert "| dense " in inline and "95.00" in inline  # the current board's table is the inline one


def test_nominal_macs_of_a_faithful_cosinegate_run_stand_beside_its_executed_macs(results_dir):
    """Faithful CosineGate computes every branch to decide: its executed MACs exceed dense, and the board
    gives the nominal figure (skipped blocks not computed) beside them, outside the table's ranking."""
    save(results_dir, fake_record("dense", 0, 0.93, 1000))
    for seed, nominal in enumerate([300.0, 340.0]):
        save(results_dir, fake_record("cosinegate", seed, 0.90, 1010, rates={"blocks.0": 0.0},
                                      extra_metrics={"macs_nominal": {"mean": nominal, "saving": 1 - nominal / 1000}}))
    # realizable: skips for real, so its nominal figure is its executed one less the gate: not shown
    save(results_dir, fake_record("cosinegate", 0, 0.89, 420, rates={"blocks.0": 0.0}, preset="realizable",
                                  extra_metrics={"macs_nominal": {"mean": 400.0, "saving": 0.6}}))
    page = (write_tables(results_dir).parent / "digits/resnet8_standard_1ep/leaderboard.md").read_text()
    assert "not executed MACs and rank nothing): #2 cosinegate: 0.000 M (68.0 % saving)." in page
    assert "cosinegate:realizable: 0.000 M" not in page
    row = next(r for r in page.splitlines() if r.startswith("|") and "| cosinegate " in r)
    assert [cell.strip() for cell in row.split("|")][7] == "-1"  # the saving column: executed, not nominal
