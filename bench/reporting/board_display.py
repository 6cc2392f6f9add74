"""How a board reads: its table as displayed (percent, millions, t-intervals, front, input dependence, latency
columns per machine), its paired-control table, its 'Best' line and the rules printed under every table.
Shared by the Markdown boards (`bench.reporting.tables`) and the HTML report (`bench.reporting.report`)."""
from __future__ import annotations

import pandas as pd

from bench.reporting.boards import Board, input_dependence_label
from bench.reporting.latency_figures import LatencyFigure, main_columns
from bench.measure.macs import COUNTING_RULE
from bench.reporting.stats import CONFIDENCE

RANK_RULE = ("Rank: by mean validation score (accuracy, or mIoU for segmentation; higher first), ties by fewer "
             "executed MACs on the validation inputs. Test scores are reported, never used to order, choose or "
             "mark the front of a sweep. "
             "'Best' = the best mean validation score among rows executing at most this board's dense MACs.")
CI_RULE = (f"Scores and MACs: mean over seeds with its {100 * CONFIDENCE:.0f} % t-interval [low, high] (Student's t, "
           "n − 1 degrees of freedom; score intervals cut at 0 and 100 %); n = seeds; '†' = a single seed: no "
           "interval, the figure is one run.")
SCORE_BOUNDS = (0.0, 1.0)  # accuracy and mIoU are fractions
FRONT_RULE = ("Front: 'front' = no other row has at most its MACs and at least its mean test score (one of them "
              "strictly better); otherwise 'dominated by #k' names the best-scoring row that dominates it; "
              "'(within CI)' = the two rows' test intervals overlap, or one of them has a single seed.")
STATIC_RULE = ("Input dependence: shares of gates always on (> 99 % of inputs), conditional, always off (< 1 %), over "
               "all gates of all units (a block gate is one gate; from the record's input_dependence, else its "
               "val_exec_rate_per_gate, else gate_share_*, else its per-unit execution rates); **static** = no gate "
               "decides differently between inputs in any seed: a pruned network, not conditional computation; "
               "**nearly static** = some decision varies, but no gate is conditional (each is on for > 99 % or < 1 % "
               "of inputs) in any seed. MACs σ = per-input spread of executed MACs.")
CONTROL_RULE = ("Controls: each gated row against the controls matched to it (random gates at its validation rates, "
                "a static net at its MACs, random top-k at its k, and all gates on: the same trained model with every "
                "gate forced to 1, scored in its own record), paired run by run; Δ = gated − control test score in points, with its "
                f"{100 * CONFIDENCE:.0f} % t-interval over the pairs. Verdict 'better'/'worse' only where the interval "
                "excludes 0, 'no evidence' where it does not, none with a single pair. 'control − gated MACs' = how "
                "far the control's mean executed MACs lie from those of the gated runs it is paired with, as a share "
                "of dense MACs (a static net's depth/width grid can miss the budget by a few points; a control with "
                "more MACs has an advantage); a static net more than 5 % of those MACs away is marked 'not matched' "
                "(methods.md §7).")
LATENCY_RULE = ("Latency saving b1 / b128: 1 − dynamic / dense latency of the same backbone at batch 1 and batch 128, "
                "really skipping, timed after training with each model alone (the 'Realized latency' table below "
                "gives CIs, machine, overheads and the execution verdict); '—' = not timed (ungated rows: their "
                "model is a dense network).")
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
    """In a sweep board, the rows whose test score is shown: the row chosen on validation ('Best') and the
    rows the sweep finally reports — those its folder's reported.txt names, or without that file every row run
    as a named preset without extra options; none on the board of a candidate recipe that its profile did not
    adopt (a sweep of training settings)."""
    if board.unadopted:
        return set()
    if board.reported is not None:
        ranks = {int(row["rank"]) for _, row in board.rows.iterrows() if row["entry"] in board.reported}
    else:
        ranks = {int(row["rank"]) for _, row in board.rows.iterrows()
                 if row["preset"] != "default" and "[" not in row["entry"] and " @ " not in row["entry"]}
    best = board.best
    return ranks | ({int(best["rank"])} if best is not None else set())


def display_frame(board: Board, select_on: str | None = None, figures: list[LatencyFigure] | None = None) -> pd.DataFrame:
    """The board as people read it (percent, millions, intervals). With `select_on="val"` (a sweep) the test
    column is shown only for the rows finally reported and the front is marked on validation."""
    rows = board.rows
    metric = rows["metric"].iloc[0] if len(rows) else "accuracy"
    shown_test = reported_ranks(board) if select_on == "val" else set(rows["rank"])
    frame = pd.DataFrame({
        "rank": rows["rank"], "method": rows["entry"],
        "n": [f"{n}" if n > 1 else "1 †" for n in rows["seeds"]],
        f"val {metric} (%)": [r.format(100, bounds=SCORE_BOUNDS) for r in rows["val"]],
        f"test {metric} (%)": [r.format(100, bounds=SCORE_BOUNDS) if rank in shown_test else "(not reported)"
                               for r, rank in zip(rows["score"], rows["rank"])],
        "executed MACs (M)": [r.format(1e-6, 3) for r in rows["macs"]],
        "MAC saving vs dense (%)": rows["mac_saving"].map(_pct),
        "front": [_front_cell(row, rows, select_on == "val") for _, row in rows.iterrows()],
        "input dependence": [input_dependence_label(row) for _, row in rows.iterrows()],
    })
    frame["latency saving b1 / b128 (%)"] = main_columns(board, figures or [])["latency saving b1 / b128 (%)"]
    frame["params (k)"] = (rows["params"] / 1e3).map("{:.1f}".format)
    frame["train time (s)"] = rows["train_seconds_mean"].map("{:.0f}".format)
    frame["stale"] = rows["stale"].map({True: "yes", False: ""})
    return frame


def comparisons_frame(board: Board, select_on: str | None = None) -> pd.DataFrame:
    """The paired control comparisons; in a sweep (`select_on="val"`) only those between rows whose test
    scores are reported (a Δ test would otherwise show an unreported row's test score)."""
    c = board.comparisons
    if select_on == "val":
        shown = reported_ranks(board)
        c = c[c["gated_rank"].isin(shown) & c["control_rank"].map(lambda r: not r or r in shown)]
    return pd.DataFrame({
        "gated row": [f"#{r} {e}" for r, e in zip(c["gated_rank"], c["gated"])],
        "matched control": [f"#{r} {e}" if r else e for r, e in zip(c["control_rank"], c["control"])],
        "control − gated MACs (of dense)": ["—" if pd.isna(g) else f"{100 * g:+.1f} %" for g in c["macs_gap"]],
        "pairs (seeds)": [f"{n} ({', '.join(map(str, s))})" for n, s in zip(c["pairs"], c["seeds"])],
        "Δ test (points)": [d.format(100) + ("" if d.has_spread else " †") for d in c["difference"]],
        "verdict": c["verdict"],
    })


def best_line(board: Board, link: str | None = None, select_on: str | None = None) -> str:
    best = board.best
    where = f" — [board]({link})" if link else ""
    if best is None:
        return f"Best: none at or below dense MACs{where}"
    if select_on == "val" and int(best["rank"]) not in reported_ranks(board):
        score = (f"val {best['metric']} {best['val'].format(100, bounds=SCORE_BOUNDS)} % (test not reported: a candidate "
                 "recipe its profile did not adopt)")
    else:
        score = f"test {best['metric']} {best['score'].format(100, bounds=SCORE_BOUNDS)} %"
    return (f"Best (chosen on validation, at ≤ dense MACs): **{best['entry']}** — {score} (n = {best['seeds']}), "
            f"{_pct(best['mac_saving'])} % MAC saving vs dense, {input_dependence_label(best).replace('**', '')}{where}")


def notes() -> list[str]:
    return [RANK_RULE, CI_RULE, FRONT_RULE, STATIC_RULE, CONTROL_RULE, COUNTING_RULE, LATENCY_RULE,
            "'test n' in the title = test examples scored (the quick profile scores a fixed random subset, the same "
            "for every run); a board holds runs of one dataset, backbone, profile, schedule and test subset; MAC "
            "savings are against that board's dense row; 'stale' = the code changed since the run (or, for a control, "
            "the run it matches was retrained since)."]


def compact_frame(board: Board, select_on: str | None) -> pd.DataFrame:
    """The board without its latency, size and time columns, for the overall index."""
    frame = display_frame(board, select_on)
    return frame[[c for c in frame.columns if not c.startswith(("latency", "params", "train time"))]]
