"""Leaderboards built from run records alone: one board per setting (`<dataset>/<backbone>_<profile>_<epochs>ep/`
with its Markdown, CSV, Pareto plot and execution-rate heat map), an overall index that links them (longest
profile first), CSVs and the HTML report. Every path written stays inside the results folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bench import DynBenchError
from bench.reporting.board_display import best_line, compact_frame, comparisons_frame, display_frame, notes, reported_ranks
from bench.reporting.boards import (Board, build_boards, entry_label, is_stale,  # noqa: F401 (re-exported)
                          load_records, profile_order, runs_frame, warn)
from bench.reporting.latency_figures import LatencyFigure, latency_frame, load_figures

SELECT_CHOICES = ("val",)
NOISE_FILE = "noise.json"
REPORTED_FILE = "reported.txt"  # a sweep folder's rows finally reported (one entry per line, `#` comments)
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


def load_reported(results_dir: Path) -> frozenset[str] | None:
    """The entries of `<results>/reported.txt` (e.g. `skipnet:baseline_alpha0.75`): in a sweep, the rows whose
    test score is shown besides the Best row; None when the folder has no such file."""
    path = results_dir / REPORTED_FILE
    if not path.is_file():
        return None
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line)


def load_noise(results_dir: Path) -> dict | None:
    """`<results>/noise.json`, the measured run-to-run noise (same suite, another machine or thread layout): {"description": str, "rows": [{"dataset",
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
    return (f"Measured run-to-run noise ({noise.get('description', 'noise.json')}): |Δ test| median "
            f"{100 * median:.2f}, max {100 * diffs[-1]:.2f} points over {len(diffs)} runs. Differences smaller "
            "than this are not evidence.")


def board_markdown(board: Board, select_on: str | None, figures: list[LatencyFigure], noise: dict | None,
                   images: dict[str, str]) -> str:
    parts = [f"# {board.title}", ""]
    if board.kind == "smoke check":
        parts += [SMOKE_CHECK, ""]
    elif board.kind == "code test":
        parts += [CODE_TEST, ""]
    if select_on == "val":
        reported = ("the presets the sweep reports (its reported.txt: "
                    + ", ".join(f"`{entry}`" for entry in sorted(board.reported)) + ")"
                    if board.reported is not None else "named presets")
        parts += ["Sweep board: ranked and chosen on validation; the test column is shown only for the row chosen "
                  f"('Best') and for {reported}, and not at all on the board of a candidate recipe its profile did "
                  "not adopt.", ""]
    line = noise_line(board, noise)
    parts += [best_line(board, select_on=select_on), ""] + ([line, ""] if line else [])
    if not board.has_dense:
        parts += ["This board has no dense row: MAC savings are against the backbone's counted dense MACs "
                  "(from the records), and no dense score is shown to compare with.", ""]
    parts += [display_frame(board, select_on, figures).to_markdown(index=False), ""]
    silent = [f"#{row['rank']} {row['entry']}: {row['zero_loss_terms']}" for _, row in board.rows.iterrows()
              if row["zero_loss_terms"]]
    if silent:
        parts += ["Loss terms that stayed exactly 0 for the whole run (they never acted): " + "; ".join(silent) + ".", ""]
    nominal = [f"#{row['rank']} {row['entry']}: {row['nominal_macs'] / 1e6:.3f} M "
               f"({100 * (1 - row['nominal_macs'] / row['dense_macs_board']):.1f} % saving)"
               for _, row in board.rows.iterrows() if not math.isnan(row["nominal_macs"]) and row["mac_saving"] <= 0]
    if nominal:  # rows that save nothing although their gates switch blocks off: faithful CosineGate
        parts += ["Nominal MACs of rows that execute at least dense MACs although their gates switch blocks off, as if "
                  "those blocks were not computed (the model computes them to decide, so they are not executed MACs "
                  "and rank nothing): " + "; ".join(nominal) + ".", ""]
    comparisons = comparisons_frame(board, select_on)
    if len(comparisons):
        parts += ["## Matched controls", "", comparisons.to_markdown(index=False), ""]
    latency = latency_frame(board, figures)
    if latency is not None:
        parts += ["## Realized latency", "", latency[0], "", latency[1].to_markdown(index=False), ""]
    parts += [f"![{name}]({file})" for name, file in images.items()] + [""]
    parts += [f"- {note}" for note in notes()]
    return "\n".join(parts) + "\n"


def nested_boards(results_dir: Path) -> list[tuple[str, Board]]:
    """Boards of result folders one level down (`results/mnist_resnet20`, ...), for the overall index's links."""
    found = []
    for sub in sorted(p for p in results_dir.iterdir() if (p / "runs").is_dir()) if results_dir.is_dir() else []:
        records = load_records(sub)
        runs = runs_frame(records) if records else pd.DataFrame()
        found += [(sub.name, board) for board in (build_boards(runs) if len(runs) else [])]
    return found


def all_stale(board: Board) -> bool:
    """Whether no row of `board` comes from the current code: it goes after the current boards."""
    return bool(len(board.rows)) and bool(board.rows["stale"].astype(bool).all())


def index_markdown(own: list[Board], nested: list[tuple[str, Board]], select_on: str | None, noise: dict | None) -> str:
    """The overall leaderboard: per dataset every setting's board, current before stale, longest profile
    first; the first result board's table inline; quick boards as smoke checks, smoke-profile runs at the end."""
    entries = [("", b) for b in own] + nested
    lines = ["# DynBench leaderboard", "",
             "Generated by `make tables` from the run records (`runs/` here, and the result folders below it). One "
             "board per setting (dataset, backbone, profile, schedule, test subset); savings against that board's "
             "own dense row; longest profile first. Full report: [report.html](report.html).", ""]
    if noise is not None:
        lines += [f"Measured run-to-run noise: see `{NOISE_FILE}` ({noise.get('description', '')}); each board "
                  "prints its own setting's figure.", ""]
    datasets = sorted({b.setting["dataset"] for _, b in entries})
    for dataset in datasets:
        lines += [f"## {dataset}", ""]
        mine = sorted([(s, b) for s, b in entries if b.setting["dataset"] == dataset and b.kind != "code test"],
                      key=lambda e: (all_stale(e[1]), profile_order(e[1].setting["profile"]),
                                     -int(e[1].setting["epochs"]), e[0]))
        inlined: set[str] = set()  # one table per backbone: its longest current profile's board
        for source, board in mine:
            link = f"{source}/{board.folder}/leaderboard.md" if source else f"{board.folder}/leaderboard.md"
            label = " — *smoke check, not a result*" if board.kind == "smoke check" else ""
            stale = " — *stale: every row was made by older code; rerun to refresh*" if all_stale(board) else ""
            lines += [f"### [{board.title}]({link}){label}" + (f" (`{source}/`)" if source else "") + stale, "",
                      best_line(board, select_on=select_on if not source else None), ""]
            if board.setting["backbone"] not in inlined and board.kind == "result":
                lines += [compact_frame(board, select_on if not source else None).to_markdown(index=False), ""]
                inlined.add(board.setting["backbone"])
    smoke = [(s, b) for s, b in entries if b.kind == "code test" and not s]
    if smoke:
        lines += ["## Smoke-profile runs (code tests, not results)", "", CODE_TEST, ""]
        for _, board in smoke:
            lines += [f"### [{board.title}]({board.folder}/leaderboard.md)", "",
                      compact_frame(board, None).to_markdown(index=False), ""]
    lines += [f"- {note}" for note in notes()]
    return "\n".join(lines) + "\n"


def _csv_frame(boards: list[Board], select_on: str | None) -> pd.DataFrame:
    """The boards' rows with their setting; in a sweep (`select_on="val"`) test figures only for reported rows."""
    frames = []
    for board in boards:
        rows = board.rows.drop(columns=["score", "val", "macs", "val_macs"]).copy()
        if select_on == "val":
            hidden = ~rows["rank"].isin(reported_ranks(board))
            for column in ("score_mean", "score_ci_low", "score_ci_high", "dominated_by", "on_front"):
                rows[column] = rows[column].astype(object).where(~hidden, None)
        for key, value in board.setting.items():
            if key not in rows.columns:
                rows.insert(0, key, value)
        rows.insert(0, "board", board.folder)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def write_tables(results_dir: Path, select_on: str | None = None) -> Path:
    """Rebuild every board under `results_dir` from its records (`select_on="val"`: sweep boards, test shown
    only for the rows finally reported). Returns the overall Markdown path."""
    from bench.reporting.plots import exec_rate_heatmap, pareto_plot
    from bench.reporting.report import write_report

    if select_on not in (None, *SELECT_CHOICES):
        raise DynBenchError(f"--select-on must be one of {', '.join(SELECT_CHOICES)}, not '{select_on}'")
    records = load_records(results_dir)
    if not records:
        raise DynBenchError(f"no run records under {results_dir / 'runs'}: run `make bench` or `dynbench run` first")
    runs = runs_frame(records)
    if runs.empty:
        raise DynBenchError(f"no usable run records under {results_dir / 'runs'} (every one was malformed; see warnings)")
    boards = build_boards(runs)
    if select_on == "val":
        reported = load_reported(results_dir)
        for board in boards:
            board.reported = reported
    latency, noise = load_figures(results_dir), load_noise(results_dir)
    try:
        plots: dict[str, dict[str, Path]] = {}
        for board in boards:
            folder = _confined(results_dir, board.folder)
            folder.mkdir(parents=True, exist_ok=True)
            board_csv = _csv_frame([board], select_on)
            board_csv.to_csv(_confined(results_dir, f"{board.folder}/leaderboard.csv"), index=False)
            plots[board.folder] = {"pareto": pareto_plot(board, _confined(results_dir, f"{board.folder}/pareto.png"),
                                                           select_on)}
            heatmap = exec_rate_heatmap(board, _confined(results_dir, f"{board.folder}/exec_rates.png"))
            if heatmap is not None:
                plots[board.folder]["exec_rates"] = heatmap
            images = {name: path.name for name, path in plots[board.folder].items()}
            _confined(results_dir, f"{board.folder}/leaderboard.md").write_text(
                board_markdown(board, select_on, latency, noise, images))
        runs.drop(columns="exec_rate_per_unit").to_csv(_confined(results_dir, "runs.csv"), index=False)
        _csv_frame(boards, select_on).to_csv(_confined(results_dir, "leaderboard.csv"), index=False)
        markdown = _confined(results_dir, "leaderboard.md")
        markdown.write_text(index_markdown(boards, nested_boards(results_dir), select_on, noise))
        write_report(_confined(results_dir, "report.html"), boards, plots, notes(), select_on, latency)
    except OSError as exc:
        raise DynBenchError(f"cannot write the leaderboards under {results_dir}: {exc.strerror or exc} "
                            f"({exc.filename}); give a writable --results folder") from None
    return markdown

