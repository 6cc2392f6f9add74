"""Figures for the boards (matplotlib, headless): the accuracy–MACs plane with t-interval error bars and the
front, and the execution-rate heat map. Every row is labelled by what it is, one marker shape per method and
one colour per row; legends sit outside the data and figures are sized to their content."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from bench.reporting.boards import Board

REFERENCE_MARKERS = {"dense": "*", "static_small": "s", "random_gate": "X"}  # controls keep their shape everywhere
METHOD_MARKERS = ("o", "^", "D", "v", "P", "h", "<", ">", "p", "d", "H", "8")


def pareto_front(macs: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (fewer MACs and higher score), by MACs."""
    order = np.lexsort((-score, macs))
    front, best = [], -np.inf
    for index in order:
        if score[index] > best:
            front.append(index)
            best = score[index]
    return np.array(front, dtype=int)


def row_colours(count: int) -> list:
    """`count` distinct colours (no colour repeats up to 40 rows)."""
    if count <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(count)]
    # dark tones of the 10 tab20 hues first, then their light tones, then tab20b: neighbours differ in hue
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    palette = [plt.get_cmap("tab20")(i) for i in order] + [plt.get_cmap("tab20b")(i) for i in range(20)]
    return [palette[i % len(palette)] for i in range(count)]


def method_markers(methods: list[str]) -> dict[str, str]:
    others = sorted({m for m in methods if m not in REFERENCE_MARKERS})
    return {**{m: METHOD_MARKERS[i % len(METHOD_MARKERS)] for i, m in enumerate(others)}, **REFERENCE_MARKERS}


def _errors(intervals: list, scale: float, upper_bound: float) -> np.ndarray:
    """[2, n] lower/upper bar lengths of each t-interval, clipped to [0, upper_bound] (a score cannot leave
    0–100 %, MACs cannot go below 0): two seeds give t = 12.7 and bars far outside what can happen."""
    bars = np.zeros((2, len(intervals)))
    for i, interval in enumerate(intervals):
        if interval.has_spread:
            mean = scale * interval.mean
            bars[0, i] = mean - max(scale * interval.low, 0.0)
            bars[1, i] = min(scale * interval.high, upper_bound) - mean
    return bars


def pareto_plot(board: "Board", path: Path, select_on: str | None = None) -> Path:
    """Mean score vs mean executed MACs, one point per row with 95 % t-interval bars on both axes (where
    seeds vary), the front dashed, dense as a reference line. A sweep (`select_on="val"`) plots validation."""
    rows = board.rows
    use_val = select_on == "val"
    intervals = list(rows["val"] if use_val else rows["score"])
    macs = rows["val_executed_macs_mean" if use_val else "executed_macs_mean"].to_numpy() / 1e6
    score = 100 * np.array([i.mean for i in intervals])
    labels = [f"#{r} {e}" for r, e in zip(rows["rank"], rows["entry"])]
    markers = method_markers(list(rows["method"]))
    colours = row_colours(len(rows))
    # the legend sits right of the axes; bbox_inches="tight" widens the saved picture to hold it
    fig, ax = plt.subplots(figsize=(6.5, max(4.0, 0.21 * len(rows) + 1.2)), dpi=110)
    xerr = _errors(list(rows["val_macs" if use_val else "macs"]), 1e-6, 1.1 * max(rows["dense_macs_board"].max() / 1e6, macs.max()))
    yerr = _errors(intervals, 100, 100.0)
    for i, row in enumerate(rows.itertuples()):
        ax.errorbar(macs[i], score[i], xerr=xerr[:, i:i + 1] if xerr[:, i].any() else None,
                    yerr=yerr[:, i:i + 1] if yerr[:, i].any() else None, fmt=markers[row.method],
                    color=colours[i], markersize=9 if row.method == "dense" else 6, capsize=3, label=labels[i],
                    linestyle="none")
    for row in rows[rows["method"] == "dense"].itertuples():
        ax.axhline(100 * (row.val_score_mean if use_val else row.score_mean), color="grey", linestyle=":", linewidth=1)
    if len(rows) > 1:
        front = pareto_front(macs, score)
        ax.plot(macs[front], score[front], "k--", linewidth=0.8, alpha=0.5, label="front (means)")
    metric = rows["metric"].iloc[0]
    ax.set_xlabel(f"executed MACs per input (millions, mean over the {'validation' if use_val else 'test'} inputs)")
    ax.set_ylabel(f"{'validation' if use_val else 'test'} {metric} (%)")
    spread = ("95 % t-interval over seeds, bars clipped to what can occur" if (rows["seeds"] > 1).any()
              else "single seeds: no interval")
    ax.set_title(f"{board.title}\n{metric} vs executed MACs ({spread})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def exec_rate_heatmap(board: "Board", path: Path) -> Path | None:
    """Per-unit execution rate on the validation inputs (mean over seeds) of each gated row; None when no
    row is gated. Cells carry their value when there are few units."""
    per_row: dict[str, dict[str, list[float]]] = {}
    labels = dict(zip(board.rows["config"], (f"#{r} {e}" for r, e in zip(board.rows["rank"], board.rows["entry"]))))
    ranks = dict(zip(board.rows["config"], board.rows["rank"]))
    for run in board.runs.itertuples():
        for unit, rate in (run.exec_rate_per_unit or {}).items():
            per_row.setdefault(run.config, {}).setdefault(unit, []).append(float(rate))
    if not per_row:
        return None
    units = sorted({unit for rates in per_row.values() for unit in rates}, key=_natural_key)
    configs = sorted(per_row, key=lambda c: ranks[c])
    grid = np.array([[np.mean(per_row[c].get(unit, [np.nan])) for unit in units] for c in configs])
    cell = 0.55 if len(units) <= 16 else 0.3  # inches per unit; the row labels widen the saved picture
    fig, ax = plt.subplots(figsize=(max(3.0, cell * len(units)) + 1.2, 0.32 * len(configs) + 1.6), dpi=110)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # grey: a unit this row does not gate
    image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(units)), [u.replace("blocks.", "") for u in units], fontsize=8)
    ax.set_yticks(range(len(configs)), [labels[c] for c in configs], fontsize=8)
    if len(units) <= 16:
        for (i, j), value in np.ndenumerate(grid):
            text = "not\ngated" if np.isnan(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6 if np.isnan(value) else 7,
                    color="black" if np.isnan(value) or value > 0.6 else "white")
    ax.set_xlabel("gated unit (block index)")
    ax.set_title(f"{board.title}\nexecution rate per unit, validation inputs", fontsize=9)
    fig.colorbar(image, ax=ax, label="fraction executed", fraction=0.05, pad=0.02)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in name.replace(".", " ").split()]

