"""Leaderboards built from run records alone: one board per setting (`<dataset>/<backbone>_<profile>_<epochs>ep/`
with its Markdown, CSV, Pareto plot and execution-rate heat map), an overall index that links them (longest
profile first), CSVs and the HTML report. Every path written stays inside the results folder."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import DynBenchError
from bench.boards import (Board, build_boards, entry_label, input_dependence_label, is_stale,  # noqa: F401 (re-exported)
                          load_records, profile_order, runs_frame, warn)
from bench.eval_latency import EvalLatency, eval_columns, load_evals
from bench.macs import COUNTING_RULE
from bench.stats import CONFIDENCE

SELECT_CHOICES = ("val",)
NOISE_FILE = "noise.json"
RANK_RULE = ("Rank: by mean validation score (accuracy, or mIoU for segmentation; higher first), ties by fewer "
             "executed MACs. Test scores are reported, never used to order, choose or mark the front of a sweep. "
             "'Best' = the best mean validation score among rows executing at most this board's dense MACs.")
CI_RULE = (f"Scores and MACs: mean over seeds with its {100 * CONFIDENCE:.0f} % t-interval [low, high] (Student's t, "
           "n − 1 degrees of freedom); n = seeds; '†' = a single seed: no interval, the figure is one run.")
FRONT_RULE = ("Front: 'front' = no other row has at most its MACs and at least its mean test score (one of them "
              "strictly better); otherwise 'dominated by #k' names the best-scoring row that dominates it; "
              "'(within CI)' = the two rows' test intervals overlap, or one of them has a single seed.")
STATIC_RULE = ("Input dependence: shares of gates always on (> 99 % of inputs), conditional, always off (< 1 %), over "
               "all gates of all units (a block gate is one gate; from the record's input_dependence, its gate_share_*, "
               "or its per-unit execution rates); **static** = no gate decides differently between inputs in any "
               "seed: a pruned network, not conditional computation. MACs σ = per-input spread of executed MACs.")
CONTROL_RULE = ("Controls: each gated row against the controls matched to it (random gates at its validation rates, "
                "a static net at its MACs), paired run by run; Δ = gated − control test score in points, with its "
                f"{100 * CONFIDENCE:.0f} % t-interval over the pairs. Verdict 'better'/'worse' only where the interval "
                "excludes 0, 'no evidence' where it does not, none with a single pair.")
LATENCY_RULE = ("Latency saving: 1 − dynamic / dense median latency of the same backbone, measured with real skipping "
                "on the training machine (mode, batch, threads in each record); columns 'on <machine>' come from "
                "`dynbench eval` records of that machine and are never mixed with it; '—' = not measured.")
SMOKE_CHECK = ("**Smoke check, not a result**: the `quick` profile trains on subsets for a few epochs so that `make "
               "bench` finishes in minutes; its scores move by several points between machines. Read the longest "
               "profile's board for conclusions.")
CODE_TEST = "**Code test**: `smoke` profile runs only check that the code runs; they are never results."


def _confined(results_dir: Path, relative: str) -> Path:
    """`results_dir / relative`, refusing any path that would land outside the results folder (issue 20)."""
    path = results_dir / relative
    if not path.resolve().is_relative_to(results_dir.resolve()):
        raise DynBenchError(f"refusing to write {path}: outside the results folder {results_dir}")
    return path


def _pct(value: float, digits: int = 1) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}"


def _front_cell(row: pd.Series, rows: pd.DataFrame, use_val: bool) -> str:
    column = "dominated_by_val" if use_val else "dominated_by"
    if pd.isna(row[column]):
        return "front"
    other = rows[rows["rank"] == int(row[column])].iloc[0]
    mine, theirs = (row["val"], other["val"]) if use_val else (row["score"], other["score"])
    overlap = not (mine.has_spread and theirs.has_spread) or theirs.low <= mine.high
    return f"dominated by #{int(row[column])}" + (" (within CI)" if overlap else "")


def reported_ranks(board: Board) -> set[int]:
    """In a sweep board, the rows whose test score is shown: the row chosen on validation ('Best') and rows
    run as named presets without extra options (the configurations reported elsewhere)."""
    ranks = {int(row["rank"]) for _, row in board.rows.iterrows()
             if row["preset"] != "default" and "[" not in row["entry"] and " @ " not in row["entry"]}
    best = board.best
    return ranks | ({int(best["rank"])} if best is not None else set())


def display_frame(board: Board, select_on: str | None = None, evals: list[EvalLatency] | None = None) -> pd.DataFrame:
    """The board as people read it (percent, millions, intervals). With `select_on="val"` (a sweep) the test
    column is shown only for the rows finally reported and the front is marked on validation."""
    rows = board.rows
    metric = rows["metric"].iloc[0] if len(rows) else "accuracy"
    shown_test = reported_ranks(board) if select_on == "val" else set(rows["rank"])
    frame = pd.DataFrame({
        "rank": rows["rank"], "method": rows["entry"],
        "n": [f"{n}" if n > 1 else "1 †" for n in rows["seeds"]],
        f"val {metric} (%)": [r.format(100) for r in rows["val"]],
        f"test {metric} (%)": [r.format(100) if rank in shown_test else "(not reported)"
                               for r, rank in zip(rows["score"], rows["rank"])],
        "executed MACs (M)": [r.format(1e-6, 3) for r in rows["macs"]],
        "MAC saving vs dense (%)": rows["mac_saving"].map(_pct),
        "front": [_front_cell(row, rows, select_on == "val") for _, row in rows.iterrows()],
        "input dependence": [input_dependence_label(row) for _, row in rows.iterrows()],
        "latency saving, training machine (%)": rows["latency_saving_mean"].map(_pct),
    })
    extra = eval_columns(board, evals or [])
    for column in extra.columns:
        frame[column] = extra[column]
    frame["params (k)"] = (rows["params"] / 1e3).map("{:.1f}".format)
    frame["train time (s)"] = rows["train_seconds_mean"].map("{:.0f}".format)
    frame["stale"] = rows["stale"].map({True: "yes", False: ""})
    return frame


def comparisons_frame(board: Board) -> pd.DataFrame:
    c = board.comparisons
    return pd.DataFrame({
        "gated row": [f"#{r} {e}" for r, e in zip(c["gated_rank"], c["gated"])],
        "matched control": [f"#{r} {e}" for r, e in zip(c["control_rank"], c["control"])],
        "pairs (seeds)": [f"{n} ({', '.join(map(str, s))})" for n, s in zip(c["pairs"], c["seeds"])],
        "Δ test (points)": [d.format(100) + ("" if d.has_spread else " †") for d in c["difference"]],
        "verdict": c["verdict"],
    })


def best_line(board: Board, link: str | None = None) -> str:
    best = board.best
    where = f" — [board]({link})" if link else ""
    if best is None:
        return f"Best: none at or below dense MACs{where}"
    return (f"Best (chosen on validation, at ≤ dense MACs): **{best['entry']}** — test {best['metric']} "
            f"{best['score'].format(100)} % (n = {best['seeds']}), {_pct(best['mac_saving'])} % MAC saving vs "
            f"dense, {input_dependence_label(best).replace('**', '')}{where}")


def load_noise(results_dir: Path) -> dict | None:
    """`<results>/noise.json`, the measured cross-machine noise: {"description": str, "rows": [{"dataset",
    "profile", "entry", "abs_diff" (fraction)}, ...]}; None when absent or unreadable (with a warning)."""
    path = results_dir / NOISE_FILE
    if not path.is_file():
        return None
    try:
        noise = json.loads(path.read_text())
        for row in noise["rows"]:
            float(row["abs_diff"]), str(row["dataset"]), str(row["profile"])
        return noise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn(f"{path} ignored: {exc}")
        return None


def noise_line(board: Board, noise: dict | None) -> str | None:
    if board.kind == "code test":
        return None
    if noise is None:
        return ("Cross-machine noise: not measured for this setting yet (no `noise.json` in the results folder)."
                if board.kind == "smoke check" else None)
    diffs = sorted(float(r["abs_diff"]) for r in noise["rows"]
                   if r["dataset"] == board.setting["dataset"] and r["profile"] == board.setting["profile"])
    if not diffs:
        return "Cross-machine noise: not measured for this setting (none in `noise.json`)."
    median = diffs[len(diffs) // 2] if len(diffs) % 2 else (diffs[len(diffs) // 2 - 1] + diffs[len(diffs) // 2]) / 2
    return (f"Measured cross-machine noise ({noise.get('description', 'noise.json')}): |Δ test| median "
            f"{100 * median:.2f}, max {100 * diffs[-1]:.2f} points over {len(diffs)} runs. Differences smaller "
            "than this are not evidence.")


def board_markdown(board: Board, select_on: str | None, evals: list[EvalLatency], noise: dict | None,
                   images: dict[str, str]) -> str:
    parts = [f"# {board.title}", ""]
    if board.kind == "smoke check":
        parts += [SMOKE_CHECK, ""]
    elif board.kind == "code test":
        parts += [CODE_TEST, ""]
    if select_on == "val":
        parts += ["Sweep board: ranked and chosen on validation; the test column is shown only for the row chosen "
                  "('Best') and for named presets.", ""]
    line = noise_line(board, noise)
    parts += [best_line(board), ""] + ([line, ""] if line else [])
    if not board.has_dense:
        parts += ["This board has no dense row: MAC savings are against the backbone's counted dense MACs "
                  "(from the records), and no dense score is shown to compare with.", ""]
    parts += [display_frame(board, select_on, evals).to_markdown(index=False), ""]
    if len(board.comparisons):
        parts += ["## Matched controls", "", comparisons_frame(board).to_markdown(index=False), ""]
    parts += [f"![{name}]({file})" for name, file in images.items()] + [""]
    parts += [f"- {note}" for note in notes()]
    return "\n".join(parts) + "\n"


def notes() -> list[str]:
    return [RANK_RULE, CI_RULE, FRONT_RULE, STATIC_RULE, CONTROL_RULE, COUNTING_RULE, LATENCY_RULE,
            "'test n' in the title = test examples scored (the quick profile scores a fixed random subset, the same "
            "for every run); a board holds runs of one dataset, backbone, profile, schedule and test subset; MAC "
            "savings are against that board's dense row; 'stale' = the code changed since the run."]


def _compact(board: Board, select_on: str | None) -> pd.DataFrame:
    frame = display_frame(board, select_on)
    return frame[[c for c in frame.columns if not c.startswith(("latency", "params", "train time"))]]


def nested_boards(results_dir: Path) -> list[tuple[str, Board]]:
    """Boards of result folders one level down (`results/longer`, ...), for the overall index's links."""
    found = []
    for sub in sorted(p for p in results_dir.iterdir() if (p / "runs").is_dir()) if results_dir.is_dir() else []:
        records = load_records(sub)
        runs = runs_frame(records) if records else pd.DataFrame()
        found += [(sub.name, board) for board in (build_boards(runs) if len(runs) else [])]
    return found


def index_markdown(own: list[Board], nested: list[tuple[str, Board]], select_on: str | None, noise: dict | None) -> str:
    """The overall leaderboard: per dataset every setting's board, longest profile first; the first result
    board's table inline; quick boards as smoke checks, smoke-profile runs at the end."""
    entries = [("", b) for b in own] + nested
    lines = ["# DynBench leaderboard", "",
             "Generated by `make tables` from the run records (`runs/` here, and the result folders below it). One "
             "board per setting (dataset, backbone, profile, schedule, test subset); savings against that board's "
             "own dense row; longest profile first. Full report: [report.html](report.html).", ""]
    if noise is not None:
        lines += [f"Measured cross-machine noise: see `{NOISE_FILE}` ({noise.get('description', '')}); each board "
                  "prints its own setting's figure.", ""]
    datasets = sorted({b.setting["dataset"] for _, b in entries})
    for dataset in datasets:
        lines += [f"## {dataset}", ""]
        mine = sorted([(s, b) for s, b in entries if b.setting["dataset"] == dataset and b.kind != "code test"],
                      key=lambda e: (profile_order(e[1].setting["profile"]), -int(e[1].setting["epochs"]), e[0]))
        inline_done = False
        for source, board in mine:
            link = f"{source}/{board.folder}/leaderboard.md" if source else f"{board.folder}/leaderboard.md"
            label = " — *smoke check, not a result*" if board.kind == "smoke check" else ""
            lines += [f"### [{board.title}]({link}){label}" + (f" (`{source}/`)" if source else ""), "",
                      best_line(board), ""]
            if not inline_done and board.kind == "result":
                lines += [_compact(board, select_on if not source else None).to_markdown(index=False), ""]
                inline_done = True
    smoke = [(s, b) for s, b in entries if b.kind == "code test" and not s]
    if smoke:
        lines += ["## Smoke-profile runs (code tests, not results)", "", CODE_TEST, ""]
        for _, board in smoke:
            lines += [f"### [{board.title}]({board.folder}/leaderboard.md)", "",
                      _compact(board, None).to_markdown(index=False), ""]
    lines += [f"- {note}" for note in notes()]
    return "\n".join(lines) + "\n"


def _csv_frame(boards: list[Board]) -> pd.DataFrame:
    frames = []
    for board in boards:
        rows = board.rows.drop(columns=["score", "val", "macs"]).copy()
        for key, value in board.setting.items():
            if key not in rows.columns:
                rows.insert(0, key, value)
        rows.insert(0, "board", board.folder)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def write_tables(results_dir: Path, select_on: str | None = None) -> Path:
    """Rebuild every board under `results_dir` from its records (`select_on="val"`: sweep boards, test shown
    only for the rows finally reported). Returns the overall Markdown path."""
    from bench.plots import exec_rate_heatmap, pareto_plot
    from bench.report import write_report

    if select_on not in (None, *SELECT_CHOICES):
        raise DynBenchError(f"--select-on must be one of {', '.join(SELECT_CHOICES)}, not '{select_on}'")
    records = load_records(results_dir)
    if not records:
        raise DynBenchError(f"no run records under {results_dir / 'runs'}: run `make bench` or `dynbench run` first")
    runs = runs_frame(records)
    if runs.empty:
        raise DynBenchError(f"no usable run records under {results_dir / 'runs'} (every one was malformed; see warnings)")
    boards = build_boards(runs)
    evals, noise = load_evals(results_dir), load_noise(results_dir)
    try:
        figures: dict[str, dict[str, Path]] = {}
        for board in boards:
            folder = _confined(results_dir, board.folder)
            folder.mkdir(parents=True, exist_ok=True)
            board_csv = _csv_frame([board])
            board_csv.to_csv(_confined(results_dir, f"{board.folder}/leaderboard.csv"), index=False)
            figures[board.folder] = {"pareto": pareto_plot(board, _confined(results_dir, f"{board.folder}/pareto.png"),
                                                           select_on)}
            heatmap = exec_rate_heatmap(board, _confined(results_dir, f"{board.folder}/exec_rates.png"))
            if heatmap is not None:
                figures[board.folder]["exec_rates"] = heatmap
            images = {name: path.name for name, path in figures[board.folder].items()}
            _confined(results_dir, f"{board.folder}/leaderboard.md").write_text(
                board_markdown(board, select_on, evals, noise, images))
        runs.drop(columns="exec_rate_per_unit").to_csv(_confined(results_dir, "runs.csv"), index=False)
        _csv_frame(boards).to_csv(_confined(results_dir, "leaderboard.csv"), index=False)
        markdown = _confined(results_dir, "leaderboard.md")
        markdown.write_text(index_markdown(boards, nested_boards(results_dir), select_on, noise))
        write_report(_confined(results_dir, "report.html"), boards, figures, notes(), select_on, evals)
    except OSError as exc:
        raise DynBenchError(f"cannot write the leaderboards under {results_dir}: {exc.strerror or exc} "
                            f"({exc.filename}); give a writable --results folder") from None
    return markdown

